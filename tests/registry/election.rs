//! Leader election and fencing against a real etcd: one leader at a time, a
//! standby takes over when the leader resigns, a deposed leader's writes are
//! all refused by the fence (and write nothing), and leadership loss is
//! signalled when the lease is revoked or the leader key is deleted. The
//! client-side recipe shares one line with candidates of etcd's server-side
//! election API (a controller of the previous version), either way round.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use visor::Error;
use visor::registry::{Fence, Lease};
use visor::runtime::election::{self, Leadership};

use visor_testkit::wait::holds_for;
use visor_testkit::{TestRegistry, eventually, fixtures, within};

const LIMIT: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(2);
const NAME: &str = "/visor/leader";

/// A lease for a candidate of etcd's server-side election API, long enough
/// to outlive the test without renewal.
const OLD_LEASE_TTL: i64 = 60;

async fn campaign(t: &TestRegistry, identity: &str) -> Leadership {
    election::campaign(
        t.visor.registry(),
        NAME,
        identity,
        TTL,
        TTL * 2 / 3,
        &CancellationToken::new(),
    )
    .await
    .expect("campaign")
    .expect("elected, not cancelled")
}

/// A campaign of `identity` under [`NAME`] in the background, until elected or `cancel`.
fn spawn_campaign(
    t: &TestRegistry,
    identity: &'static str,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<visor::Result<Option<Leadership>>> {
    let registry = t.visor.registry().clone();
    tokio::spawn(async move {
        election::campaign(&registry, NAME, identity, TTL, TTL * 2 / 3, &cancel).await
    })
}

/// How many watchers the test's etcd serves (its
/// `etcd_debugging_mvcc_watcher_total`): a leader watches its key, and a
/// candidate in line the key ahead of its own. `None` while it cannot be read.
fn etcd_watchers(t: &TestRegistry) -> Option<usize> {
    let endpoint = t.server.endpoint();
    let port = endpoint.rsplit(':').next()?.parse().ok()?;
    let (_, metrics) = visor_testkit::controller::admin_get(port, "/metrics")?;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("etcd_debugging_mvcc_watcher_total "))?
        .trim()
        .parse()
        .ok()
}

/// A candidate of etcd's server-side Election API, as an older controller
/// campaigns, elected at once: its lease and its leader key.
async fn server_side_leader(t: &TestRegistry) -> (i64, etcd_client::LeaderKey) {
    let lease = t
        .raw()
        .lease_grant(OLD_LEASE_TTL, None)
        .await
        .expect("grant")
        .id();
    let elected = t
        .raw()
        .election_client()
        .campaign(NAME, "old-controller", lease)
        .await
        .expect("server-side campaign");
    (lease, elected.leader().expect("leader key").clone())
}

async fn leader_of(t: &TestRegistry) -> Option<String> {
    election::current_leader(t.visor.registry(), NAME)
        .await
        .expect("leader")
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_standby_takes_over_on_resign() {
    within(LIMIT, "a campaign never resolves", async {
        let t = TestRegistry::start().await;
        let first = campaign(&t, "controller-a").await;
        assert_eq!(
            election::current_leader(t.visor.registry(), NAME)
                .await
                .expect("leader"),
            Some("controller-a".to_owned())
        );

        let registry = t.visor.registry().clone();
        let standby = tokio::spawn(async move {
            let never = CancellationToken::new();
            election::campaign(&registry, NAME, "controller-b", TTL, TTL * 2 / 3, &never).await
        });
        // While the leader holds on (renewing past several TTLs), the standby waits.
        holds_for(
            TTL * 2,
            "the standby must not be elected while the leader lives",
            || {
                let finished = standby.is_finished();
                async move { !finished }
            },
        )
        .await;

        first.resign().await.expect("resign");
        let second = within(
            Duration::from_secs(5),
            "the standby takes over after a resign",
            standby,
        )
        .await
        .expect("join")
        .expect("standby campaign")
        .expect("standby elected");
        assert_eq!(
            election::current_leader(t.visor.registry(), NAME)
                .await
                .expect("leader"),
            Some("controller-b".to_owned())
        );
        assert!(!second.lost().is_cancelled());
    })
    .await;
}

#[tokio::test]
async fn a_deposed_leader_cannot_write() {
    within(LIMIT, "fenced writes or loss detection hang", async {
        let t = TestRegistry::start().await;
        let leadership = campaign(&t, "controller-a").await;
        let fenced = t.visor.fenced(leadership.fence().clone());
        fenced
            .register_app("web", fixtures::app("git://web"))
            .await
            .expect("leader writes");
        let instance = fenced
            .create_instance(fixtures::instance(Some("h1")))
            .await
            .expect("leader creates");

        // Depose it from outside: revoke its lease, as `etcdctl lease revoke` would.
        t.raw()
            .lease_revoke(leadership.lease_id())
            .await
            .expect("revoke");
        within(
            Duration::from_secs(5),
            "leadership loss is signalled",
            leadership.lost().cancelled(),
        )
        .await;

        let before = fixtures::raw_revision(&t).await;
        let attempts: Vec<visor::Result<()>> = vec![
            fenced
                .register_app("api", fixtures::app("git://api"))
                .await
                .map(drop),
            fenced.set_env("web", "PORT", "80").await.map(drop),
            fenced
                .create_instance(fixtures::instance(Some("h1")))
                .await
                .map(drop),
            fenced
                .lose_instance(instance.name(), "host gone".into())
                .await
                .map(drop),
            fenced.unregister_instance(&instance).await.map(drop),
            fenced
                .create_ticket(
                    "h1",
                    fixtures::ticket(visor::model::TicketOp::Start, instance.name()),
                )
                .await
                .map(drop),
            fenced.unregister_app("web").await.map(drop),
        ];
        for attempt in attempts {
            assert!(
                matches!(attempt, Err(Error::Deposed { .. })),
                "every fenced write is refused, got {attempt:?}"
            );
        }
        assert_eq!(
            fixtures::raw_revision(&t).await,
            before,
            "a deposed leader writes nothing"
        );
        // The unfenced API is unaffected.
        t.visor
            .register_app("api", fixtures::app("git://api"))
            .await
            .expect("unfenced write");
    })
    .await;
}

#[tokio::test]
async fn deleting_the_leader_key_ends_leadership() {
    within(LIMIT, "loss detection hangs", async {
        let t = TestRegistry::start().await;
        let leadership = campaign(&t, "controller-a").await;
        t.raw()
            .delete(leadership.fence().key.as_str(), None)
            .await
            .expect("delete leader key");
        within(
            Duration::from_secs(5),
            "leadership loss is signalled",
            leadership.lost().cancelled(),
        )
        .await;
        let fenced = t.visor.fenced(leadership.fence().clone());
        assert!(matches!(
            fenced.register_app("web", fixtures::app("git://web")).await,
            Err(Error::Deposed { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_standby_leaves_the_line_at_once() {
    within(LIMIT, "a cancelled campaign never returns", async {
        let t = TestRegistry::start().await;
        let leader = campaign(&t, "controller-a").await;
        let cancel = CancellationToken::new();
        let registry = t.visor.registry().clone();
        let standby = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                election::campaign(&registry, NAME, "controller-b", TTL, TTL * 2 / 3, &cancel).await
            })
        };
        // The standby's key is in line (two keys under the election prefix).
        eventually(Duration::from_secs(5), "the standby queues up", || async {
            (fixtures::raw_keys(&t, NAME).await.len() == 2).then_some(())
        })
        .await;
        cancel.cancel();
        let outcome = within(
            Duration::from_secs(5),
            "the cancelled campaign returns",
            standby,
        )
        .await
        .expect("join");
        assert!(
            matches!(outcome, Ok(None)),
            "a cancelled campaign yields no leadership"
        );
        assert_eq!(
            fixtures::raw_keys(&t, NAME).await.len(),
            1,
            "its lease was revoked: its key left the line"
        );
        // So a resign hands over to nobody stale: no leader is left waiting on an expiring lease.
        leader.resign().await.expect("resign");
        assert_eq!(
            election::current_leader(t.visor.registry(), NAME)
                .await
                .expect("leader"),
            None
        );
    })
    .await;
}

#[tokio::test]
async fn a_registry_restart_within_the_renew_deadline_keeps_leadership() {
    within(LIMIT, "the leader never recovers from the restart", async {
        let mut t = TestRegistry::start().await;
        // Long enough that the restart fits within the renew deadline.
        let ttl = Duration::from_secs(15);
        let leadership = election::campaign(
            t.visor.registry(),
            NAME,
            "controller-a",
            ttl,
            ttl * 2 / 3,
            &CancellationToken::new(),
        )
        .await
        .expect("campaign")
        .expect("elected");
        t.server.kill();
        t.server.restart().await.expect("etcd restarts on its data");

        let fenced = t.visor.fenced(leadership.fence().clone());
        eventually(
            Duration::from_secs(8),
            "a fenced write succeeds again",
            || async {
                fenced
                    .register_app("web", fixtures::app("git://web"))
                    .await
                    .ok()
            },
        )
        .await;
        assert!(
            !leadership.lost().is_cancelled(),
            "a broken leader key watch gave leadership up"
        );

        // The key watch was resumed: removing the key is still noticed.
        t.raw()
            .delete(leadership.fence().key.as_str(), None)
            .await
            .expect("delete leader key");
        within(
            Duration::from_secs(5),
            "the resumed key watch signals the loss",
            leadership.lost().cancelled(),
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn lease_timings_etcd_would_not_honour_are_refused_before_granting() {
    within(LIMIT, "a grant hangs", async {
        let t = TestRegistry::start().await;
        let registry = t.visor.registry();
        let refused = [
            (Duration::ZERO, Duration::from_millis(500)),
            (Duration::from_millis(1500), Duration::from_secs(1)),
            (Duration::from_secs(2), Duration::from_secs(2)),
            (Duration::from_secs(2), Duration::ZERO),
        ];
        for (ttl, renew_deadline) in refused {
            let granted = Lease::grant_with_deadline(registry, ttl, renew_deadline).await;
            assert!(
                matches!(granted, Err(Error::InvalidArgument { .. })),
                "ttl {ttl:?}, renew deadline {renew_deadline:?}: {granted:?}"
            );
            let campaign = election::campaign(
                registry,
                NAME,
                "controller-a",
                ttl,
                renew_deadline,
                &CancellationToken::new(),
            )
            .await;
            assert!(
                matches!(campaign, Err(Error::InvalidArgument { .. })),
                "campaign with ttl {ttl:?}, renew deadline {renew_deadline:?}: {campaign:?}"
            );
        }
        let leases = t.raw().leases().await.expect("list leases");
        assert!(leases.leases().is_empty(), "nothing was granted");
        assert!(
            fixtures::raw_keys(&t, NAME).await.is_empty(),
            "no candidate"
        );
    })
    .await;
}

#[tokio::test]
async fn a_candidate_of_the_server_side_api_leads_and_the_recipe_waits_behind_it() {
    within(LIMIT, "a campaign never resolves", async {
        let t = TestRegistry::start_etcd().await;
        let (old_lease, old) = server_side_leader(&t).await;
        let old_key = old.key_str().expect("utf-8");
        assert_eq!(old_key, format!("{NAME}/{old_lease:x}"), "one key layout");
        assert_eq!(leader_of(&t).await.as_deref(), Some("old-controller"));

        let standby = spawn_campaign(&t, "controller-b", CancellationToken::new());
        eventually(Duration::from_secs(5), "the standby queues up", || async {
            (fixtures::raw_keys(&t, NAME).await.len() == 2).then_some(())
        })
        .await;
        holds_for(
            TTL * 2,
            "the standby must wait behind the server-side leader",
            || {
                let finished = standby.is_finished();
                async move { !finished }
            },
        )
        .await;
        assert_eq!(leader_of(&t).await.as_deref(), Some("old-controller"));

        t.raw().lease_revoke(old_lease).await.expect("revoke");
        let elected = within(
            Duration::from_secs(5),
            "the standby takes over once the old leader's lease is revoked",
            standby,
        )
        .await
        .expect("join")
        .expect("standby campaign")
        .expect("standby elected");
        assert_eq!(
            elected.fence().key,
            format!("{NAME}/{:x}", elected.lease_id())
        );
        assert_eq!(leader_of(&t).await.as_deref(), Some("controller-b"));
        // And the server-side API, as an old `visor status` asks it, agrees.
        let leader = t
            .raw()
            .election_client()
            .leader(NAME)
            .await
            .expect("leader");
        assert_eq!(leader.kv().map(|kv| kv.value()), Some(&b"controller-b"[..]));
    })
    .await;
}

#[tokio::test]
async fn a_candidate_of_the_server_side_api_waits_behind_a_recipe_leader() {
    within(LIMIT, "a campaign never resolves", async {
        let t = TestRegistry::start_etcd().await;
        let leader = campaign(&t, "controller-a").await;
        let old_lease = t
            .raw()
            .lease_grant(OLD_LEASE_TTL, None)
            .await
            .expect("grant")
            .id();
        let mut old_election = t.raw().election_client();
        let old = tokio::spawn(async move {
            old_election
                .campaign(NAME, "old-controller", old_lease)
                .await
        });
        eventually(
            Duration::from_secs(5),
            "the old candidate queues up",
            || async { (fixtures::raw_keys(&t, NAME).await.len() == 2).then_some(()) },
        )
        .await;
        holds_for(
            TTL,
            "the old candidate must wait behind the recipe's leader",
            || {
                let finished = old.is_finished();
                async move { !finished }
            },
        )
        .await;

        leader.resign().await.expect("resign");
        let elected = within(
            Duration::from_secs(5),
            "the old candidate takes over after a resign",
            old,
        )
        .await
        .expect("join")
        .expect("server-side campaign");
        let key = elected
            .leader()
            .expect("leader key")
            .key_str()
            .expect("utf-8");
        assert_eq!(key, format!("{NAME}/{old_lease:x}"));
        assert_eq!(leader_of(&t).await.as_deref(), Some("old-controller"));
    })
    .await;
}

#[tokio::test]
async fn a_standby_whose_key_ahead_leaves_the_line_still_waits_for_the_leader() {
    within(LIMIT, "a campaign never resolves", async {
        let t = TestRegistry::start().await;
        let leader = campaign(&t, "controller-a").await;
        let leaving = CancellationToken::new();
        let middle = spawn_campaign(&t, "controller-b", leaving.clone());
        // In line and watching: the leader its key, the middle one the leader's.
        eventually(
            Duration::from_secs(5),
            "the middle candidate waits",
            || async {
                (fixtures::raw_keys(&t, NAME).await.len() == 2 && etcd_watchers(&t) == Some(2))
                    .then_some(())
            },
        )
        .await;
        let last = spawn_campaign(&t, "controller-c", CancellationToken::new());
        // The last one watches the middle one's key, the newest ahead of its own.
        eventually(
            Duration::from_secs(5),
            "the last candidate waits",
            || async {
                (fixtures::raw_keys(&t, NAME).await.len() == 3 && etcd_watchers(&t) == Some(3))
                    .then_some(())
            },
        )
        .await;

        leaving.cancel();
        let left = within(Duration::from_secs(5), "the middle one leaves", middle)
            .await
            .expect("join");
        assert!(matches!(left, Ok(None)), "cancelled, not elected: {left:?}");
        assert_eq!(fixtures::raw_keys(&t, NAME).await.len(), 2);
        holds_for(
            TTL,
            "the last candidate must wait for the leader, not for the key that left",
            || {
                let finished = last.is_finished();
                async move { !finished }
            },
        )
        .await;
        assert_eq!(leader_of(&t).await.as_deref(), Some("controller-a"));

        leader.resign().await.expect("resign");
        let elected = within(
            Duration::from_secs(5),
            "the last candidate takes over after the leader resigns",
            last,
        )
        .await
        .expect("join")
        .expect("campaign")
        .expect("elected");
        assert!(!elected.lost().is_cancelled());
        assert_eq!(leader_of(&t).await.as_deref(), Some("controller-c"));
    })
    .await;
}

#[tokio::test]
async fn a_campaign_on_a_lease_already_in_line_keeps_its_place_and_takes_the_new_identity() {
    within(LIMIT, "a campaign never resolves", async {
        // A key put in line by the server-side Election API: etcd only.
        let t = TestRegistry::start_etcd().await;
        let (lease_id, old) = server_side_leader(&t).await;
        let held = Fence {
            key: old.key_str().expect("utf-8").to_owned(),
            create_revision: old.rev(),
        };

        let lease = Lease::resume(t.visor.registry(), lease_id)
            .await
            .expect("resume")
            .expect("the lease is alive");
        let leadership = election::campaign_with_lease(
            t.visor.registry(),
            NAME,
            "controller-b",
            lease,
            &CancellationToken::new(),
        )
        .await
        .expect("campaign")
        .expect("elected");
        assert_eq!(leadership.fence(), &held, "the key kept its place");
        assert_eq!(leader_of(&t).await.as_deref(), Some("controller-b"));
        assert_eq!(fixtures::raw_keys(&t, NAME).await, [held.key.as_str()]);
        leadership.resign().await.expect("resign");
        assert_eq!(leader_of(&t).await, None);
    })
    .await;
}

#[tokio::test]
async fn a_candidate_whose_key_is_deleted_in_line_fails_its_campaign() {
    within(LIMIT, "a campaign never resolves", async {
        let t = TestRegistry::start().await;
        let leader = campaign(&t, "controller-a").await;
        let standby = spawn_campaign(&t, "controller-b", CancellationToken::new());
        let key = eventually(Duration::from_secs(5), "the standby queues up", || async {
            let keys = fixtures::raw_keys(&t, NAME).await;
            keys.into_iter().find(|key| *key != leader.fence().key)
        })
        .await;
        // As an operator would, with `etcdctl del`: nothing is left to fence with.
        t.raw().delete(key.as_str(), None).await.expect("delete");
        leader.resign().await.expect("resign");
        let outcome = within(Duration::from_secs(5), "the campaign ends", standby)
            .await
            .expect("join");
        assert!(
            matches!(outcome, Err(Error::Request { .. })),
            "a failed campaign, not a leadership: {outcome:?}"
        );
        let leases = t.raw().leases().await.expect("list leases");
        assert!(leases.leases().is_empty(), "its lease was revoked");
        assert_eq!(leader_of(&t).await, None);
    })
    .await;
}
