//! Acceptance tests of down notifications, against a real etcd and the real
//! `visor controller`: a child process's endpoint is visible within one
//! lease period, its SIGKILL is exactly one `service-down` within TTL + 1 s
//! and its clean stop none; and a leader SIGKILLed in the middle of a burst
//! of 50 endpoint deaths leaves exactly 50 notifications, numbered 1..=50,
//! one per endpoint.
//!
//! The child is `examples/register_endpoint.rs`, which a plain `cargo test`
//! builds next to the test binaries (`cargo test --test controller` alone
//! does not: build it first with `cargo build --example register_endpoint`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::future::{join_all, try_join_all};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use tokio::time::Instant;
use visor::discovery::{self, RegisterRequest, Registration};
use visor::model::{Notification, NotificationKind};

use visor_testkit::controller::ControllerProcess;
use visor_testkit::examples::example;
use visor_testkit::{TestRegistry, eventually, fixtures, within};

const LIMIT: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(20);
/// The endpoints' lease TTL.
const TTL: Duration = Duration::from_secs(2);
const SERVICE: &str = "db";

/// A `register_endpoint` child process, SIGKILLed on drop.
struct Endpoint {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    /// The uuid it printed.
    id: String,
}

impl Endpoint {
    /// Spawns the example and waits for its `registered <uuid>` line.
    async fn spawn(t: &TestRegistry, hostname: &str) -> Self {
        let mut child = tokio::process::Command::new(example("register_endpoint"))
            .args(["--endpoints", &t.server.endpoint()])
            .args(["--service", SERVICE, "--hostname", hostname])
            .args(["--port", "pg=5432"])
            .args(["--ttl", &TTL.as_secs().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn register_endpoint");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stdout = BufReader::new(stdout).lines();
        let line = stdout.next_line().await.expect("read stdout");
        let id = line
            .as_deref()
            .and_then(|line| line.strip_prefix("registered "))
            .unwrap_or_else(|| panic!("expected `registered <uuid>`, got {line:?}"))
            .to_owned();
        Self { child, stdout, id }
    }

    fn pid(&self) -> String {
        self.child.id().expect("still running").to_string()
    }
}

/// The `service-down` notifications posted so far, in sequence order.
async fn downs(t: &TestRegistry) -> Vec<Notification> {
    t.visor
        .notifications(0)
        .await
        .expect("notifications")
        .items
        .into_iter()
        .map(|n| n.value)
        .filter(|n| n.kind == NotificationKind::ServiceDown)
        .collect()
}

/// The endpoint ids the controller tracks for [`SERVICE`].
async fn tracked(t: &TestRegistry) -> BTreeSet<String> {
    fixtures::raw_keys(t, &format!("/visor/tracked/{SERVICE}/"))
        .await
        .into_iter()
        .filter_map(|key| Some(key.rsplit('/').next()?.to_owned()))
        .collect()
}

fn services_reconciles(controller: &ControllerProcess) -> f64 {
    controller
        .metric(
            "controller_runtime_reconcile_total",
            r#"controller="services""#,
        )
        .unwrap_or(0.0)
}

/// Waits until `controller` has finished two more services reconciles, so
/// that at least one started after the caller's observation: whatever that
/// reconcile was going to post is posted. A poll, not a sleep: resyncs (2 s)
/// bound it.
async fn quiet(controller: &ControllerProcess) {
    let start = services_reconciles(controller);
    eventually(
        CONVERGE,
        "the leader runs two more services reconciles",
        || async { (services_reconciles(controller) >= start + 2.0).then_some(()) },
    )
    .await;
}

/// Kills `registrations` at once, as crashes would but without waiting for
/// the TTL: dropping a handle stops its renewal and re-registration (no
/// tombstone), and revoking its lease then deletes the key.
async fn die(t: &TestRegistry, registrations: Vec<Registration>) {
    let leases: Vec<i64> = registrations
        .iter()
        .map(|r| r.lease_id().expect("registered"))
        .collect();
    drop(registrations);
    join_all(leases.into_iter().map(|lease| {
        let mut raw = t.raw();
        async move { raw.lease_revoke(lease).await.expect("revoke") }
    }))
    .await;
}

fn leads(controller: &ControllerProcess) -> bool {
    controller.metric("leader_election_master_status", "visor-controller") == Some(1.0)
}

#[tokio::test]
async fn a_sigkilled_child_is_one_down_notification_and_a_clean_stop_none() {
    within(LIMIT, "the services loop never settles", async {
        let t = TestRegistry::start().await;
        let controller = ControllerProcess::start(&t, "c1");
        controller.wait_leading().await;

        let spawned = Instant::now();
        let mut first = within(
            TTL,
            "the endpoint is not visible within one lease period",
            async {
                let first = Endpoint::spawn(&t, "db-1.example").await;
                let service = discovery::get(&t.visor, SERVICE).await.expect("get db");
                assert!(
                    service.all().iter().any(|e| e.key.ends_with(&first.id)),
                    "a registered endpoint is visible to clients"
                );
                first
            },
        )
        .await;
        eprintln!("visible after {:?} (TTL {TTL:?})", spawned.elapsed());
        eventually(CONVERGE, "the endpoint is tracked", || async {
            tracked(&t).await.contains(&first.id).then_some(())
        })
        .await;

        let killed = Instant::now();
        first.child.kill().await.expect("SIGKILL");
        let posted = within(
            TTL + Duration::from_secs(1),
            "no service-down within TTL + 1 s of the SIGKILL",
            eventually(CONVERGE, "a service-down", || async {
                let downs = downs(&t).await;
                (!downs.is_empty()).then_some(downs)
            }),
        )
        .await;
        eprintln!("service-down after {:?} (TTL {TTL:?})", killed.elapsed());
        assert_eq!(posted.len(), 1, "one death, one notification: {posted:?}");
        assert_eq!(posted[0].endpoint.as_deref(), Some(first.id.as_str()));
        assert_eq!(posted[0].hostname.as_deref(), Some("db-1.example"));
        assert_eq!(posted[0].seq, 1);
        eventually(CONVERGE, "the death is settled", || async {
            (!tracked(&t).await.contains(&first.id)).then_some(())
        })
        .await;
        quiet(&controller).await;
        assert_eq!(
            downs(&t).await,
            posted,
            "still exactly one after the dust settles"
        );

        let mut second = Endpoint::spawn(&t, "db-2.example").await;
        eventually(CONVERGE, "the second endpoint is tracked", || async {
            tracked(&t).await.contains(&second.id).then_some(())
        })
        .await;
        let sent = Command::new("kill")
            .args(["-TERM", &second.pid()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -TERM");
        let status = within(
            CONVERGE,
            "the child does not exit on SIGTERM",
            second.child.wait(),
        )
        .await
        .expect("wait");
        assert!(status.success(), "clean exit on SIGTERM: {status}");
        let line = second.stdout.next_line().await.expect("read stdout");
        assert_eq!(line.as_deref(), Some("stopped"));
        eventually(CONVERGE, "the clean stop is forgotten", || async {
            (!tracked(&t).await.contains(&second.id)).then_some(())
        })
        .await;
        quiet(&controller).await;
        assert_eq!(downs(&t).await, posted, "a clean stop posts nothing");
        assert_eq!(t.visor.last_notification().await.expect("sequence"), 1);
    })
    .await;
}

#[tokio::test]
async fn leader_sigkill_during_50_deaths_posts_each_exactly_once_in_order() {
    within(
        LIMIT,
        "failover or the services loop never settles",
        async {
            let t = TestRegistry::start().await;
            let mut controllers = [
                ControllerProcess::start(&t, "c1"),
                ControllerProcess::start(&t, "c2"),
            ];
            let leader = eventually(CONVERGE, "exactly one leader", || async {
                match (leads(&controllers[0]), leads(&controllers[1])) {
                    (true, false) => Some(0),
                    (false, true) => Some(1),
                    _ => None,
                }
            })
            .await;
            let standby = 1 - leader;
            controllers[standby].wait_ready_standby().await;

            let registrations = try_join_all((0..50).map(|i| {
                let request = RegisterRequest {
                    hostname: format!("db-{i}.example"),
                    ports: BTreeMap::from([("pg".to_owned(), "5432".to_owned())]),
                    ttl: TTL,
                    ..RegisterRequest::default()
                };
                discovery::register(&t.visor, SERVICE, request)
            }))
            .await
            .expect("register 50 endpoints");
            let ids: BTreeSet<String> = registrations.iter().map(|r| r.id().to_owned()).collect();
            eventually(CONVERGE, "all 50 endpoints are tracked", || async {
                (tracked(&t).await == ids).then_some(())
            })
            .await;

            let mut first_half = registrations;
            let second_half = first_half.split_off(25);
            die(&t, first_half).await;
            // Killed once it has begun reporting the first half: what it
            // posted must not be posted again, and what it had not (the
            // second half dies leaderless) must not be lost.
            eventually(CONVERGE, "the leader starts posting", || async {
                (!downs(&t).await.is_empty()).then_some(())
            })
            .await;
            controllers[leader].kill();
            let killed = Instant::now();
            let posted_before = downs(&t).await.len();
            die(&t, second_half).await;

            controllers[standby].wait_leading().await;
            eprintln!(
                "takeover after SIGKILL: {:?} (lease TTL 2 s); {posted_before} posted before it",
                killed.elapsed()
            );
            let posted = eventually(CONVERGE, "50 service-down notifications", || async {
                let downs = downs(&t).await;
                (downs.len() >= 50).then_some(downs)
            })
            .await;
            eprintln!("50 posted {:?} after the SIGKILL", killed.elapsed());
            quiet(&controllers[standby]).await;
            let all = t.visor.notifications(0).await.expect("notifications").items;
            assert_eq!(all.len(), 50, "only the 50 deaths are reported: {all:?}");
            assert_eq!(downs(&t).await, posted, "nothing posted once settled");

            let seqs: Vec<u64> = posted.iter().map(|n| n.seq).collect();
            assert_eq!(
                seqs,
                (1..=50).collect::<Vec<u64>>(),
                "numbered without gaps"
            );
            assert!(
                posted
                    .windows(2)
                    .all(|w| w[0].detected_at <= w[1].detected_at),
                "numbered in the order detected"
            );
            let reported: Vec<&str> = posted
                .iter()
                .filter_map(|n| n.endpoint.as_deref())
                .collect();
            let distinct: BTreeSet<String> = reported.iter().map(|id| (*id).to_owned()).collect();
            assert_eq!(reported.len(), 50, "every notification names its endpoint");
            assert_eq!(distinct, ids, "one notification per endpoint, none twice");
            assert_eq!(t.visor.last_notification().await.expect("sequence"), 50);
            assert!(tracked(&t).await.is_empty(), "every death settled");

            let by_new_leader = controllers[standby]
                .metric("visor_notifications_total", r#"kind="service-down""#)
                .unwrap_or(0.0);
            eprintln!("the new leader posted {by_new_leader} of 50");
            // At least the 25 deaths after the SIGKILL; at most what was not
            // posted when the old leader was dead.
            let unposted = 50 - posted_before as u32;
            assert!(
                (25.0..=f64::from(unposted)).contains(&by_new_leader),
                "the new leader posted {by_new_leader}, not within 25..={unposted}"
            );
        },
    )
    .await;
}
