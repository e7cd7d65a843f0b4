//! Racing writers against a real etcd, each on its own connection: updates
//! from one snapshot (exactly one wins, the loser gets `Conflict` and writes
//! nothing), concurrent scale and env setters, unregistration with a stale mod
//! revision, and hosts racing to claim one ticket.

use std::time::Duration;

use visor::Error;
use visor::model::{InstanceState, TicketOp};

use visor_testkit::fixtures::{self, app, instance, name, raw_revision, seed, ticket};
use visor_testkit::{TestRegistry, within};

const LIMIT: Duration = Duration::from_secs(60);
/// Rounds per race: enough for both interleavings to show up.
const ROUNDS: usize = 20;

/// Runs two futures on separate tasks so they really race on the runtime's threads.
async fn race<A, B>(a: A, b: B) -> (A::Output, B::Output)
where
    A: Future + Send + 'static,
    A::Output: Send + 'static,
    B: Future + Send + 'static,
    B::Output: Send + 'static,
{
    let (a, b) = (tokio::spawn(a), tokio::spawn(b));
    (
        a.await.expect("racer a panicked"),
        b.await.expect("racer b panicked"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_updates_from_one_snapshot_have_exactly_one_winner() {
    within(LIMIT, "a racing app update hangs", async {
        let t = TestRegistry::start().await;
        let (a, b) = (t.visor.clone(), t.connect_again().await);
        t.visor
            .register_app("web", app("git://web"))
            .await
            .expect("register");
        for round in 0..ROUNDS {
            let snapshot = t.visor.app("web").await.expect("read once");
            let before = raw_revision(&t).await;
            let (spec_a, spec_b) = (
                app(&format!("git://a/{round}")),
                app(&format!("git://b/{round}")),
            );
            let (ra, rb) = {
                let (a, b, sa, sb) = (a.clone(), b.clone(), snapshot.clone(), snapshot.clone());
                let (spec_a, spec_b) = (spec_a.clone(), spec_b.clone());
                race(async move { a.update_app(&sa, spec_a).await }, async move {
                    b.update_app(&sb, spec_b).await
                })
                .await
            };
            let (winner, loser) = match (ra, rb) {
                (Ok(w), Err(l)) => ((w, spec_a), l),
                (Err(l), Ok(w)) => ((w, spec_b), l),
                (ra, rb) => panic!("round {round}: want one winner, got {ra:?} and {rb:?}"),
            };
            match loser {
                Error::Conflict { expected, .. } => assert_eq!(expected, snapshot.mod_revision),
                other => panic!("round {round}: the loser gets Conflict, got {other:?}"),
            }
            let stored = t.visor.app("web").await.expect("read winner");
            assert_eq!(
                stored.value, winner.1,
                "round {round}: the winner's value is stored"
            );
            assert_eq!(stored.mod_revision, winner.0.mod_revision);
            assert_eq!(
                raw_revision(&t).await,
                before + 1,
                "round {round}: the loser wrote nothing"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_scale_setters_never_both_believe_they_won_the_same_write() {
    within(LIMIT, "a racing set_scale hangs", async {
        let t = TestRegistry::start().await;
        seed(&t, "web", "v1", "http").await;
        // An existing factor: the first-write race is its own test below.
        t.visor
            .set_scale("web", "v1", "http", 0)
            .await
            .expect("initial scale");
        let (a, b) = (t.visor.clone(), t.connect_again().await);
        for round in 0..ROUNDS {
            let before = raw_revision(&t).await;
            let (ra, rb) = {
                let (a, b) = (a.clone(), b.clone());
                race(
                    async move { a.set_scale("web", "v1", "http", 1).await },
                    async move { b.set_scale("web", "v1", "http", 2).await },
                )
                .await
            };
            // set_scale compares against the factor it read just before, so both may
            // win one after the other, but a lost race is a Conflict, never a silent overwrite.
            let mut winners = Vec::new();
            for (result, replicas) in [(ra, 1), (rb, 2)] {
                match result {
                    Ok(written) => winners.push((written.mod_revision, replicas)),
                    Err(Error::Conflict { .. }) => {}
                    Err(other) => {
                        panic!("round {round}: a racing setter gets Conflict, got {other:?}")
                    }
                }
            }
            assert!(
                !winners.is_empty(),
                "round {round}: at least one setter wins"
            );
            winners.sort_unstable();
            winners.dedup_by_key(|w| w.0);
            let last = *winners.last().expect("a winner");
            let stored = t
                .visor
                .scale("web", "v1", "http")
                .await
                .expect("read scale");
            assert_eq!(
                (stored.mod_revision, stored.value.replicas),
                last,
                "round {round}: the last winner's value is stored"
            );
            assert_eq!(
                raw_revision(&t).await,
                before + winners.len() as i64,
                "round {round}: one write per winner"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_env_setters_never_overwrite_silently() {
    within(LIMIT, "a racing set_env hangs", async {
        let t = TestRegistry::start().await;
        t.visor
            .register_app("web", app("git://web"))
            .await
            .expect("register");
        t.visor
            .set_env("web", "PORT", "0")
            .await
            .expect("initial value");
        let (a, b) = (t.visor.clone(), t.connect_again().await);
        for round in 0..ROUNDS {
            let before = raw_revision(&t).await;
            let (ra, rb) = {
                let (a, b) = (a.clone(), b.clone());
                race(
                    async move { a.set_env("web", "PORT", "1").await },
                    async move { b.set_env("web", "PORT", "2").await },
                )
                .await
            };
            let mut winners = Vec::new();
            for result in [ra, rb] {
                match result {
                    Ok(written) => winners.push((written.mod_revision, written.value)),
                    Err(Error::Conflict { .. }) => {}
                    Err(other) => {
                        panic!("round {round}: a racing setter gets Conflict, got {other:?}")
                    }
                }
            }
            winners.sort();
            let last = winners.last().expect("at least one setter wins").clone();
            let stored = t.visor.env("web", "PORT").await.expect("read env");
            assert_eq!((stored.mod_revision, stored.value), last, "round {round}");
            assert_eq!(
                raw_revision(&t).await,
                before + winners.len() as i64,
                "round {round}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistering_from_a_stale_snapshot_loses_to_a_concurrent_change() {
    within(LIMIT, "a racing unregister_instance hangs", async {
        let t = TestRegistry::start().await;
        let (a, b) = (t.visor.clone(), t.connect_again().await);
        for round in 0..ROUNDS {
            let snapshot = t
                .visor
                .create_instance(instance(Some("h1")))
                .await
                .expect("create");
            let id = snapshot.name().to_owned();
            // Both unregister from one snapshot: one deletes, the other finds it gone.
            let (ra, rb) = {
                let (a, b, sa, sb) = (a.clone(), b.clone(), snapshot.clone(), snapshot.clone());
                race(
                    async move { a.unregister_instance(&sa).await },
                    async move { b.unregister_instance(&sb).await },
                )
                .await
            };
            match (&ra, &rb) {
                (Ok(_), Err(Error::NotFound(_))) | (Err(Error::NotFound(_)), Ok(_)) => {}
                _ => panic!("round {round}: want one removal, one NotFound: {ra:?}, {rb:?}"),
            }

            // One claims while the other unregisters the snapshot taken before the claim.
            let snapshot = t
                .visor
                .create_instance(instance(Some("h1")))
                .await
                .expect("create");
            let id2 = snapshot.name().to_owned();
            let (claim, removal) = {
                let (a, b, s, id2) = (a.clone(), b.clone(), snapshot.clone(), id2.clone());
                race(
                    async move { a.claim_instance(&id2, "h1").await },
                    async move { b.unregister_instance(&s).await },
                )
                .await
            };
            match (claim, removal) {
                (Ok(claimed), Err(Error::Conflict { expected, .. })) => {
                    assert_eq!(expected, snapshot.mod_revision);
                    let stored = t
                        .visor
                        .instance(&id2)
                        .await
                        .expect("the claimed instance stays");
                    assert_eq!(
                        (stored.value.state, stored.mod_revision),
                        (InstanceState::Claimed, claimed.mod_revision)
                    );
                }
                (Err(Error::NotFound(_) | Error::Conflict { .. }), Ok(_)) => {
                    assert!(
                        matches!(t.visor.instance(&id2).await, Err(Error::NotFound(_))),
                        "round {round}: removed"
                    );
                }
                (claim, removal) => {
                    panic!("round {round}: want one winner, got {claim:?} and {removal:?}")
                }
            }
            assert!(matches!(
                t.visor.instance(&id).await,
                Err(Error::NotFound(_))
            ));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_racing_to_claim_one_ticket_have_exactly_one_winner() {
    within(LIMIT, "a racing claim_ticket hangs", async {
        let t = TestRegistry::start().await;
        let (a, b, stranger) = (
            t.visor.clone(),
            t.connect_again().await,
            t.connect_again().await,
        );
        for round in 0..ROUNDS {
            let created = t
                .visor
                .create_ticket("h1", ticket(TicketOp::Start, &format!("i{round}")))
                .await
                .expect("create");
            let id = created.name().to_owned();
            let before = raw_revision(&t).await;
            let (ra, rb) = {
                let (a, b, ia, ib) = (a.clone(), b.clone(), id.clone(), id.clone());
                race(
                    async move { a.claim_ticket("h1", &ia, "h1").await },
                    async move { b.claim_ticket("h1", &ib, "h1").await },
                )
                .await
            };
            let (winner, loser) = match (ra, rb) {
                (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
                (ra, rb) => {
                    panic!("round {round}: want one winner, got {ra:?} and {rb:?}")
                }
            };
            match &loser {
                Error::Conflict { expected, .. } => assert_eq!(*expected, created.mod_revision),
                Error::TicketClaimed { by, .. } => assert_eq!(by, "h1"),
                other => panic!("round {round}: want Conflict or TicketClaimed, got {other:?}"),
            }
            assert_eq!(
                raw_revision(&t).await,
                before + 1,
                "round {round}: only the winner wrote"
            );
            let stored = t.visor.ticket("h1", &id).await.expect("read ticket");
            assert_eq!(stored.mod_revision, winner.mod_revision);
            assert_eq!(stored.value.claimed_by, Some(name("h1")));

            match stranger.claim_ticket("h1", &id, "h2").await {
                Err(Error::NotAddressee {
                    addressee,
                    claimant,
                    ..
                }) => assert_eq!((addressee.as_str(), claimant.as_str()), ("h1", "h2")),
                other => panic!("round {round}: claim by h2: want NotAddressee, got {other:?}"),
            }
            t.visor
                .complete_ticket(&winner, "h1")
                .await
                .expect("complete");
        }
        assert!(t.visor.tickets(None).await.expect("list").items.is_empty());
    })
    .await;
}

/// A set is create-or-replace: when two setters race to create the same key,
/// the loser must see a retryable `Conflict`, as the docs of `set_env` and
/// `set_scale` promise, not `AlreadyExists` (which callers treat as final).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_first_time_setters_get_conflict_not_already_exists() {
    within(LIMIT, "a racing first set hangs", async {
        let t = TestRegistry::start().await;
        seed(&t, "web", "v1", "http").await;
        let (a, b) = (t.visor.clone(), t.connect_again().await);
        for round in 0..ROUNDS {
            let proc = format!("p{round}");
            t.visor
                .register_proc("web", &proc, fixtures::proc_type("run"))
                .await
                .expect("register proc");
            let (ra, rb) = {
                let (a, b, pa, pb) = (a.clone(), b.clone(), proc.clone(), proc.clone());
                race(
                    async move { a.set_scale("web", "v1", &pa, 1).await },
                    async move { b.set_scale("web", "v1", &pb, 2).await },
                )
                .await
            };
            for result in [ra, rb] {
                if let Err(error) = result {
                    assert!(
                        error.is_retryable(),
                        "round {round}: lost set_scale race: want Conflict, got {error:?}"
                    );
                }
            }
            let key = format!("K{round}");
            let (ra, rb) = {
                let (a, b, ka, kb) = (a.clone(), b.clone(), key.clone(), key.clone());
                race(
                    async move { a.set_env("web", &ka, "1").await },
                    async move { b.set_env("web", &kb, "2").await },
                )
                .await
            };
            for result in [ra, rb] {
                if let Err(error) = result {
                    assert!(
                        error.is_retryable(),
                        "round {round}: lost set_env race: want Conflict, got {error:?}"
                    );
                }
            }
        }
    })
    .await;
}
