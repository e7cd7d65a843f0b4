//! The real `visor controller` binary against a real etcd: scale up spreads
//! start tickets across hosts; scale down stops pending before running; a
//! dead host's instances are lost and replaced; a draining host's instances
//! are replaced elsewhere before they are stopped; work no host can take waits
//! (counted, and shown by `visor status`) until one can; malformed objects are
//! skipped without stopping the loops; `/metrics` passes `promtool`; and old
//! terminal instances and tickets to gone hosts are collected.

use std::collections::BTreeMap;
use std::time::Duration;

use visor::model::{InstanceState, TicketOp};

use visor_testkit::controller::{self, ControllerProcess, active, tickets};
use visor_testkit::wait::holds_for;
use visor_testkit::{TestRegistry, eventually, fixtures, within};

const LIMIT: Duration = Duration::from_secs(90);
const CONVERGE: Duration = Duration::from_secs(20);
const HOST_TTL: Duration = Duration::from_secs(2);

fn per_host(
    instances: &[visor::registry::Versioned<visor::model::Instance>],
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for instance in instances {
        let host = instance
            .value
            .host
            .as_ref()
            .map_or("-".to_owned(), ToString::to_string);
        *counts.entry(host).or_default() += 1;
    }
    counts
}

/// `visor status -o json`, through the built binary.
fn status(t: &TestRegistry) -> serde_json::Value {
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("visor"))
        .args(["--endpoints", &t.server.endpoint(), "-o", "json", "status"])
        .output()
        .expect("run visor status");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("status json")
}

#[tokio::test]
async fn scale_up_spreads_and_scale_down_stops_pending_before_running() {
    within(LIMIT, "the controller never converges", async {
        let t = TestRegistry::start().await;
        let _controller = ControllerProcess::start(&t, "c1");
        let mut hosts = Vec::new();
        for name in ["h1", "h2", "h3"] {
            hosts.push(
                t.visor
                    .register_host(name, fixtures::host("10.0.0.1"), HOST_TTL)
                    .await
                    .expect("host"),
            );
        }
        fixtures::seed(&t, "web", "v1", "http").await;
        t.visor
            .set_scale("web", "v1", "http", 5)
            .await
            .expect("scale 5");
        let starts = eventually(CONVERGE, "5 start tickets", || async {
            let starts = tickets(&t, TicketOp::Start).await;
            (starts.len() >= 5).then_some(starts)
        })
        .await;
        assert_eq!(starts.len(), 5, "exactly 5 start tickets");
        let placed = active(&t).await;
        assert_eq!(placed.len(), 5);
        let counts: Vec<usize> = per_host(&placed).into_values().collect();
        assert_eq!(counts.len(), 3, "every host gets work");
        assert!(
            counts.iter().max().expect("counts") - counts.iter().min().expect("counts") <= 1,
            "spread: {counts:?}"
        );

        // Two run already (their hosts claimed and started them), three are pending.
        let mut by_age = placed.clone();
        by_age.sort_by_key(|i| i.create_revision);
        for instance in by_age.iter().take(2) {
            let host = instance.value.host.as_ref().expect("placed").to_string();
            t.visor
                .claim_instance(instance.name(), &host)
                .await
                .expect("claim");
            t.visor
                .start_instance(instance.name(), &host, Some(8080))
                .await
                .expect("start");
        }
        t.visor
            .set_scale("web", "v1", "http", 2)
            .await
            .expect("scale 2");
        let stops = eventually(CONVERGE, "3 stop tickets", || async {
            let stops = tickets(&t, TicketOp::Stop).await;
            (stops.len() >= 3).then_some(stops)
        })
        .await;
        assert_eq!(stops.len(), 3, "exactly 3 stop tickets");
        // One transaction emits all three, so their order among themselves is
        // not observable here (the pure plan's order is tested in controllers/):
        // what is observable is which were chosen — the pending ones, not the running.
        let mut pending: Vec<String> = by_age.iter().skip(2).map(|i| i.name().to_owned()).collect();
        let mut stopped: Vec<String> = stops.iter().map(|s| s.value.instance.to_string()).collect();
        pending.sort();
        stopped.sort();
        assert_eq!(
            stopped, pending,
            "pending instances are stopped before running ones"
        );
        // Nothing more is emitted once converged.
        holds_for(Duration::from_secs(3), "no further tickets", || async {
            tickets(&t, TicketOp::Start).await.len() == 5
                && tickets(&t, TicketOp::Stop).await.len() == 3
        })
        .await;
        drop(hosts);
    })
    .await;
}

#[tokio::test]
async fn a_dead_hosts_instances_are_lost_and_replaced() {
    within(LIMIT, "loss or replacement never happens", async {
        let t = TestRegistry::start().await;
        let _controller = ControllerProcess::start(&t, "c1");
        let mut hosts = BTreeMap::new();
        for name in ["h1", "h2", "h3"] {
            hosts.insert(
                name,
                t.visor
                    .register_host(name, fixtures::host("10.0.0.1"), HOST_TTL)
                    .await
                    .expect("host"),
            );
        }
        fixtures::seed(&t, "web", "v1", "http").await;
        t.visor
            .set_scale("web", "v1", "http", 6)
            .await
            .expect("scale");
        eventually(CONVERGE, "6 active", || async {
            (active(&t).await.len() == 6).then_some(())
        })
        .await;

        // Revoke h2's lease as `etcdctl lease revoke` would.
        let h2 = hosts.remove("h2").expect("h2");
        t.raw().lease_revoke(h2.lease_id()).await.expect("revoke");
        let revoked_at = tokio::time::Instant::now();
        eventually(
            CONVERGE,
            "h2's instances lost and replaced on h1 and h3",
            || async {
                let all = controller::instances(&t).await;
                let lost_on_h2 = all
                    .iter()
                    .filter(|i| i.value.state == InstanceState::Lost)
                    .all(|i| i.value.host.as_ref().is_some_and(|h| h.as_str() == "h2"));
                let any_lost = all.iter().any(|i| i.value.state == InstanceState::Lost);
                let live = active(&t).await;
                let survivors = live
                    .iter()
                    .all(|i| i.value.host.as_ref().is_some_and(|h| h.as_str() != "h2"));
                (any_lost && lost_on_h2 && live.len() == 6 && survivors).then_some(())
            },
        )
        .await;
        eprintln!(
            "loss and replacement took {:?} after the revoke",
            revoked_at.elapsed()
        );
    })
    .await;
}

/// Claims and starts, as h's agent would, every pending instance placed on
/// `host`; returns their ids.
async fn run_pending_on(t: &TestRegistry, host: &str) -> Vec<String> {
    let mut started = Vec::new();
    for instance in controller::instances(t).await {
        let placed_here = instance
            .value
            .host
            .as_ref()
            .is_some_and(|h| h.as_str() == host);
        if placed_here && instance.value.state == InstanceState::Pending {
            t.visor
                .claim_instance(instance.name(), host)
                .await
                .expect("claim");
            t.visor
                .start_instance(instance.name(), host, Some(8080))
                .await
                .expect("start");
            started.push(instance.name().to_owned());
        }
    }
    started
}

#[tokio::test]
async fn a_draining_hosts_instances_are_replaced_elsewhere_before_they_stop() {
    within(LIMIT, "the drain never moves the instances", async {
        let t = TestRegistry::start().await;
        let _controller = ControllerProcess::start(&t, "c1");
        let mut h1 = t
            .visor
            .register_host("h1", fixtures::host("10.0.0.1"), HOST_TTL)
            .await
            .expect("h1");
        fixtures::seed(&t, "web", "v1", "http").await;
        t.visor
            .set_scale("web", "v1", "http", 2)
            .await
            .expect("scale");
        eventually(CONVERGE, "2 pending on h1", || async {
            (active(&t).await.len() == 2).then_some(())
        })
        .await;
        let old = run_pending_on(&t, "h1").await;
        assert_eq!(old.len(), 2);
        let _h2 = t
            .visor
            .register_host("h2", fixtures::host("10.0.0.2"), HOST_TTL)
            .await
            .expect("h2");

        h1.drain(&t.visor).await.expect("drain h1");
        eventually(CONVERGE, "two replacements pending on h2", || async {
            let on_h2 = per_host(&active(&t).await).get("h2").copied();
            (on_h2 == Some(2)).then_some(())
        })
        .await;
        holds_for(
            Duration::from_millis(500),
            "nothing on h1 stops before its replacements run",
            || async { tickets(&t, TicketOp::Stop).await.is_empty() },
        )
        .await;
        assert_eq!(per_host(&active(&t).await).get("h1"), Some(&2));

        // One replacement runs: one of h1's instances may go, not both.
        let pending_on_h2: Vec<_> = controller::instances(&t)
            .await
            .into_iter()
            .filter(|i| i.value.state == InstanceState::Pending)
            .collect();
        let first = &pending_on_h2[0];
        t.visor
            .claim_instance(first.name(), "h2")
            .await
            .expect("claim");
        t.visor
            .start_instance(first.name(), "h2", Some(8080))
            .await
            .expect("start");
        eventually(CONVERGE, "one stop ticket to h1", || async {
            let stops = tickets(&t, TicketOp::Stop).await;
            (stops.len() == 1).then_some(stops)
        })
        .await;
        holds_for(
            Duration::from_millis(500),
            "still one stop to h1",
            || async { tickets(&t, TicketOp::Stop).await.len() == 1 },
        )
        .await;

        run_pending_on(&t, "h2").await;
        let stops = eventually(CONVERGE, "both of h1's instances stopped", || async {
            let stops = tickets(&t, TicketOp::Stop).await;
            (stops.len() == 2).then_some(stops)
        })
        .await;
        for stop in &stops {
            assert!(stop.key.starts_with("/visor/tickets/h1/"), "{}", stop.key);
            assert!(old.contains(&stop.value.instance.to_string()));
        }
        assert!(
            controller::instances(&t)
                .await
                .iter()
                .filter(|i| !old.contains(&i.name().to_owned()))
                .all(|i| i.value.host.as_ref().is_some_and(|h| h.as_str() == "h2")),
            "nothing new is placed on the draining host"
        );
    })
    .await;
}

#[tokio::test]
async fn unplaceable_work_waits_until_a_host_can_take_it() {
    within(LIMIT, "placement never happens", async {
        let t = TestRegistry::start().await;
        let controller = ControllerProcess::start(&t, "c1");
        let mut other_stack = fixtures::host("10.0.0.1");
        other_stack.stacks = vec![fixtures::name("other")];
        let _wrong = t
            .visor
            .register_host("h1", other_stack, HOST_TTL)
            .await
            .expect("host");
        fixtures::seed(&t, "web", "v1", "http").await;
        t.visor
            .set_scale("web", "v1", "http", 3)
            .await
            .expect("scale");
        eventually(CONVERGE, "3 unplaceable instances counted", || async {
            (controller.metric("visor_unplaceable_instances", "app=\"web\"") == Some(3.0))
                .then_some(())
        })
        .await;
        assert!(
            tickets(&t, TicketOp::Start).await.is_empty(),
            "nothing is placed on a host without the stack"
        );
        assert_eq!(
            status(&t),
            serde_json::json!({
                "groups": [{"app": "web", "rev": "v1", "proc": "http", "desired": 3, "active": 0, "running": 0, "stopping": 0, "unplaceable": 3}],
                "hosts_alive": 1,
                "leader": "c1",
            }),
            "visor status shows the waiting work"
        );

        let _right = t
            .visor
            .register_host("h2", fixtures::host("10.0.0.2"), HOST_TTL)
            .await
            .expect("host");
        eventually(CONVERGE, "placed once a host offers the stack", || async {
            let placed = active(&t).await;
            (placed.len() == 3
                && placed
                    .iter()
                    .all(|i| i.value.host.as_ref().is_some_and(|h| h.as_str() == "h2")))
            .then_some(())
        })
        .await;
        assert_eq!(status(&t)["groups"][0]["active"], 3, "visor status shows them active");
        eventually(CONVERGE, "the unplaceable count drops to 0", || async {
            (controller.metric("visor_unplaceable_instances", "app=\"web\"") == Some(0.0))
                .then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn malformed_objects_are_skipped_and_metrics_pass_promtool() {
    within(LIMIT, "the loops stop or metrics never appear", async {
        let t = TestRegistry::start().await;
        let controller = ControllerProcess::start(&t, "c1");
        controller.wait_leading().await;
        let _host = t
            .visor
            .register_host("h1", fixtures::host("10.0.0.1"), HOST_TTL)
            .await
            .expect("host");
        fixtures::seed(&t, "web", "v1", "http").await;
        fixtures::etcdctl_put(&t, "/visor/scale/web/v1/broken", "{\"replicas\": -3}");
        fixtures::etcdctl_put(&t, "/visor/instances/garbage", "not json");
        t.visor
            .set_scale("web", "v1", "http", 2)
            .await
            .expect("scale");
        eventually(
            CONVERGE,
            "valid work proceeds past malformed objects",
            || async { (active(&t).await.len() == 2).then_some(()) },
        )
        .await;
        let malformed = controller
            .metric("visor_malformed_objects_total", "")
            .unwrap_or(0.0);
        assert!(
            malformed >= 2.0,
            "malformed objects are counted, got {malformed}"
        );
        for name in [
            "workqueue_adds_total",
            "controller_runtime_reconcile_total",
            "visor_tickets_emitted_total",
        ] {
            assert!(
                controller.metric(name, "").unwrap_or(0.0) > 0.0,
                "{name} moved"
            );
        }

        let (_, body) = controller.get("/metrics").expect("metrics");
        visor_testkit::promtool::check_metrics(&body);
    })
    .await;
}

#[tokio::test]
async fn terminal_instances_and_orphan_tickets_are_collected() {
    within(LIMIT, "collection never happens", async {
        let t = TestRegistry::start().await;
        let controller = ControllerProcess::start_with(&t, "c1", &["--retention", "1s"]);
        controller.wait_leading().await;
        let _host = t
            .visor
            .register_host("h1", fixtures::host("10.0.0.1"), HOST_TTL)
            .await
            .expect("host");
        let done = t
            .visor
            .create_instance(fixtures::instance(Some("h1")))
            .await
            .expect("instance");
        t.visor
            .claim_instance(done.name(), "h1")
            .await
            .expect("claim");
        t.visor
            .start_instance(done.name(), "h1", None)
            .await
            .expect("start");
        t.visor
            .exit_instance(done.name(), "h1", None)
            .await
            .expect("exit");
        let running = t
            .visor
            .create_instance(fixtures::instance(Some("h1")))
            .await
            .expect("instance");
        let orphan = t
            .visor
            .create_ticket("gone", fixtures::ticket(TicketOp::Start, running.name()))
            .await
            .expect("ticket to a host that does not exist");

        eventually(
            CONVERGE,
            "the exited instance is collected after its retention",
            || async { t.visor.instance(done.name()).await.is_err().then_some(()) },
        )
        .await;
        eventually(CONVERGE, "the ticket to a gone host is removed", || async {
            t.visor
                .ticket("gone", orphan.name())
                .await
                .is_err()
                .then_some(())
        })
        .await;
        assert!(
            t.visor.instance(running.name()).await.is_ok(),
            "a live instance is kept"
        );
        assert!(
            controller
                .metric("visor_instances_collected_total", "")
                .unwrap_or(0.0)
                >= 1.0
        );
    })
    .await;
}
