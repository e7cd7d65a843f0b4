//! Endpoint subscriptions and registrations across registry trouble, against
//! a real etcd: an etcd restart, and an outage long enough to lose the lease,
//! bring the registration back under the same uuid, and subscribers see
//! exactly what happened to the key (nothing if it survived, one death and one
//! return if it did not); a subscriber that lags while history is compacted
//! catches up by relisting, with every event exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use visor::discovery::{
    self, EndpointEvent, Interest, RegisterRequest, Registration, SubscribeOptions, Subscription,
};

use visor_testkit::{TestRegistry, eventually, fixtures, within};

const LIMIT: Duration = Duration::from_secs(90);
const TTL: Duration = Duration::from_secs(2);

fn request(hostname: &str) -> RegisterRequest {
    RegisterRequest {
        hostname: hostname.to_owned(),
        ports: [("postgres".to_owned(), "5432".to_owned())].into(),
        ttl: TTL,
        ..RegisterRequest::default()
    }
}

async fn register(t: &TestRegistry, hostname: &str) -> Registration {
    discovery::register(&t.visor, "db", request(hostname))
        .await
        .expect("register")
}

async fn next(sub: &mut Subscription, what: &str) -> EndpointEvent {
    within(
        fixtures::EVENT_WAIT,
        &format!("no event: {what}"),
        sub.next(),
    )
    .await
    .unwrap_or_else(|| panic!("subscription ended: {what}"))
    .unwrap_or_else(|error| panic!("subscription failed ({what}): {error}"))
}

/// `("new" | "down", id)`, for comparing event sequences.
fn label(event: &EndpointEvent) -> (&'static str, String) {
    match event {
        EndpointEvent::New { id, .. } => ("new", id.clone()),
        EndpointEvent::Down { id, .. } => ("down", id.clone()),
    }
}

/// Every event up to and including the `New` of `sentinel`.
async fn until_new(sub: &mut Subscription, sentinel: &str) -> Vec<(&'static str, String)> {
    let mut events = Vec::new();
    loop {
        let event = label(&next(sub, "events up to the sentinel's registration").await);
        let done = event == ("new", sentinel.to_owned());
        events.push(event);
        if done {
            return events;
        }
    }
}

/// The key's (create revision, lease), read with a raw client that may still
/// be reconnecting.
async fn raw_kv(t: &TestRegistry, key: &str) -> Option<(i64, i64)> {
    let response = t.raw().get(key, None).await.ok()?;
    response
        .kvs()
        .first()
        .map(|kv| (kv.create_revision(), kv.lease()))
}

/// Asserts the subscriber saw exactly what happened to `reg`'s key across the
/// trouble: nothing if the key survived (same create revision), else one death
/// and one return; then the sentinel's registration.
async fn assert_exactly_what_happened(
    t: &TestRegistry,
    sub: &mut Subscription,
    reg: &Registration,
    created_before: i64,
) {
    let (created_after, lease) = raw_kv(t, reg.key()).await.expect("the key is back");
    assert_eq!(Some(lease), reg.lease_id(), "bound to the current lease");
    let sentinel = register(t, "sentinel").await;
    let events = until_new(sub, sentinel.id()).await;
    let id = reg.id().to_owned();
    let mut expected = Vec::new();
    if created_after != created_before {
        expected.push(("down", id.clone()));
        expected.push(("new", id));
    }
    expected.push(("new", sentinel.id().to_owned()));
    assert_eq!(
        events, expected,
        "key created at {created_before}, now at {created_after}"
    );
}

#[tokio::test]
async fn a_registration_survives_an_etcd_restart_under_its_uuid() {
    within(
        LIMIT,
        "the registration or the subscriber never recovers",
        async {
            let mut t = TestRegistry::start().await;
            let reg = register(&t, "db1").await;
            let mut sub = discovery::subscribe(&t.visor, "db", SubscribeOptions::default())
                .await
                .expect("subscribe");
            let (created, _) = raw_kv(&t, reg.key()).await.expect("registered");

            t.server.restart().await.expect("restart etcd");
            eventually(
                Duration::from_secs(20),
                "registered after the restart",
                || async {
                    let (_, lease) = raw_kv(&t, reg.key()).await?;
                    (reg.ready() && Some(lease) == reg.lease_id()).then_some(())
                },
            )
            .await;
            assert_exactly_what_happened(&t, &mut sub, &reg, created).await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_registration_lost_in_an_outage_comes_back_under_its_uuid() {
    within(
        LIMIT,
        "the registration or the subscriber never recovers",
        async {
            let mut t = TestRegistry::start().await;
            let reg = register(&t, "db1").await;
            let old_lease = reg.lease_id().expect("registered");
            let mut sub = discovery::subscribe(&t.visor, "db", SubscribeOptions::default())
                .await
                .expect("subscribe");
            let (created, _) = raw_kv(&t, reg.key()).await.expect("registered");

            t.server.kill();
            eventually(
                Duration::from_secs(10),
                "the lease counts as lost",
                || async { (!reg.ready()).then_some(()) },
            )
            .await;
            t.server.restart().await.expect("restart etcd");
            within(
                Duration::from_secs(20),
                "re-registration after the outage",
                reg.wait_registered(),
            )
            .await;
            assert_ne!(
                reg.lease_id(),
                Some(old_lease),
                "registered under a new lease"
            );
            assert_exactly_what_happened(&t, &mut sub, &reg, created).await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_lagging_subscriber_catches_up_after_compaction_with_every_event_once() {
    within(LIMIT, "the lagging subscriber never catches up", async {
        let t = TestRegistry::start().await;
        let mut doomed = Vec::new();
        for i in 0..3 {
            doomed.push(register(&t, &format!("doomed{i}")).await);
        }
        let returning = register(&t, "returning").await;
        let stopping = register(&t, "stopping").await;
        let options = SubscribeOptions {
            interest: Interest::Both,
            buffer: 1,
        };
        let mut sub = discovery::subscribe(&t.visor, "db", options)
            .await
            .expect("subscribe");
        // One event read proves the watch is established; from here on the
        // subscriber stops reading, so its one-slot buffer fills at once.
        let first = register(&t, "first").await;
        assert_eq!(
            label(&next(&mut sub, "first").await),
            ("new", first.id().to_owned())
        );

        let mut expected: BTreeMap<(&str, String), usize> = BTreeMap::new();
        for reg in doomed {
            let lease = reg.lease_id().expect("registered");
            expected.insert(("down", reg.id().to_owned()), 1);
            drop(reg); // no re-registration: a plain death
            t.raw().lease_revoke(lease).await.expect("revoke");
        }
        let mut born = Vec::new();
        for i in 0..3 {
            let reg = register(&t, &format!("born{i}")).await;
            expected.insert(("new", reg.id().to_owned()), 1);
            born.push(reg);
        }
        // Dies and comes back under its uuid: both events, each once.
        let old = returning.lease_id().expect("registered");
        t.raw().lease_revoke(old).await.expect("revoke");
        eventually(Duration::from_secs(10), "re-registration", || async {
            (returning.ready() && returning.lease_id() != Some(old)).then_some(())
        })
        .await;
        expected.insert(("down", returning.id().to_owned()), 1);
        expected.insert(("new", returning.id().to_owned()), 1);
        // A clean stop, and a birth followed by a clean stop: no events.
        stopping.stop().await.expect("stop");
        discovery::register(&t.visor, "db", request("brief"))
            .await
            .expect("register")
            .stop()
            .await
            .expect("stop");

        let revision = fixtures::raw_revision(&t).await;
        t.raw().compact(revision, None).await.expect("compact");

        let sentinel = register(&t, "sentinel").await;
        let events = until_new(&mut sub, sentinel.id()).await;
        let mut counted: BTreeMap<(&str, String), usize> = BTreeMap::new();
        for event in events {
            *counted.entry(event).or_default() += 1;
        }
        expected.insert(("new", sentinel.id().to_owned()), 1);
        assert_eq!(counted, expected, "every event exactly once, nothing else");
        assert!(
            sub.relists() >= 1,
            "the lagging subscriber caught up through a relist"
        );
    })
    .await;
}
