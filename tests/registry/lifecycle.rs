//! The instance life cycle through the registry: every (from, to) pair of the
//! seven states, reached along legal paths and attempted with the right actor,
//! plus who may move an instance (owner, other hosts, the controller). A
//! refused transition must write nothing.

use std::time::Duration;

use visor::model::{Actor, InstanceState, TransitionError};
use visor::{Error, Visor};

use InstanceState::*;

use visor_testkit::fixtures::{instance, name, raw_revision};
use visor_testkit::{TestRegistry, within};

const LIMIT: Duration = Duration::from_secs(60);

/// The legal pairs, written out independently of the crate's own table.
const OWNER_MOVES: &[(InstanceState, InstanceState)] = &[
    (Pending, Claimed),
    (Pending, Stopping),
    (Claimed, Running),
    (Claimed, Stopping),
    (Claimed, Failed),
    (Running, Stopping),
    (Running, Exited),
    (Running, Failed),
    (Stopping, Exited),
    (Stopping, Failed),
];
const CONTROLLER_MOVES: &[(InstanceState, InstanceState)] = &[
    (Pending, Lost),
    (Claimed, Lost),
    (Running, Lost),
    (Stopping, Lost),
];

fn is_legal(from: InstanceState, to: InstanceState) -> bool {
    OWNER_MOVES.contains(&(from, to)) || CONTROLLER_MOVES.contains(&(from, to))
}

fn host(h: &str) -> Actor {
    Actor::Host(name(h))
}

/// Creates an instance assigned to h1 and moves it to `state` along a legal
/// path, through the dedicated API calls. Returns its id.
async fn instance_in(v: &Visor, state: InstanceState) -> String {
    let id = v
        .create_instance(instance(Some("h1")))
        .await
        .expect("create instance")
        .name()
        .to_owned();
    let path: &[InstanceState] = match state {
        Pending => &[],
        Claimed => &[Claimed],
        Running => &[Claimed, Running],
        Stopping => &[Claimed, Running, Stopping],
        Exited => &[Claimed, Running, Exited],
        Failed => &[Claimed, Failed],
        Lost => &[Lost],
    };
    for step in path {
        let moved = match step {
            Claimed => v.claim_instance(&id, "h1").await,
            Running => v.start_instance(&id, "h1", Some(8080)).await,
            Stopping => v.stop_instance(&id, "h1").await,
            Exited => v.exit_instance(&id, "h1", Some("done".into())).await,
            Failed => v.fail_instance(&id, "h1", "crashed".into()).await,
            Lost => v.lose_instance(&id, "host gone".into()).await,
            Pending => unreachable!("no path step leads back to pending"),
        };
        let moved =
            moved.unwrap_or_else(|e| panic!("setting up {state}: step to {step} failed: {e}"));
        assert_eq!(moved.value.state, *step);
    }
    id
}

/// Attempts `to` as `actor` and asserts it is refused with both states named
/// and nothing written. Returns the rule that refused it.
async fn assert_refused(
    t: &TestRegistry,
    id: &str,
    from: InstanceState,
    to: InstanceState,
    actor: &Actor,
) -> TransitionError {
    let before = t.visor.instance(id).await.expect("read before");
    let revision = raw_revision(t).await;
    let error = match t.visor.transition_instance(id, to, actor).await {
        Err(error) => error,
        Ok(moved) => panic!(
            "{from} -> {to} by {actor} must be refused, but moved to {}",
            moved.value.state
        ),
    };
    assert_eq!(
        error.transition_states(),
        Some((from, to)),
        "{from} -> {to} by {actor}: {error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("from {from} to {to}")),
        "message names both states: {message}"
    );
    let Error::InvalidTransition {
        id: refused,
        reason,
    } = error
    else {
        panic!("{from} -> {to} by {actor}: expected InvalidTransition, got {error:?}");
    };
    assert_eq!(refused, id);
    let after = t.visor.instance(id).await.expect("read after");
    assert_eq!(
        after.mod_revision, before.mod_revision,
        "a refused {from} -> {to} changed the instance"
    );
    assert_eq!(after.value, before.value);
    assert_eq!(
        raw_revision(t).await,
        revision,
        "a refused {from} -> {to} wrote something"
    );
    reason
}

#[tokio::test]
async fn every_pair_of_states_is_allowed_exactly_when_the_table_says_so() {
    within(LIMIT, "an instance transition hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        for from in InstanceState::ALL {
            for to in InstanceState::ALL {
                let id = instance_in(v, from).await;
                let actor = if to == Lost {
                    Actor::Controller
                } else {
                    host("h1")
                };
                if is_legal(from, to) {
                    let before = v.instance(&id).await.expect("read before");
                    let moved = v
                        .transition_instance(&id, to, &actor)
                        .await
                        .unwrap_or_else(|e| panic!("{from} -> {to} by {actor} is legal: {e}"));
                    assert_eq!(moved.value.state, to);
                    assert!(moved.mod_revision > before.mod_revision);
                    assert!(moved.value.updated_at.is_some());
                    let read = v.instance(&id).await.expect("read after");
                    assert_eq!(
                        (read.value.state, read.mod_revision),
                        (to, moved.mod_revision)
                    );
                } else {
                    let reason = assert_refused(&t, &id, from, to, &actor).await;
                    assert_eq!(
                        reason,
                        TransitionError::Illegal { from, to },
                        "{from} -> {to}"
                    );
                }
            }
        }
    })
    .await;
}

#[tokio::test]
async fn only_the_owning_host_moves_and_only_the_controller_loses() {
    within(LIMIT, "an instance transition hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        for &(from, to) in OWNER_MOVES {
            let id = instance_in(v, from).await;
            let reason = assert_refused(&t, &id, from, to, &host("h2")).await;
            assert!(
                matches!(reason, TransitionError::NotPermitted { .. }),
                "{from} -> {to} by h2: {reason}"
            );
            assert!(
                reason.to_string().contains("belongs to host h1"),
                "{reason}"
            );
            let reason = assert_refused(&t, &id, from, to, &Actor::Controller).await;
            assert!(
                matches!(reason, TransitionError::NotPermitted { .. }),
                "{from} -> {to} by the controller: {reason}"
            );
            v.transition_instance(&id, to, &host("h1"))
                .await
                .expect("the owner may");
        }
        for &(from, to) in CONTROLLER_MOVES {
            let id = instance_in(v, from).await;
            for actor in [host("h1"), host("h2")] {
                let reason = assert_refused(&t, &id, from, to, &actor).await;
                assert!(
                    reason.to_string().contains("only the controller"),
                    "{reason}"
                );
            }
            let lost = v
                .lose_instance(&id, "host gone".into())
                .await
                .expect("the controller may");
            assert_eq!(lost.value.reason.as_deref(), Some("host gone"));
        }
    })
    .await;
}

#[tokio::test]
async fn claims_respect_the_assigned_host_and_make_the_claimant_the_owner() {
    within(LIMIT, "an instance claim hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;

        let assigned = instance_in(v, Pending).await;
        let before = raw_revision(&t).await;
        let refused = v
            .claim_instance(&assigned, "h2")
            .await
            .expect_err("h2 may not claim h1's instance");
        assert_eq!(refused.transition_states(), Some((Pending, Claimed)));
        assert_eq!(
            raw_revision(&t).await,
            before,
            "a refused claim writes nothing"
        );

        let unassigned = v
            .create_instance(instance(None))
            .await
            .expect("create")
            .name()
            .to_owned();
        let reason = assert_refused(&t, &unassigned, Pending, Stopping, &host("h1")).await;
        assert!(reason.to_string().contains("claimed first"), "{reason}");
        let claimed = v
            .claim_instance(&unassigned, "h2")
            .await
            .expect("any host claims an unassigned instance");
        assert_eq!(claimed.value.host, Some(name("h2")));
        assert_refused(&t, &unassigned, Claimed, Running, &host("h1")).await;

        let started = v
            .start_instance(&unassigned, "h2", Some(9000))
            .await
            .expect("the claimant starts it");
        assert_eq!(started.value.port, Some(9000));
        let failed = v
            .fail_instance(&unassigned, "h2", "oom".into())
            .await
            .expect("fail");
        assert_eq!(
            (failed.value.state, failed.value.reason.as_deref()),
            (Failed, Some("oom"))
        );
    })
    .await;
}
