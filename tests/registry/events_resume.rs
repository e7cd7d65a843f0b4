//! Resuming and losing the event stream against a real etcd: a stream
//! dropped anywhere and resumed with `watch_events_after(last)` has no gap and
//! no repeat, and history removed by compaction fails with `Compacted`.

use std::time::Duration;

use fixtures::script::{assert_matches, every_kind_of_operation};
use visor::Error;
use visor::registry::EventKind;

use visor_testkit::fixtures::{self, app, next_event, next_events, raw_revision, seed};
use visor_testkit::{TestRegistry, within};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn resuming_after_the_last_event_has_no_gap_and_no_repeat() {
    within(LIMIT, "an event read hangs", async {
        let t = TestRegistry::start().await;
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
                let last = events.last().expect("a first part").clone();
                let mut second = v
                    .watch_events_after(&last)
                    .await
                    .expect("watch second part");
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

/// One write can yield several events (a cascade); a consumer that stops after
/// the first of them and resumes after it gets the rest, then what follows.
#[tokio::test]
async fn resuming_in_the_middle_of_a_cascade_loses_nothing() {
    within(LIMIT, "an event read hangs", async {
        let t = TestRegistry::start().await;
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
            .watch_events_after(&events[0])
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
    within(LIMIT, "compaction or a watch hangs", async {
        let t = TestRegistry::start().await;
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
        match within(
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
        let end = within(
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
