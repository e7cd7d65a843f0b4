//! A controller replica's life cycle against a real etcd: flags it cannot
//! honour are refused before anything runs; a replica whose every term
//! fails campaigns with backoff, not in a loop; a term that ends gives its
//! lease up before the next campaign; and a replica that cannot reach the
//! registry says so on `/metrics` and `/healthz` from the start.

use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;
use etcd_client::{EventType, GetOptions, WatchOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use visor::controller::{Controller, ControllerConfig, ELECTION_NAME};
use visor::registry::{LocalRegistry, LocalRegistryOptions};

use visor_testkit::controller::{self, ControllerProcess};
use visor_testkit::{TestRegistry, eventually, within};

const LIMIT: Duration = Duration::from_secs(60);
const ELECTION_PREFIX: &str = "/visor/leader/";

/// A loopback port where nothing listens (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Runs `visor args`, which must exit by itself: its exit code and stderr.
/// One that keeps running accepted its flags: it is stopped with SIGTERM
/// (so `visor up` stops its etcd too) and the test fails.
async fn exit_of(args: &[&str]) -> (Option<i32>, String) {
    let stderr = tempfile::NamedTempFile::new().expect("stderr file");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("visor"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.reopen().expect("reopen stderr file"))
        .spawn()
        .expect("spawn visor");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let text = std::fs::read_to_string(stderr.path()).expect("read stderr");
            return (status.code(), text);
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            panic!("visor {args:?} accepted its flags and kept running");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn flags_that_cannot_run_as_asked_exit_2_before_connecting() {
    within(LIMIT, "a refused flag never makes visor exit", async {
        // Nothing listens there: a replica that accepted its flags would retry forever.
        let endpoint = format!("http://127.0.0.1:{}", free_port());
        let table: &[(&[&str], &str)] = &[
            (&["--concurrency", "0"], "--concurrency"),
            (&["--lease-ttl", "0s"], "--lease-ttl"),
            (&["--lease-ttl", "1500ms"], "--lease-ttl"),
            (&["--renew-deadline", "0s"], "--renew-deadline"),
            (
                &["--lease-ttl", "2s", "--renew-deadline", "2s"],
                "--renew-deadline",
            ),
        ];
        for (flags, named) in table {
            let mut args = vec!["--endpoints", endpoint.as_str(), "controller"];
            args.extend_from_slice(flags);
            args.extend_from_slice(&["--admin-addr", "127.0.0.1:0"]);
            let (code, stderr) = exit_of(&args).await;
            assert_eq!(code, Some(2), "controller {flags:?}: usage error: {stderr}");
            let first = stderr.lines().next().unwrap_or_default();
            assert!(
                first.starts_with("error: ") && first.contains(named),
                "controller {flags:?}: one line naming {named}: {stderr}"
            );
        }

        // `visor up` takes the same flags, and refuses them before writing its data dir.
        let data = tempfile::tempdir().expect("temp dir");
        let data_dir = data.path().join("registry");
        let port = free_port().to_string();
        for (flags, named) in table {
            let mut args = vec![
                "up",
                "--data-dir",
                data_dir.to_str().expect("utf-8 path"),
                "--port",
                port.as_str(),
                "--admin-addr",
                "127.0.0.1:0",
            ];
            args.extend_from_slice(flags);
            let (code, stderr) = exit_of(&args).await;
            assert_eq!(code, Some(2), "up {flags:?}: usage error: {stderr}");
            assert!(
                stderr.contains(named),
                "up {flags:?}: names {named}: {stderr}"
            );
            assert!(!data_dir.exists(), "up {flags:?} wrote its data dir");
        }
    })
    .await;
}

/// The controller's flags, parsed as `visor controller` parses them.
#[derive(Debug, Parser)]
struct Flags {
    #[command(flatten)]
    config: ControllerConfig,
}

#[tokio::test]
async fn a_replica_whose_every_term_fails_campaigns_with_backoff() {
    within(LIMIT, "the replica never campaigns or never stops", async {
        let t = TestRegistry::start().await;
        let prometheus = prometheus::Registry::new();
        // A fault that fails every term as it starts, after its caches synced:
        // the scale work queue cannot register its metrics.
        let taken = prometheus::IntGauge::with_opts(
            prometheus::Opts::new("workqueue_depth", "taken").const_label("name", "scale"),
        )
        .expect("gauge");
        prometheus.register(Box::new(taken)).expect("register");
        let flags = Flags::try_parse_from([
            "controller",
            "--identity",
            "c1",
            "--lease-ttl",
            "2s",
            "--renew-deadline",
            "1500ms",
        ])
        .expect("flags");
        let controller = Controller::new(flags.config, &prometheus).expect("controller");

        // Every campaign puts a new candidate key under the election prefix.
        let from = t
            .raw()
            .get(ELECTION_PREFIX, None)
            .await
            .expect("revision")
            .header()
            .expect("header")
            .revision()
            + 1;
        let mut stream = t
            .raw()
            .watch(
                ELECTION_PREFIX,
                Some(WatchOptions::new().with_prefix().with_start_revision(from)),
            )
            .await
            .expect("watch the election prefix");

        let (ready, _) = watch::channel(false);
        let shutdown = CancellationToken::new();
        let replica =
            tokio::spawn(controller.run(t.connect_again().await, ready, shutdown.clone()));

        // Without backoff a failing term is followed by the next campaign at
        // once, dozens of times a second; with it (200ms doubling, jitter),
        // at most five campaigns start within five seconds.
        let window = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(window);
        let mut campaigns = 0;
        loop {
            tokio::select! {
                message = stream.message() => {
                    let response = message.expect("watch").expect("watch open");
                    campaigns += response
                        .events()
                        .iter()
                        .filter(|event| event.event_type() == EventType::Put)
                        .filter(|event| event.kv().is_some_and(|kv| kv.version() == 1))
                        .count();
                }
                () = &mut window => break,
            }
        }
        eprintln!("campaigns in 5s: {campaigns}");
        assert!(
            campaigns >= 2,
            "the failed term was followed by another campaign ({campaigns})"
        );
        assert!(
            campaigns <= 6,
            "{campaigns} campaigns in 5s: a failing term is retried without backoff"
        );

        shutdown.cancel();
        within(
            Duration::from_secs(10),
            "the replica stops on shutdown",
            replica,
        )
        .await
        .expect("join")
        .expect("clean stop");
        let left = t
            .raw()
            .get(ELECTION_PREFIX, Some(GetOptions::new().with_prefix()))
            .await
            .expect("list candidates");
        assert!(left.kvs().is_empty(), "no candidate key left behind");
    })
    .await;
}

/// The candidate keys under the election prefix: (identity, lease) in line order.
async fn candidates(t: &TestRegistry) -> Vec<(String, i64)> {
    let options = GetOptions::new().with_prefix().with_sort(
        etcd_client::SortTarget::Create,
        etcd_client::SortOrder::Ascend,
    );
    let response = t
        .raw()
        .get(ELECTION_PREFIX, Some(options))
        .await
        .expect("list candidates");
    response
        .kvs()
        .iter()
        .map(|kv| (String::from_utf8_lossy(kv.value()).into_owned(), kv.lease()))
        .collect()
}

#[tokio::test]
async fn a_lost_term_revokes_its_lease_before_campaigning_again() {
    within(LIMIT, "the deposed leader never campaigns again", async {
        let t = TestRegistry::start().await;
        // A lease far longer than the test: only a revoke makes it go away.
        let lease = ["--lease-ttl", "60s", "--renew-deadline", "40s"];
        let endpoint = t.server.endpoint();
        let _first = ControllerProcess::spawn(&endpoint, "c1", &lease, &[]);
        eventually(Duration::from_secs(20), "c1 leads", || async {
            (candidates(&t).await.first().map(|(who, _)| who.as_str()) == Some("c1")).then_some(())
        })
        .await;
        let second = ControllerProcess::spawn(&endpoint, "c2", &lease, &[]);
        eventually(Duration::from_secs(20), "c2 waits in line", || async {
            (candidates(&t).await.len() == 2).then_some(())
        })
        .await;
        let (_, old_lease) = candidates(&t).await[0].clone();

        // Depose c1 from outside: its term ends because leadership was lost.
        let deleted = t
            .raw()
            .delete(format!("{ELECTION_PREFIX}{old_lease:x}"), None)
            .await
            .expect("delete the leader key");
        assert_eq!(
            deleted.deleted(),
            1,
            "the leader key is named after its lease"
        );

        // c1 campaigns again with a new lease; by then the old one must be gone.
        eventually(Duration::from_secs(20), "c1 campaigns again", || async {
            candidates(&t)
                .await
                .iter()
                .any(|(who, lease)| who == "c1" && *lease != old_lease)
                .then_some(())
        })
        .await;
        let leases = t.raw().leases().await.expect("list leases");
        assert!(
            leases.leases().iter().all(|lease| lease.id() != old_lease),
            "the deposed leader left its lease {old_lease:x} to expire"
        );
        eventually(Duration::from_secs(20), "c2 leads", || async {
            (second.metric("leader_election_master_status", ELECTION_NAME) == Some(1.0))
                .then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_registry_is_reported_from_the_start() {
    within(LIMIT, "the standing is never reported", async {
        let port = free_port();
        let controller = ControllerProcess::spawn(
            &format!("http://127.0.0.1:{port}"),
            "c1",
            controller::SHORT_LEASE,
            &[],
        );
        let status = |reachable: f64, leading: f64| {
            let controller = &controller;
            move || async move {
                let leader = controller.metric("leader_election_master_status", ELECTION_NAME);
                let registry = controller.metric("visor_registry_reachable", "");
                (leader == Some(leading) && registry == Some(reachable)).then_some(())
            }
        };
        eventually(
            Duration::from_secs(20),
            "/metrics says: not leading, registry unreachable",
            status(0.0, 0.0),
        )
        .await;
        let (head, body) = controller.get("/healthz").expect("/healthz answers");
        assert!(head.contains("200"), "alive while etcd is away: {head}");
        assert_eq!(body, "ok\nregistry: unreachable\nleader: no\n");
        let (head, _) = controller.get("/readyz").expect("/readyz answers");
        assert!(head.contains("503"), "not ready: {head}");

        // The registry appears where the replica looks: it connects and leads.
        let _etcd = LocalRegistry::start_with(LocalRegistryOptions {
            client_port: Some(port),
            ..LocalRegistryOptions::default()
        })
        .await
        .expect("start etcd");
        eventually(
            Duration::from_secs(30),
            "/metrics says: leading, registry reachable",
            status(1.0, 1.0),
        )
        .await;
        let (_, body) = controller.get("/healthz").expect("/healthz answers");
        assert_eq!(body, "ok\nregistry: reachable\nleader: yes\n");
    })
    .await;
}
