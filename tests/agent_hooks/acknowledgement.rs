//! The registry side an agent relies on, against a real etcd: a hook read
//! with its state and relation at one revision; its acknowledgement writing
//! the state, the settings it set and its removal in one transaction, or
//! nothing; failure records only on the hook as read.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use visor::Error;
use visor::model::HookKind;
use visor::registry::{EndpointSpec, Kind};
use visor_testkit::fixtures::register_app;
use visor_testkit::{TestRegistry, within};

const LIMIT: Duration = Duration::from_secs(60);

async fn put_raw(t: &TestRegistry, key: &str, value: serde_json::Value) {
    t.raw()
        .put(key, value.to_string(), None)
        .await
        .expect("raw put");
}

/// Apps `web` and `db`, relation `web-db`, and web-0 handed `joined` for db-0.
async fn handed() -> TestRegistry {
    let t = TestRegistry::start().await;
    register_app(&t, "web").await;
    register_app(&t, "db").await;
    let endpoints: Vec<EndpointSpec> = ["web", "db"]
        .iter()
        .map(|e| e.parse().expect("an endpoint"))
        .collect();
    t.visor
        .add_relation("web-db", &endpoints)
        .await
        .expect("relation");
    let hook = json!({"kind": "joined", "relation_id": "web-db", "remote_unit": "db-0", "change_version": 0, "failed": null});
    put_raw(&t, "/visor/hooks/web-0/web-db", hook).await;
    t
}

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn an_acknowledgement_writes_state_settings_and_removal_in_one_transaction() {
    within(LIMIT, "etcd hangs", async {
        let t = handed().await;
        let pending = t
            .visor
            .pending_hook("web-0", "web-db")
            .await
            .expect("a hook");
        assert_eq!(pending.hook.value.hook.kind, HookKind::Joined);
        assert_eq!(pending.state, None, "nothing acknowledged yet");
        assert_eq!(
            pending.relation.as_ref().map(|r| r.value.id.as_str()),
            Some("web-db")
        );
        assert!(pending.revision >= pending.hook.mod_revision);

        t.visor
            .set_settings("web-db", "web-0", &[("old".to_owned(), "kept".to_owned())])
            .await
            .expect("earlier settings");
        let state = t
            .visor
            .complete_hook_with_settings("web-0", "web-db", &settings(&[("host", "web1")]))
            .await
            .expect("acknowledged");
        assert_eq!(state.changed_pending.as_deref(), Some("db-0"));
        let stored = t
            .visor
            .relation_state("web-db", "web-0")
            .await
            .expect("state");
        let written = t.visor.settings("web-db", "web-0").await.expect("settings");
        assert_eq!(
            written.value.0,
            settings(&[("host", "web1"), ("old", "kept")]),
            "merged"
        );
        assert_eq!(stored.mod_revision, written.mod_revision, "one transaction");
        assert!(matches!(
            t.visor.pending_hook("web-0", "web-db").await,
            Err(Error::NotFound(object)) if object.kind == Kind::Hook
        ));
    })
    .await;
}

#[tokio::test]
async fn an_acknowledgement_that_cannot_be_made_writes_nothing() {
    within(LIMIT, "etcd hangs", async {
        let t = handed().await;
        let empty = t
            .visor
            .complete_hook_with_settings("web-0", "web-db", &settings(&[("", "x")]))
            .await;
        assert!(matches!(empty, Err(Error::InvalidArgument { what: "settings", .. })), "{empty:?}");

        t.visor.remove_relation("web-db").await.expect("removed");
        let gone = t
            .visor
            .complete_hook_with_settings("web-0", "web-db", &settings(&[("host", "web1")]))
            .await;
        assert!(
            matches!(&gone, Err(Error::NotFound(object)) if object.kind == Kind::Relation),
            "settings need their relation: {gone:?}"
        );
        let pending = t.visor.pending_hook("web-0", "web-db").await.expect("still handed");
        assert_eq!(pending.state, None, "no state written");
        assert!(pending.relation.is_none());
        assert!(matches!(t.visor.settings("web-db", "web-0").await, Err(Error::NotFound(_))));

        let broken = json!({"kind": "broken", "relation_id": "web-db", "remote_unit": null, "change_version": 0});
        put_raw(&t, "/visor/hooks/web-1/web-db", broken).await;
        let refused = t
            .visor
            .complete_hook_with_settings("web-1", "web-db", &settings(&[("a", "1")]))
            .await;
        assert!(
            matches!(&refused, Err(Error::InvalidArgument { reason, .. }) if reason.contains("broken")),
            "{refused:?}"
        );
        t.visor.complete_hook("web-1", "web-db").await.expect("broken, without settings");
    })
    .await;
}

#[tokio::test]
async fn a_failure_is_recorded_only_on_the_hook_as_read() {
    within(LIMIT, "etcd hangs", async {
        let t = handed().await;
        let read = t.visor.hook("web-0", "web-db").await.expect("a hook");
        let once = t
            .visor
            .record_hook_failure("web-0", "web-db", &read, "exited with code 1")
            .await
            .expect("recorded");
        let twice = t
            .visor
            .record_hook_failure("web-0", "web-db", &once, "exited with code 2")
            .await
            .expect("recorded again");
        let failure = twice.value.failed.clone().expect("a failure");
        assert_eq!(
            (failure.attempts, failure.reason.as_str()),
            (2, "exited with code 2")
        );
        assert_eq!(twice.value.hook, read.value.hook, "the same hook");
        assert!(matches!(
            t.visor
                .record_hook_failure("web-0", "web-db", &read, "stale")
                .await,
            Err(Error::Conflict { .. })
        ));
        t.visor
            .complete_hook("web-0", "web-db")
            .await
            .expect("acknowledged");
        assert!(matches!(
            t.visor
                .record_hook_failure("web-0", "web-db", &twice, "late")
                .await,
            Err(Error::NotFound(_))
        ));
    })
    .await;
}
