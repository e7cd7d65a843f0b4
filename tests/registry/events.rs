//! The typed event stream against a real etcd: every operation yields
//! exactly one event of the right kind, at the revision the operation wrote,
//! in revision order, both live and replayed; an unregister cascade yields all
//! its removals at one revision.

use std::time::Duration;

use fixtures::script::{assert_matches, every_kind_of_operation};
use visor::registry::EventKind;

use visor_testkit::fixtures::{
    self, app, next_event, next_events, proc_type, raw_revision, revision, seed,
};
use visor_testkit::{TestRegistry, within};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn each_operation_yields_one_event_of_its_kind_at_its_revision() {
    within(LIMIT, "an operation or an event read hangs", async {
        let t = TestRegistry::start().await;
        let from = raw_revision(&t).await + 1;
        // One stream follows the operations live, another replays them afterwards.
        let mut live = t.visor.watch_events(from).await.expect("watch live");
        let expected = every_kind_of_operation(&t).await;
        let mut replay = t.visor.watch_events(from).await.expect("watch replay");
        for stream in [&mut live, &mut replay] {
            let events = next_events(stream, expected.len(), "one per operation").await;
            // The sentinel is last, so no operation produced a second event.
            assert_matches(&events, &expected);
        }
        let after = t
            .visor
            .register_app("after", app("git://after"))
            .await
            .expect("register");
        let next = next_event(&mut live, "app after").await;
        assert_eq!(
            (next.kind, next.revision),
            (
                EventKind::AppRegistered {
                    app: "after".into()
                },
                after.mod_revision
            )
        );
    })
    .await;
}

#[tokio::test]
async fn unregister_cascades_yield_every_removal_at_one_revision() {
    within(LIMIT, "a cascade or an event read hangs", async {
        use EventKind::*;
        let t = TestRegistry::start().await;
        let v = &t.visor;
        let s = |x: &str| x.to_owned();
        seed(&t, "web", "v1", "http").await;
        v.register_rev("web", "v2", revision("https://a/2"))
            .await
            .expect("register rev");
        v.register_proc("web", "worker", proc_type("work"))
            .await
            .expect("register proc");
        v.set_env("web", "PORT", "80").await.expect("set env");
        for (rev, proc) in [("v1", "http"), ("v2", "http"), ("v1", "worker")] {
            v.set_scale("web", rev, proc, 1).await.expect("set scale");
        }
        let from = raw_revision(&t).await + 1;
        let scale_gone = |rev: &str, proc: &str| ScaleChanged {
            app: s("web"),
            rev: s(rev),
            proc: s(proc),
            replicas: None,
        };

        let rev_at = v.unregister_rev("web", "v2").await.expect("unregister rev");
        let proc_at = v
            .unregister_proc("web", "worker")
            .await
            .expect("unregister proc");
        let app_at = v.unregister_app("web").await.expect("unregister app");
        let mut expected = vec![
            (
                rev_at,
                vec![
                    RevUnregistered {
                        app: s("web"),
                        rev: s("v2"),
                    },
                    scale_gone("v2", "http"),
                ],
            ),
            (
                proc_at,
                vec![
                    ProcUnregistered {
                        app: s("web"),
                        proc: s("worker"),
                    },
                    scale_gone("v1", "worker"),
                ],
            ),
            (
                app_at,
                vec![
                    AppUnregistered { app: s("web") },
                    EnvUnset {
                        app: s("web"),
                        key: s("PORT"),
                    },
                    ProcUnregistered {
                        app: s("web"),
                        proc: s("http"),
                    },
                    RevUnregistered {
                        app: s("web"),
                        rev: s("v1"),
                    },
                    scale_gone("v1", "http"),
                ],
            ),
        ];
        let mut stream = v.watch_events(from).await.expect("watch");
        for (revision, kinds) in &mut expected {
            let mut got = Vec::new();
            for event in next_events(&mut stream, kinds.len(), "a cascade's removals").await {
                assert_eq!(
                    event.revision, *revision,
                    "{:?} belongs to the cascade at {revision}",
                    event.kind
                );
                got.push(format!("{:?}", event.kind));
            }
            // Within one revision the order is etcd's; compare as sets.
            let mut want: Vec<String> = kinds.iter().map(|k| format!("{k:?}")).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "events of the cascade at revision {revision}");
        }
    })
    .await;
}
