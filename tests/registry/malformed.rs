//! Values Visor never wrote, put under its prefixes with the real `etcdctl`:
//! listings skip and report them by key while still listing the valid items,
//! reads of them fail with `Malformed` naming the key, writes over them behave,
//! and the event stream skips them and keeps going. Nothing panics.

use std::time::Duration;

use visor::Error;
use visor::model::{InstanceState, TicketOp};
use visor::registry::{EventKind, InstanceFilter, Kind, Malformed};

use visor_testkit::fixtures::{
    self, etcdctl_put, host, instance, next_event, raw_revision, seed, ticket,
};
use visor_testkit::{TestRegistry, within};

const LIMIT: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(2);

/// Asserts `skipped` reports exactly `keys`, each as a value of `kind`.
fn assert_skipped(skipped: &[Malformed], kind: Kind, keys: &[&str]) {
    let reported: Vec<&str> = skipped.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(reported, keys, "skipped {kind:?} values");
    for m in skipped {
        assert_eq!(m.kind, kind, "{m}");
        assert!(!m.reason.is_empty(), "{m} says why");
        assert!(m.to_string().contains(&m.key), "{m} names its key");
    }
}

/// Asserts a read failed with `Malformed` naming `key`.
fn assert_malformed<T: std::fmt::Debug>(result: visor::Result<T>, kind: Kind, key: &str) {
    match result {
        Err(error @ Error::Malformed { .. }) => {
            assert!(error.to_string().contains(key), "{error} names {key}");
            let Error::Malformed {
                kind: k,
                key: found,
                ..
            } = error
            else {
                unreachable!("matched above")
            };
            assert_eq!((k, found.as_str()), (kind, key));
        }
        other => panic!("reading {key}: expected Malformed, got {other:?}"),
    }
}

#[tokio::test]
async fn listings_skip_and_report_malformed_values_and_reads_name_the_key() {
    within(LIMIT, "etcdctl, a listing or a read hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        seed(&t, "web", "v1", "http").await;
        v.set_scale("web", "v1", "http", 2)
            .await
            .expect("set scale");
        let good = v
            .create_instance(instance(Some("h1")))
            .await
            .expect("create instance");
        let ticket_ok = v
            .create_ticket("h1", ticket(TicketOp::Start, "i1"))
            .await
            .expect("create ticket");
        let registration = v
            .register_host("h1", host("10.0.0.1"), TTL)
            .await
            .expect("register host");

        let bad_name = concat!(
            r#"{"app":"Bad Name","rev":"v1","proc":"http","#,
            r#""state":"pending","created_at":"2026-01-01T00:00:00Z"}"#
        );
        for (key, value) in [
            ("/visor/apps/broken", "not json"),
            ("/visor/procs/web/broken", "not json"),
            ("/visor/revs/web/broken", "{}"),
            ("/visor/scale/web/v1/broken", "not json"),
            ("/visor/scale/web/v1/negative", r#"{"replicas":-1}"#),
            ("/visor/hosts/broken", "not json"),
            ("/visor/instances/broken", "not json"),
            ("/visor/instances/bad-name", bad_name),
            ("/visor/tickets/h1/broken", "not json"),
        ] {
            etcdctl_put(&t, key, value);
        }

        let apps = v.apps().await.expect("list apps");
        assert_eq!(
            apps.items.iter().map(|a| a.name()).collect::<Vec<_>>(),
            ["web"]
        );
        assert_skipped(&apps.skipped, Kind::App, &["/visor/apps/broken"]);
        assert_malformed(v.app("broken").await, Kind::App, "/visor/apps/broken");

        let procs = v.procs("web").await.expect("list procs");
        assert_eq!(
            procs.items.iter().map(|p| p.name()).collect::<Vec<_>>(),
            ["http"]
        );
        assert_skipped(&procs.skipped, Kind::Proc, &["/visor/procs/web/broken"]);
        assert_malformed(
            v.proc("web", "broken").await,
            Kind::Proc,
            "/visor/procs/web/broken",
        );

        let revs = v.revs("web").await.expect("list revs");
        assert_eq!(
            revs.items.iter().map(|r| r.name()).collect::<Vec<_>>(),
            ["v1"]
        );
        assert_skipped(&revs.skipped, Kind::Rev, &["/visor/revs/web/broken"]);
        assert_malformed(
            v.rev("web", "broken").await,
            Kind::Rev,
            "/visor/revs/web/broken",
        );

        let scales = v.scales(None).await.expect("list scales");
        assert_eq!(
            scales
                .items
                .iter()
                .map(|s| (s.value.proc.as_str(), s.value.replicas))
                .collect::<Vec<_>>(),
            [("http", 2)]
        );
        assert_skipped(
            &scales.skipped,
            Kind::Scale,
            &["/visor/scale/web/v1/broken", "/visor/scale/web/v1/negative"],
        );
        assert_eq!(
            v.scales(Some("web"))
                .await
                .expect("list web scales")
                .skipped
                .len(),
            2
        );
        assert_malformed(
            v.scale("web", "v1", "broken").await,
            Kind::Scale,
            "/visor/scale/web/v1/broken",
        );
        assert_malformed(
            v.scale("web", "v1", "negative").await,
            Kind::Scale,
            "/visor/scale/web/v1/negative",
        );

        let hosts = v.hosts().await.expect("list hosts");
        assert_eq!(
            hosts.items.iter().map(|h| h.name()).collect::<Vec<_>>(),
            ["h1"]
        );
        assert_skipped(&hosts.skipped, Kind::Host, &["/visor/hosts/broken"]);
        assert_malformed(v.host("broken").await, Kind::Host, "/visor/hosts/broken");

        for filter in [
            InstanceFilter::default(),
            InstanceFilter {
                app: Some("web".into()),
                ..Default::default()
            },
        ] {
            let instances = v.instances(&filter).await.expect("list instances");
            assert_eq!(
                instances.items.iter().map(|i| i.name()).collect::<Vec<_>>(),
                [good.name()]
            );
            assert_skipped(
                &instances.skipped,
                Kind::Instance,
                &["/visor/instances/bad-name", "/visor/instances/broken"],
            );
        }
        assert_malformed(
            v.instance("broken").await,
            Kind::Instance,
            "/visor/instances/broken",
        );
        assert_malformed(
            v.instance("bad-name").await,
            Kind::Instance,
            "/visor/instances/bad-name",
        );

        for listing in [v.tickets(Some("h1")).await, v.tickets(None).await] {
            let tickets = listing.expect("list tickets");
            assert_eq!(
                tickets.items.iter().map(|t| t.name()).collect::<Vec<_>>(),
                [ticket_ok.name()]
            );
            assert_skipped(
                &tickets.skipped,
                Kind::Ticket,
                &["/visor/tickets/h1/broken"],
            );
        }
        assert_malformed(
            v.ticket("h1", "broken").await,
            Kind::Ticket,
            "/visor/tickets/h1/broken",
        );

        registration.deregister().await.expect("deregister");
    })
    .await;
}

#[tokio::test]
async fn writes_over_malformed_values_are_refused_or_repair_them() {
    within(LIMIT, "etcdctl or a write hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        seed(&t, "web", "v1", "http").await;
        etcdctl_put(&t, "/visor/instances/broken", "not json");
        etcdctl_put(&t, "/visor/tickets/h1/broken", "not json");
        etcdctl_put(&t, "/visor/scale/web/v1/http", "not json");

        let before = raw_revision(&t).await;
        assert_malformed(
            v.claim_instance("broken", "h1").await,
            Kind::Instance,
            "/visor/instances/broken",
        );
        assert_malformed(
            v.transition_instance(
                "broken",
                InstanceState::Lost,
                &visor::model::Actor::Controller,
            )
            .await,
            Kind::Instance,
            "/visor/instances/broken",
        );
        assert_malformed(
            v.claim_ticket("h1", "broken", "h1").await,
            Kind::Ticket,
            "/visor/tickets/h1/broken",
        );
        assert_eq!(
            raw_revision(&t).await,
            before,
            "refused writes over malformed values write nothing"
        );

        // A scale factor is set, not updated: setting it replaces the malformed value.
        v.set_scale("web", "v1", "http", 3)
            .await
            .expect("set over a malformed factor");
        assert_eq!(
            v.scale("web", "v1", "http")
                .await
                .expect("read")
                .value
                .replicas,
            3
        );
        // Unregistering the proc also removes a malformed factor naming it.
        etcdctl_put(&t, "/visor/scale/web/v1/http", "not json");
        v.unregister_proc("web", "http")
            .await
            .expect("unregister proc");
        assert!(fixtures::raw_keys(&t, "/visor/scale/").await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn the_event_stream_skips_undecodable_values_and_keeps_delivering() {
    within(LIMIT, "etcdctl or an event read hangs", async {
        let t = TestRegistry::start().await;
        let from = raw_revision(&t).await + 1;
        let mut stream = t.visor.watch_events(from).await.expect("watch");
        for (key, value) in [
            ("/visor/instances/broken", "not json"),
            ("/visor/tickets/h1/broken", "not json"),
            ("/visor/scale/web/v1/broken", r#"{"replicas":-1}"#),
        ] {
            etcdctl_put(&t, key, value);
        }
        let after = t
            .visor
            .register_app("after", fixtures::app("git://after"))
            .await
            .expect("register");
        let event = next_event(&mut stream, "the event after the malformed values").await;
        assert_eq!(
            (event.kind, event.revision),
            (
                EventKind::AppRegistered {
                    app: "after".into()
                },
                after.mod_revision
            )
        );

        etcdctl_put(&t, "/visor/instances/broken", "still not json");
        let later = t
            .visor
            .register_app("later", fixtures::app("git://later"))
            .await
            .expect("register");
        let event = next_event(&mut stream, "a later event").await;
        assert_eq!(
            (event.kind, event.revision),
            (
                EventKind::AppRegistered {
                    app: "later".into()
                },
                later.mod_revision
            )
        );
    })
    .await;
}

/// Values that listings skip and reads refuse must not be announced by the
/// event stream either: a consumer told `app-registered broken` cannot read it.
#[tokio::test]
async fn the_event_stream_skips_malformed_apps_hosts_procs_and_revs_too() {
    within(LIMIT, "etcdctl or an event read hangs", async {
        let t = TestRegistry::start().await;
        let from = raw_revision(&t).await + 1;
        let mut stream = t.visor.watch_events(from).await.expect("watch");
        for key in [
            "/visor/apps/broken",
            "/visor/hosts/broken",
            "/visor/procs/web/broken",
            "/visor/revs/web/broken",
        ] {
            etcdctl_put(&t, key, "not json");
        }
        let after = t
            .visor
            .register_app("after", fixtures::app("git://after"))
            .await
            .expect("register");
        let event = next_event(&mut stream, "the event after the malformed values").await;
        assert_eq!(
            (event.kind, event.revision),
            (
                EventKind::AppRegistered {
                    app: "after".into()
                },
                after.mod_revision
            ),
            "the first event must be the valid registration, not one for a malformed value"
        );
    })
    .await;
}
