//! The typed event stream against a real etcd: one event of the right kind
//! per operation, at the revision the operation wrote, in revision order;
//! cascades at one revision; gap-free, repeat-free resumption from
//! `last.revision + 1`; and `Compacted` for history that is gone.

mod common;
mod fixtures;

use std::time::Duration;

use fixtures::{
    app, host, instance, next_event, next_events, proc_type, raw_keys, raw_revision, revision,
    seed, ticket,
};
use visor::Error;
use visor::model::TicketOp;
use visor::registry::{Event, EventKind};

const LIMIT: Duration = Duration::from_secs(60);
const TTL: Duration = Duration::from_secs(1);

/// Where an expected event's revision must be.
#[derive(Debug, Clone, Copy)]
enum At {
    /// The revision an API call returned.
    Exactly(i64),
    /// For calls that return none (deregister, lease expiry): after the
    /// first bound, at or before the second.
    Within(i64, i64),
}

/// Runs one operation of every kind, returning the events it must produce.
/// Ends with the registration of app `sentinel`, which no event may follow.
async fn every_kind_of_operation(t: &common::TestRegistry) -> Vec<(EventKind, At)> {
    use EventKind::*;
    let v = &t.visor;
    let s = |x: &str| x.to_owned();
    let mut expected = Vec::new();
    let mut expect = |kind: EventKind, at: At| expected.push((kind, at));

    let web = v
        .register_app("web", app("git://web"))
        .await
        .expect("register app");
    expect(
        AppRegistered { app: s("web") },
        At::Exactly(web.mod_revision),
    );
    let updated = v
        .update_app(&web, app("git://web-2"))
        .await
        .expect("update app");
    expect(
        AppUpdated { app: s("web") },
        At::Exactly(updated.mod_revision),
    );
    let set = v.set_env("web", "PORT", "80").await.expect("set env");
    expect(
        EnvSet {
            app: s("web"),
            key: s("PORT"),
        },
        At::Exactly(set.mod_revision),
    );
    let unset = v.unset_env("web", "PORT").await.expect("unset env");
    expect(
        EnvUnset {
            app: s("web"),
            key: s("PORT"),
        },
        At::Exactly(unset),
    );
    let http = v
        .register_proc("web", "http", proc_type("serve"))
        .await
        .expect("register proc");
    expect(
        ProcRegistered {
            app: s("web"),
            proc: s("http"),
        },
        At::Exactly(http.mod_revision),
    );
    let v1 = v
        .register_rev("web", "v1", revision("https://a/1"))
        .await
        .expect("register rev");
    expect(
        RevRegistered {
            app: s("web"),
            rev: s("v1"),
        },
        At::Exactly(v1.mod_revision),
    );
    let scale = v
        .set_scale("web", "v1", "http", 2)
        .await
        .expect("set scale");
    expect(
        ScaleChanged {
            app: s("web"),
            rev: s("v1"),
            proc: s("http"),
            replicas: Some(2),
        },
        At::Exactly(scale.mod_revision),
    );
    let worker = v
        .register_proc("web", "worker", proc_type("work"))
        .await
        .expect("register proc");
    expect(
        ProcRegistered {
            app: s("web"),
            proc: s("worker"),
        },
        At::Exactly(worker.mod_revision),
    );
    let gone = v
        .unregister_proc("web", "worker")
        .await
        .expect("unregister proc");
    expect(
        ProcUnregistered {
            app: s("web"),
            proc: s("worker"),
        },
        At::Exactly(gone),
    );
    let v2 = v
        .register_rev("web", "v2", revision("https://a/2"))
        .await
        .expect("register rev");
    expect(
        RevRegistered {
            app: s("web"),
            rev: s("v2"),
        },
        At::Exactly(v2.mod_revision),
    );
    let gone = v.unregister_rev("web", "v2").await.expect("unregister rev");
    expect(
        RevUnregistered {
            app: s("web"),
            rev: s("v2"),
        },
        At::Exactly(gone),
    );

    let solo = v
        .register_app("solo", app("git://solo"))
        .await
        .expect("register app");
    expect(
        AppRegistered { app: s("solo") },
        At::Exactly(solo.mod_revision),
    );
    let gone = v.unregister_app("solo").await.expect("unregister app");
    expect(AppUnregistered { app: s("solo") }, At::Exactly(gone));

    let h1 = v
        .register_host("h1", host("10.0.0.1"), TTL)
        .await
        .expect("register host");
    expect(
        HostUp { host: s("h1") },
        At::Exactly(h1.host().mod_revision),
    );

    let i1 = v
        .create_instance(instance(Some("h1")))
        .await
        .expect("create instance");
    let id = i1.name().to_owned();
    let registered = InstanceRegistered {
        id: id.clone(),
        app: s("web"),
        rev: s("v1"),
        proc: s("http"),
        host: Some(s("h1")),
    };
    expect(registered, At::Exactly(i1.mod_revision));
    let claimed = v.claim_instance(&id, "h1").await.expect("claim");
    expect(
        InstanceClaimed {
            id: id.clone(),
            host: Some(s("h1")),
        },
        At::Exactly(claimed.mod_revision),
    );
    let started = v
        .start_instance(&id, "h1", Some(8080))
        .await
        .expect("start");
    expect(
        InstanceStarted {
            id: id.clone(),
            host: Some(s("h1")),
        },
        At::Exactly(started.mod_revision),
    );
    let stopping = v.stop_instance(&id, "h1").await.expect("stop");
    expect(
        InstanceStopping { id: id.clone() },
        At::Exactly(stopping.mod_revision),
    );
    let exited = v.exit_instance(&id, "h1", None).await.expect("exit");
    expect(
        InstanceExited { id: id.clone() },
        At::Exactly(exited.mod_revision),
    );
    let removed = v
        .unregister_instance(&exited)
        .await
        .expect("unregister instance");
    expect(
        InstanceUnregistered { id: id.clone() },
        At::Exactly(removed),
    );

    let i2 = v
        .create_instance(instance(None))
        .await
        .expect("create instance");
    let id2 = i2.name().to_owned();
    let registered = InstanceRegistered {
        id: id2.clone(),
        app: s("web"),
        rev: s("v1"),
        proc: s("http"),
        host: None,
    };
    expect(registered, At::Exactly(i2.mod_revision));
    let claimed = v.claim_instance(&id2, "h1").await.expect("claim");
    expect(
        InstanceClaimed {
            id: id2.clone(),
            host: Some(s("h1")),
        },
        At::Exactly(claimed.mod_revision),
    );
    let failed = v
        .fail_instance(&id2, "h1", "oom".into())
        .await
        .expect("fail");
    expect(
        InstanceFailed {
            id: id2.clone(),
            reason: Some(s("oom")),
        },
        At::Exactly(failed.mod_revision),
    );
    let i3 = v
        .create_instance(instance(Some("h1")))
        .await
        .expect("create instance");
    let id3 = i3.name().to_owned();
    let registered = InstanceRegistered {
        id: id3.clone(),
        app: s("web"),
        rev: s("v1"),
        proc: s("http"),
        host: Some(s("h1")),
    };
    expect(registered, At::Exactly(i3.mod_revision));
    let lost = v
        .lose_instance(&id3, "host gone".into())
        .await
        .expect("lose");
    expect(
        InstanceLost {
            id: id3,
            reason: Some(s("host gone")),
        },
        At::Exactly(lost.mod_revision),
    );

    let created = v
        .create_ticket("h1", ticket(TicketOp::Start, &id2))
        .await
        .expect("create ticket");
    let tid = created.name().to_owned();
    expect(
        TicketCreated {
            host: s("h1"),
            ticket: tid.clone(),
            op: TicketOp::Start,
            instance: id2.clone(),
        },
        At::Exactly(created.mod_revision),
    );
    let claimed = v
        .claim_ticket("h1", &tid, "h1")
        .await
        .expect("claim ticket");
    expect(
        TicketClaimed {
            host: s("h1"),
            ticket: tid.clone(),
            by: Some(s("h1")),
        },
        At::Exactly(claimed.mod_revision),
    );
    let done = v
        .complete_ticket(&claimed, "h1")
        .await
        .expect("complete ticket");
    expect(
        TicketDone {
            host: s("h1"),
            ticket: tid,
        },
        At::Exactly(done),
    );

    let before = raw_revision(t).await;
    h1.deregister().await.expect("deregister");
    expect(
        HostDown { host: s("h1") },
        At::Within(before, raw_revision(t).await),
    );

    let h2 = v
        .register_host("h2", host("10.0.0.2"), TTL)
        .await
        .expect("register host");
    expect(
        HostUp { host: s("h2") },
        At::Exactly(h2.host().mod_revision),
    );
    let before = raw_revision(t).await;
    drop(h2);
    common::eventually(
        Duration::from_secs(10),
        "host h2's lease expires",
        || async { raw_keys(t, "/visor/hosts/").await.is_empty().then_some(()) },
    )
    .await;
    expect(
        HostDown { host: s("h2") },
        At::Within(before, raw_revision(t).await),
    );

    let sentinel = v
        .register_app("sentinel", app("git://end"))
        .await
        .expect("register sentinel");
    expect(
        AppRegistered { app: s("sentinel") },
        At::Exactly(sentinel.mod_revision),
    );
    expected
}

fn assert_matches(events: &[Event], expected: &[(EventKind, At)]) {
    assert_eq!(events.len(), expected.len());
    for (i, (event, (kind, at))) in events.iter().zip(expected).enumerate() {
        assert_eq!(&event.kind, kind, "event {i}");
        match *at {
            At::Exactly(revision) => {
                assert_eq!(event.revision, revision, "revision of event {i}: {kind:?}")
            }
            At::Within(after, upto) => assert!(
                after < event.revision && event.revision <= upto,
                "revision of event {i} ({kind:?}) is {}, not in ({after}, {upto}]",
                event.revision
            ),
        }
    }
    assert!(
        events.windows(2).all(|w| w[0].revision < w[1].revision),
        "events in revision order: {events:?}"
    );
}

#[tokio::test]
async fn each_operation_yields_one_event_of_its_kind_at_its_revision() {
    common::within(LIMIT, "an operation or an event read hangs", async {
        let t = common::TestRegistry::start().await;
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
async fn resuming_from_the_last_revision_plus_one_has_no_gap_and_no_repeat() {
    common::within(LIMIT, "an event read hangs", async {
        let t = common::TestRegistry::start().await;
        let from = raw_revision(&t).await + 1;
        let expected = every_kind_of_operation(&t).await;
        let n = expected.len();
        let full = next_events(
            &mut t.visor.watch_events(from).await.expect("watch"),
            n,
            "full stream",
        )
        .await;
        assert_matches(&full, &expected);
        // Every split point; concurrently, since etcd syncs historical watches
        // only every 100 ms.
        let splits = (1..n).map(|split| {
            let v = t.visor.clone();
            async move {
                let mut first = v.watch_events(from).await.expect("watch first part");
                let mut events = next_events(&mut first, split, "first part").await;
                drop(first);
                let resume = events.last().expect("a first part").revision + 1;
                let mut second = v.watch_events(resume).await.expect("watch second part");
                events.extend(next_events(&mut second, n - split, "second part").await);
                (split, events)
            }
        });
        for (split, events) in futures::future::join_all(splits).await {
            assert_eq!(events, full, "split after {split} events");
        }
    })
    .await;
}

#[tokio::test]
async fn unregister_cascades_yield_every_removal_at_one_revision() {
    common::within(LIMIT, "a cascade or an event read hangs", async {
        use EventKind::*;
        let t = common::TestRegistry::start().await;
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

/// A consumer cannot see where a revision's events end, so if it stops after
/// the first event of a cascade, resuming from `last.revision + 1` as the
/// module docs say must still not lose the rest of that cascade.
#[ignore = "bug in src/registry/events.rs: resuming mid-revision loses the rest of that revision"]
#[tokio::test]
async fn resuming_in_the_middle_of_a_cascade_loses_nothing() {
    common::within(LIMIT, "an event read hangs", async {
        let t = common::TestRegistry::start().await;
        seed(&t, "web", "v1", "http").await;
        t.visor
            .set_scale("web", "v1", "http", 1)
            .await
            .expect("set scale");
        let from = raw_revision(&t).await + 1;
        t.visor.unregister_app("web").await.expect("unregister app");
        let sentinel = t
            .visor
            .register_app("sentinel", app("git://end"))
            .await
            .expect("register sentinel");

        let full = next_events(
            &mut t.visor.watch_events(from).await.expect("watch"),
            5,
            "cascade and sentinel",
        )
        .await;
        let mut first = t.visor.watch_events(from).await.expect("watch");
        let mut events = vec![next_event(&mut first, "first event of the cascade").await];
        drop(first);
        let mut second = t
            .visor
            .watch_events(events[0].revision + 1)
            .await
            .expect("resume");
        while events.last().map(|e| e.revision) != Some(sentinel.mod_revision) {
            events
                .push(next_event(&mut second, "the rest of the cascade, then the sentinel").await);
        }
        assert_eq!(events, full, "resumed stream lost the rest of the cascade");
    })
    .await;
}

#[tokio::test]
async fn watching_compacted_history_fails_with_compacted() {
    common::within(LIMIT, "compaction or a watch hangs", async {
        let t = common::TestRegistry::start().await;
        let old = raw_revision(&t).await;
        for i in 0..3 {
            t.visor
                .register_app(&format!("app{i}"), app("git://x"))
                .await
                .expect("register");
        }
        let compacted = raw_revision(&t).await;
        t.raw().compact(compacted, None).await.expect("compact");

        let mut stream = t
            .visor
            .watch_events(old)
            .await
            .expect("the watch itself opens");
        let message = "a watch of compacted history neither fails nor ends";
        match common::within(
            fixtures::EVENT_WAIT,
            message,
            futures::StreamExt::next(&mut stream),
        )
        .await
        {
            Some(Err(Error::Compacted {
                requested,
                compacted: at,
            })) => {
                assert_eq!(requested, old);
                assert_eq!(at, compacted);
            }
            other => panic!("expected Compacted, got {other:?}"),
        }
        let end = common::within(
            fixtures::EVENT_WAIT,
            message,
            futures::StreamExt::next(&mut stream),
        )
        .await;
        assert!(
            end.is_none(),
            "the stream ends after Compacted, got {end:?}"
        );

        // History from the compaction revision on is still there.
        let mut stream = t
            .visor
            .watch_events(compacted)
            .await
            .expect("watch retained history");
        let event = next_event(&mut stream, "the last registration").await;
        assert_eq!(
            (event.kind, event.revision),
            (EventKind::AppRegistered { app: "app2".into() }, compacted)
        );
    })
    .await;
}
