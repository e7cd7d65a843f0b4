//! `Visor::follow_notifications` against a real etcd, across the trouble it
//! must ride out: an etcd restart under an open watch, and history compacted
//! while the stream was not being read. Either way every notification is
//! yielded once, in sequence order, and following goes on afterwards.

use std::time::Duration;

use futures::StreamExt;
use visor::model::{Name, NotificationKind};
use visor::registry::{NotificationStream, Posting, PostingSubject};

use visor_testkit::{TestRegistry, eventually, within};

const LIMIT: Duration = Duration::from_secs(90);
/// Bound on one notification arriving; covers a reconnection with backoff.
const NEXT_WAIT: Duration = Duration::from_secs(30);

fn down(endpoint: &str) -> Posting {
    Posting {
        kind: NotificationKind::ServiceDown,
        subject: PostingSubject::Service {
            service: Name::parse("service", "db").expect("valid"),
            endpoint: Some(endpoint.to_owned()),
            hostname: Some(format!("{endpoint}.example")),
            tracked: None,
            endpoint_key: None,
            status: None,
        },
        reason: "its registration expired or was deleted".to_owned(),
    }
}

/// Posts one notification per call (one revision each).
async fn post_each(t: &TestRegistry, endpoints: &[&str]) {
    for endpoint in endpoints {
        t.visor
            .post_notifications(&[down(endpoint)])
            .await
            .expect("post a notification");
    }
}

async fn next_seq(stream: &mut NotificationStream, what: &str) -> u64 {
    within(
        NEXT_WAIT,
        &format!("no notification: {what}"),
        stream.next(),
    )
    .await
    .unwrap_or_else(|| panic!("the stream ended: {what}"))
    .unwrap_or_else(|error| panic!("the stream failed ({what}): {error}"))
    .seq
}

/// Every sequence number yielded up to and including `last`.
async fn seqs_through(stream: &mut NotificationStream, last: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let seq = next_seq(stream, &format!("up to {last}, after {seqs:?}")).await;
        seqs.push(seq);
        if seq >= last {
            return seqs;
        }
    }
}

#[tokio::test]
async fn following_survives_an_etcd_restart_without_repeating_or_losing_a_seq() {
    within(
        LIMIT,
        "the follower never recovers from the restart",
        async {
            let mut t = TestRegistry::start().await;
            post_each(&t, &["u1", "u2"]).await;
            let mut stream = t.visor.follow_notifications(0).await.expect("follow");
            assert_eq!(seqs_through(&mut stream, 2).await, [1, 2], "the listing");
            post_each(&t, &["u3"]).await;
            assert_eq!(next_seq(&mut stream, "posted while watching").await, 3);

            t.server.restart().await.expect("restart etcd");
            // The first posts after the restart may fail while the client
            // reconnects; one that timed out may still have been written, so
            // what to expect is read back from the sequence.
            for endpoint in ["u4", "u5"] {
                eventually(
                    Duration::from_secs(20),
                    "a post after the restart",
                    || async { t.visor.post_notifications(&[down(endpoint)]).await.ok() },
                )
                .await;
            }
            let last = t.visor.last_notification().await.expect("the sequence");
            assert!(last >= 5, "{last}");
            let after_restart = seqs_through(&mut stream, last).await;
            assert_eq!(
                after_restart,
                (4..=last).collect::<Vec<_>>(),
                "every seq after the restart once, in order"
            );

            post_each(&t, &["u6"]).await;
            assert_eq!(
                next_seq(&mut stream, "posted after recovering").await,
                last + 1,
                "still following"
            );
            assert_eq!(stream.relists(), 0, "nothing was compacted");
        },
    )
    .await;
}

#[tokio::test]
async fn following_relists_after_compaction_with_every_seq_once_in_order() {
    within(
        LIMIT,
        "the follower never catches up after compaction",
        async {
            let t = TestRegistry::start().await;
            post_each(&t, &["u1", "u2", "u3"]).await;
            // Listed now (2 and 3); nothing watches until the stream is read.
            let mut stream = t.visor.follow_notifications(1).await.expect("follow");
            post_each(&t, &["u4", "u5", "u6"]).await;
            let response = t.raw().get("/", None).await.expect("read the revision");
            let revision = response.header().expect("header").revision();
            t.raw().compact(revision, None).await.expect("compact");

            assert_eq!(
                seqs_through(&mut stream, 6).await,
                [2, 3, 4, 5, 6],
                "every seq once, in order, across the compacted gap"
            );
            assert_eq!(stream.relists(), 1, "the gap was filled by listing again");
            post_each(&t, &["u7"]).await;
            assert_eq!(next_seq(&mut stream, "posted after the relist").await, 7);
        },
    )
    .await;
}

#[tokio::test]
async fn retention_deletes_are_not_notifications_and_following_starts_after_the_number_given() {
    within(
        LIMIT,
        "the follower never sees the new notification",
        async {
            let t = TestRegistry::start().await;
            post_each(&t, &["u1", "u2", "u3"]).await;
            let mut stream = t.visor.follow_notifications(3).await.expect("follow");
            // Keep only the newest: deletes seen by the watch yield nothing.
            let trimmed = t
                .visor
                .trim_notifications(1, chrono::DateTime::<chrono::Utc>::MIN_UTC)
                .await
                .expect("trim");
            assert_eq!(trimmed, 2);
            post_each(&t, &["u4"]).await;
            assert_eq!(next_seq(&mut stream, "posted after the trim").await, 4);
        },
    )
    .await;
}
