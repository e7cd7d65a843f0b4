//! Down-service notifications at scale: N endpoints of one service die at
//! once, side by side with raw etcd against one real etcd in the same run.
//!
//! `cargo bench --bench services` starts a fresh etcd ([`LocalRegistry`]) and the
//! real `visor controller` binary (`--lease-ttl 10s --renew-deadline 6s`) as
//! a child; N is `VISOR_BENCH_ENDPOINTS` (default 1000). Then:
//!
//! 1. **Raw etcd**: under `/bench` (a root as long as `/visor`), N endpoint
//!    keys of service `db`, each bound to a lease of its own, and N tracked
//!    records, with uuid v7 ids and JSON values of the same size as Visor's.
//!    The N leases are revoked, [`REVOKES_IN_FLIGHT`] at a time, while a
//!    "controller" watching the endpoints prefix turns the deletions it has
//!    seen into notifications as `post_notifications` writes them: in
//!    transactions of up to [`POSTINGS_PER_TXN`] postings, each comparing
//!    every notification key absent, the sequence key's mod revision, every
//!    tracked record's mod revision and a fence stand-in, then putting the
//!    notifications and the sequence, reading the sequence back and deleting
//!    the tracked records; whatever deletions arrived while it wrote go into
//!    its next transactions, as a reconcile posts whatever its caches hold.
//!    The copy is then deleted, compacted and defragmented away, so the Visor
//!    phase meets the etcd the raw phase met.
//! 2. **Visor**: N endpoints of the non-critical service `db` registered with
//!    [`discovery::register`] (a lease and a keep-alive each) until the
//!    controller tracks them all and is quiet; then every handle is dropped,
//!    so nothing re-registers, and the N leases are revoked the same way, as
//!    `tests/controller/services_acceptance.rs` produces deaths.
//!
//! Both are timed from the first revoke until the N-th notification key is
//! created, seen on a raw watch of the notifications prefix (key creations,
//! as `benches/controller.rs` counts tickets): the same observer for both.
//!
//! The Visor run is checked, and fails loudly if it is wrong: exactly N
//! `service-down` notifications numbered 1..=N, one per registered endpoint
//! with its hostname, the sequence at N, nothing tracked or registered left,
//! and `visor_notifications_total` grown by N. The services loop's reconcile
//! count and mean time are reported, with the CPU time other processes took
//! meanwhile (non-zero: the figures were disturbed).
//!
//! Every wait is bounded (`VISOR_BENCH_TIMEOUT` seconds, default 600) and
//! fails with a message naming what did not happen and where the controller's
//! log is. The controller child is killed on drop.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use etcd_client::{Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchStream};
use futures::StreamExt;
use visor::Visor;
use visor::discovery::{self, RegisterRequest, Registration, ServiceEndpoint};
use visor::model::{DownReason, Notification, NotificationKind, Sequence, TrackedEndpoint};
use visor::registry::{Keys, Kind, LocalRegistry, RegistryConfig};

use visor_testkit::controller::LoggedController;
use visor_testkit::fixtures::name;
use visor_testkit::procfs::{
    cpu_seconds, machine_busy_seconds, memory_kib, registry_pid, wait_quiet,
};
use visor_testkit::raw::{
    FenceStandIn, bounded, count_keys, delete_prefix, is_creation, next_response,
    wait_leader_renewed, watch_prefix,
};

/// The service whose endpoints die.
const SERVICE: &str = "db";
/// Root of the raw keys: as long as `/visor`, so raw keys are as long as Visor's.
const RAW_ROOT: &str = "/bench";
/// Postings per notification transaction: `POSTINGS_PER_TXN` in
/// `src/registry/api/notifications.rs` (30 fit etcd's 128 operations).
const POSTINGS_PER_TXN: usize = 30;
/// Tracked records per transaction, as `track_endpoints` writes them.
const TRACKED_PER_TXN: usize = 126;
/// Lease revocations in flight during a mass death.
const REVOKES_IN_FLIGHT: usize = 32;
/// Registrations (and raw endpoint creations) in flight while setting up.
const REGISTERS_IN_FLIGHT: usize = 32;
/// The endpoints' lease TTL. Deaths are revocations, so it only sets the
/// keep-alive traffic before them: one renewal per endpoint every TTL / 3.
const ENDPOINT_TTL: Duration = Duration::from_secs(30);
/// The raw leases are not renewed: long enough to outlive set-up and revokes.
const RAW_LEASE_TTL: Duration = Duration::from_secs(3600);
/// The controller keeps its newest 10,000 notifications (`--notifications-kept`):
/// more endpoints would have some trimmed before they are counted.
const MAX_ENDPOINTS: usize = 10_000;
/// How often a long wait reports how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// The controller's `--lease-ttl` and `--renew-deadline`.
const LEASE: (&str, &str) = ("10s", "6s");

struct Settings {
    endpoints: usize,
    timeout: Duration,
}

impl Settings {
    fn from_env() -> Self {
        let number = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map_or(default, |v| {
                    v.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
                })
        };
        let endpoints = number("VISOR_BENCH_ENDPOINTS", 1000);
        assert!(
            (1..=MAX_ENDPOINTS).contains(&endpoints),
            "VISOR_BENCH_ENDPOINTS={endpoints} must be within 1..={MAX_ENDPOINTS}: the \
             controller keeps only its newest {MAX_ENDPOINTS} notifications"
        );
        Self {
            endpoints,
            timeout: Duration::from_secs(number("VISOR_BENCH_TIMEOUT", 600) as u64),
        }
    }
}

fn hostname(i: usize) -> String {
    format!("db-{i:05}.example")
}

fn ports() -> BTreeMap<String, String> {
    BTreeMap::from([("pg".to_owned(), "5432".to_owned())])
}

/// CPU seconds so far of etcd, the controller, this benchmark, and the whole machine.
#[derive(Clone, Copy)]
struct CpuSample {
    etcd: f64,
    controller: f64,
    bench: f64,
    machine: f64,
}

impl CpuSample {
    fn take(etcd_pid: u32, controller: &LoggedController) -> Self {
        Self {
            etcd: cpu_seconds(etcd_pid),
            controller: cpu_seconds(controller.pid()),
            bench: cpu_seconds(std::process::id()),
            machine: machine_busy_seconds(),
        }
    }

    /// What was used since `before`; `machine` becomes everyone else's share.
    fn since(self, before: Self) -> Self {
        let etcd = self.etcd - before.etcd;
        let controller = self.controller - before.controller;
        let bench = self.bench - before.bench;
        Self {
            etcd,
            controller,
            bench,
            machine: (self.machine - before.machine) - etcd - controller - bench,
        }
    }
}

/// One mass death, timed from the first revoke.
struct Death {
    /// When every revoke had been answered.
    revoked: Duration,
    /// When the first and the N-th notification key were seen created.
    first: Duration,
    last: Duration,
    /// CPU used from the first revoke to the N-th notification.
    cpu: CpuSample,
}

/// Revokes `leases`, [`REVOKES_IN_FLIGHT`] at a time; returns when all are done.
async fn revoke_all(raw: &Client, leases: &[i64]) -> Instant {
    futures::stream::iter(leases)
        .map(|&lease| {
            let mut client = raw.lease_client();
            async move {
                let what = format!("revoke lease {lease:x}");
                bounded(&what, client.revoke(lease))
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        })
        .buffer_unordered(REVOKES_IN_FLIGHT)
        .collect::<()>()
        .await;
    Instant::now()
}

/// Counts notification keys created on `stream` until `count`; returns when
/// the first and the last were seen, from `started`. Progress is printed
/// every [`PROGRESS_EVERY`].
async fn notifications_created(
    stream: &mut WatchStream,
    count: usize,
    started: Instant,
    settings: &Settings,
    controller: &LoggedController,
    phase: &str,
) -> (Duration, Duration) {
    let deadline = started + settings.timeout;
    let what = format!("{count} {phase} notifications are created");
    let (mut seen, mut first) = (0, None);
    let mut report = started + PROGRESS_EVERY;
    while seen < count {
        let now = Instant::now();
        if now >= report {
            println!(
                "    {:>5.0} s: {seen} of {count} {phase} notifications created",
                started.elapsed().as_secs_f64()
            );
            report += PROGRESS_EVERY;
        }
        assert!(
            now < deadline,
            "{phase}: only {seen} of {count} notifications were created within {:?} of the \
             first revoke; see {}",
            settings.timeout,
            controller.log().display()
        );
        let wait = deadline.min(report).saturating_duration_since(now);
        for event in next_response(stream, wait, &what).await.unwrap_or_default() {
            if is_creation(&event) {
                seen += 1;
                first.get_or_insert_with(|| started.elapsed());
            }
        }
    }
    (first.unwrap_or_default(), started.elapsed())
}

// ---------------------------------------------------------------------------
// The raw etcd baseline.

/// One raw endpoint, as the raw "controller" tracks it.
struct RawEndpoint {
    id: String,
    hostname: String,
    lease: i64,
    tracked_key: String,
    /// The tracked record's mod revision.
    tracked_revision: i64,
}

/// The endpoint document Visor writes for endpoint `i` (validated defaults applied).
fn endpoint_document(i: usize) -> ServiceEndpoint {
    ServiceEndpoint {
        hostname: hostname(i),
        ports: ports(),
        private_hostname: hostname(i),
        private_ports: ports(),
        user: String::new(),
        password: String::new(),
        critical: false,
        host: None,
        instance: None,
        departed: false,
        departed_at: None,
        registered_at: Utc::now(),
    }
}

/// Writes the fence stand-in, N lease-bound endpoint keys and their tracked
/// records; returns the endpoints by endpoint key.
async fn raw_setup(raw: &Client, count: usize) -> (BTreeMap<String, RawEndpoint>, FenceStandIn) {
    let keys = Keys::new(RAW_ROOT).expect("a valid root");
    let service = name(SERVICE);
    let mut kv = raw.kv_client();
    // As long as the election key `<root>/leader/<lease id in hex>`.
    let fence_key = format!("{}/694d9a1c2b3e4f50", keys.leader());
    let fence = FenceStandIn::written(raw, fence_key).await;
    let (keys, service) = (&keys, &service);
    let created: Vec<(String, RawEndpoint, i64)> = futures::stream::iter(0..count)
        .map(|i| {
            let (mut leases, mut kv) = (raw.lease_client(), raw.kv_client());
            async move {
                let ttl = RAW_LEASE_TTL.as_secs() as i64;
                let lease = bounded("grant a raw lease", leases.grant(ttl, None))
                    .await
                    .expect("grant a raw lease")
                    .id();
                let id = uuid::Uuid::now_v7().to_string();
                let endpoint_id = name(&id);
                let key = keys.endpoint(service, &endpoint_id);
                let value = serde_json::to_vec(&endpoint_document(i)).expect("serializes");
                let put = PutOptions::new().with_lease(lease);
                let written = bounded(
                    "write a raw endpoint",
                    kv.put(key.as_str(), value, Some(put)),
                )
                .await
                .expect("write a raw endpoint");
                let incarnation = written.header().map_or(0, |h| h.revision());
                let endpoint = RawEndpoint {
                    tracked_key: keys.tracked(service, &endpoint_id),
                    id,
                    hostname: hostname(i),
                    lease,
                    tracked_revision: 0,
                };
                (key, endpoint, incarnation)
            }
        })
        .buffer_unordered(REGISTERS_IN_FLIGHT)
        .collect()
        .await;
    let mut endpoints = BTreeMap::new();
    for batch in created.chunks(TRACKED_PER_TXN) {
        let now = Utc::now();
        let puts: Vec<TxnOp> = batch
            .iter()
            .map(|(_, endpoint, incarnation)| {
                let tracked = TrackedEndpoint {
                    hostname: endpoint.hostname.clone(),
                    incarnation: *incarnation,
                    since: now,
                };
                let value = serde_json::to_vec(&tracked).expect("serializes");
                TxnOp::put(endpoint.tracked_key.as_str(), value, None)
            })
            .collect();
        let written = bounded(
            "write raw tracked records",
            kv.txn(Txn::new().and_then(puts)),
        )
        .await
        .expect("write raw tracked records");
        let revision = written.header().map_or(0, |h| h.revision());
        for (key, endpoint, _) in batch {
            let endpoint = RawEndpoint {
                id: endpoint.id.clone(),
                hostname: endpoint.hostname.clone(),
                lease: endpoint.lease,
                tracked_key: endpoint.tracked_key.clone(),
                tracked_revision: revision,
            };
            endpoints.insert(key.clone(), endpoint);
        }
    }
    (endpoints, fence)
}

/// The raw "controller": posts a notification for each endpoint deletion
/// seen on `deaths`, in transactions of up to [`POSTINGS_PER_TXN`] built as
/// `post_notifications` builds them, until every endpoint is posted.
/// Returns how many transactions it took.
async fn raw_post(
    raw: &Client,
    deaths: &mut WatchStream,
    endpoints: &BTreeMap<String, RawEndpoint>,
    fence: &FenceStandIn,
    deadline: Instant,
) -> usize {
    let keys = Keys::new(RAW_ROOT).expect("a valid root");
    let service = name(SERVICE);
    let sequence_key = keys.notification_sequence();
    let reason = DownReason::Vanished.to_string();
    let what = "the raw controller sees every endpoint deleted";
    let mut kv = raw.kv_client();
    let (mut last, mut sequence_revision, mut txns) = (0_u64, None, 0);
    while (last as usize) < endpoints.len() {
        let wait = deadline.saturating_duration_since(Instant::now());
        let mut events = next_response(deaths, wait, what)
            .await
            .unwrap_or_else(|| panic!("timed out waiting until {what}"));
        // Whatever else has arrived is posted now too, as a reconcile posts
        // whatever its caches hold (a zero timeout still polls once).
        while let Some(more) = next_response(deaths, Duration::ZERO, what).await {
            events.extend(more);
        }
        let dead: Vec<&RawEndpoint> = events
            .iter()
            .filter(|e| e.event_type() == EventType::Delete)
            .filter_map(|e| endpoints.get(e.kv()?.key_str().ok()?))
            .collect();
        for chunk in dead.chunks(POSTINGS_PER_TXN) {
            let now = Utc::now();
            let (mut compares, mut puts, mut diagnose) = (Vec::new(), Vec::new(), Vec::new());
            for endpoint in chunk {
                last += 1;
                let notification = Notification {
                    seq: last,
                    kind: NotificationKind::ServiceDown,
                    service: Some(service.clone()),
                    endpoint: Some(endpoint.id.clone()),
                    hostname: Some(endpoint.hostname.clone()),
                    app: None,
                    revision: None,
                    reason: reason.clone(),
                    detected_at: now,
                };
                let key = keys.notification(last);
                let value = serde_json::to_vec(&notification).expect("serializes");
                compares.push(Compare::create_revision(key.as_str(), CompareOp::Equal, 0));
                puts.push(TxnOp::put(key.as_str(), value, None));
                diagnose.push(TxnOp::get(key, None));
            }
            let sequence = serde_json::to_vec(&Sequence { last }).expect("serializes");
            let mut success = puts;
            match sequence_revision {
                None => {
                    let key = sequence_key.as_str();
                    compares.push(Compare::create_revision(key, CompareOp::Equal, 0));
                    success.push(TxnOp::put(key, sequence, None));
                }
                Some(revision) => {
                    let key = sequence_key.as_str();
                    compares.push(Compare::mod_revision(key, CompareOp::Equal, revision));
                    let options = PutOptions::new().with_ignore_lease();
                    success.push(TxnOp::put(key, sequence, Some(options)));
                    success.push(TxnOp::get(key, None));
                }
            }
            diagnose.push(TxnOp::get(sequence_key.as_str(), None));
            for endpoint in chunk {
                let key = endpoint.tracked_key.as_str();
                success.push(TxnOp::delete(key, None));
                compares.push(Compare::mod_revision(
                    key,
                    CompareOp::Equal,
                    endpoint.tracked_revision,
                ));
                diagnose.push(TxnOp::get(key, None));
            }
            let (guard, read) = fence.guard();
            compares.push(guard);
            diagnose.push(read);
            let txn = Txn::new()
                .when(compares)
                .and_then(success)
                .or_else(diagnose);
            let response = bounded("a raw posting transaction", kv.txn(txn))
                .await
                .expect("raw posting transaction");
            assert!(response.succeeded(), "a raw posting's compares failed");
            sequence_revision = response.header().map(|h| h.revision());
            txns += 1;
        }
    }
    txns
}

/// What the raw phase measured.
struct RawRun {
    death: Death,
    txns: usize,
}

/// The raw mass death, checked: N notifications written, no tracked record left.
async fn raw_phase(
    raw: &Client,
    endpoint: &str,
    settings: &Settings,
    controller: &LoggedController,
    etcd_pid: u32,
) -> RawRun {
    let keys = Keys::new(RAW_ROOT).expect("a valid root");
    let (endpoints, fence) = raw_setup(raw, settings.endpoints).await;
    let leases: Vec<i64> = endpoints.values().map(|e| e.lease).collect();
    let mut notifications = watch_prefix(raw, &keys.kind_prefix(Kind::Notification)).await;
    // The stand-in controller has a connection of its own, as the real one
    // does: on the benchmark's, its transactions would queue behind the revokes.
    let poster = bounded(
        "connect the raw controller",
        Client::connect([endpoint], None),
    )
    .await
    .expect("connect the raw controller");
    let mut deaths = watch_prefix(&poster, &keys.kind_prefix(Kind::Endpoint)).await;
    let before = CpuSample::take(etcd_pid, controller);
    let started = Instant::now();
    let (revoked, (first, last), txns) = tokio::join!(
        revoke_all(raw, &leases),
        notifications_created(
            &mut notifications,
            settings.endpoints,
            started,
            settings,
            controller,
            "raw",
        ),
        raw_post(
            &poster,
            &mut deaths,
            &endpoints,
            &fence,
            started + settings.timeout
        ),
    );
    let cpu = CpuSample::take(etcd_pid, controller).since(before);
    let written = count_keys(raw, &keys.kind_prefix(Kind::Notification)).await;
    let tracked = count_keys(raw, &keys.kind_prefix(Kind::Tracked)).await;
    assert!(
        written as usize == settings.endpoints && tracked == 0,
        "the raw phase left {written} notifications (expected {}) and {tracked} tracked records",
        settings.endpoints
    );
    RawRun {
        death: Death {
            revoked: revoked.duration_since(started),
            first,
            last,
            cpu,
        },
        txns,
    }
}

// ---------------------------------------------------------------------------
// Visor: endpoints registered through the library, dying at once.

/// Registers N endpoints of [`SERVICE`], [`REGISTERS_IN_FLIGHT`] at a time
/// after the first (which writes the service definition).
async fn register_endpoints(visor: &Visor, count: usize) -> Vec<Registration> {
    let register = |i: usize| async move {
        let request = RegisterRequest {
            hostname: hostname(i),
            ports: ports(),
            ttl: ENDPOINT_TTL,
            ..RegisterRequest::default()
        };
        let what = format!("register endpoint {i} of {SERVICE}");
        bounded(&what, discovery::register(visor, SERVICE, request))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    };
    let first = register(0).await;
    let rest: Vec<Registration> = futures::stream::iter(1..count)
        .map(register)
        .buffer_unordered(REGISTERS_IN_FLIGHT)
        .collect()
        .await;
    std::iter::once(first).chain(rest).collect()
}

/// Waits until the controller tracks `count` endpoints of [`SERVICE`].
async fn wait_tracked(
    visor: &Visor,
    count: usize,
    settings: &Settings,
    controller: &LoggedController,
) {
    let raw = visor.registry().etcd();
    let prefix = format!(
        "{}{SERVICE}/",
        visor.registry().keys().kind_prefix(Kind::Tracked)
    );
    let started = Instant::now();
    loop {
        let tracked = count_keys(&raw, &prefix).await;
        if tracked as usize == count {
            return;
        }
        assert!(
            started.elapsed() < settings.timeout,
            "the controller did not track all {count} endpoints of {SERVICE} within {:?} \
             ({tracked} tracked); see {}",
            settings.timeout,
            controller.log().display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `controller_runtime_reconcile_total{controller="services"}` (every
/// result), the reconcile time's sum, and the services loop's errors.
fn services_reconciles(controller: &LoggedController) -> (f64, f64, f64) {
    let labels = "controller=\"services\"";
    let read = |metric: &str| controller.metric(metric, labels).unwrap_or(0.0);
    (
        read("controller_runtime_reconcile_total"),
        read("controller_runtime_reconcile_time_seconds_sum"),
        read("controller_runtime_reconcile_errors_total"),
    )
}

fn down_notifications_posted(controller: &LoggedController) -> f64 {
    controller
        .metric("visor_notifications_total", "kind=\"service-down\"")
        .unwrap_or(0.0)
}

/// Drops every registration (nothing re-registers) and revokes their leases;
/// timed until the N-th notification is created.
async fn visor_death(
    visor: &Visor,
    registrations: Vec<Registration>,
    settings: &Settings,
    controller: &LoggedController,
    etcd_pid: u32,
) -> Death {
    let raw = visor.registry().etcd();
    let leases: Vec<i64> = registrations
        .iter()
        .map(|r| {
            r.lease_id()
                .unwrap_or_else(|| panic!("endpoint {} is not registered", r.id()))
        })
        .collect();
    let prefix = visor.registry().keys().kind_prefix(Kind::Notification);
    let mut notifications = watch_prefix(&raw, &prefix).await;
    let before = CpuSample::take(etcd_pid, controller);
    drop(registrations);
    let started = Instant::now();
    let (revoked, (first, last)) = tokio::join!(
        revoke_all(&raw, &leases),
        notifications_created(
            &mut notifications,
            settings.endpoints,
            started,
            settings,
            controller,
            "Visor",
        ),
    );
    Death {
        revoked: revoked.duration_since(started),
        first,
        last,
        cpu: CpuSample::take(etcd_pid, controller).since(before),
    }
}

/// Why the registry is wrong after the death, if it is: exactly one
/// `service-down` per registered endpoint, numbered 1..=N, naming its
/// hostname; the sequence at N; nothing tracked or registered left.
async fn registry_mismatches(visor: &Visor, hostnames: &BTreeMap<String, String>) -> Vec<String> {
    let mut mismatches = Vec::new();
    let count = hostnames.len();
    let listed = bounded("list the notifications", visor.notifications(0))
        .await
        .expect("list the notifications");
    let posted: Vec<Notification> = listed.items.into_iter().map(|n| n.value).collect();
    if posted.len() != count {
        mismatches.push(format!("{} notifications, expected {count}", posted.len()));
    }
    let others = posted
        .iter()
        .filter(|n| {
            n.kind != NotificationKind::ServiceDown
                || n.service.as_ref().is_none_or(|s| s.as_str() != SERVICE)
        })
        .count();
    if others != 0 {
        mismatches.push(format!(
            "{others} notifications are not service-down of {SERVICE}"
        ));
    }
    let seqs: Vec<u64> = posted.iter().map(|n| n.seq).collect();
    if seqs != (1..=count as u64).collect::<Vec<_>>() {
        mismatches.push(format!(
            "sequence numbers are not 1..={count} in order (first {:?}, last {:?})",
            seqs.first(),
            seqs.last()
        ));
    }
    let reported: BTreeSet<&str> = posted
        .iter()
        .filter_map(|n| n.endpoint.as_deref())
        .collect();
    let registered: BTreeSet<&str> = hostnames.keys().map(String::as_str).collect();
    if reported != registered {
        mismatches.push(format!(
            "{} distinct endpoints reported, {} of them registered, of {count} registered",
            reported.len(),
            reported.intersection(&registered).count()
        ));
    }
    let misnamed = posted
        .iter()
        .filter(|n| {
            let expected = n.endpoint.as_ref().and_then(|id| hostnames.get(id));
            expected.is_none() || n.hostname.as_ref() != expected
        })
        .count();
    if misnamed != 0 {
        mismatches.push(format!(
            "{misnamed} notifications name no registered endpoint or the wrong hostname"
        ));
    }
    let last = bounded("read the sequence", visor.last_notification())
        .await
        .expect("read the sequence");
    if last != count as u64 {
        mismatches.push(format!("the sequence is at {last}, expected {count}"));
    }
    let raw = visor.registry().etcd();
    let keys = visor.registry().keys();
    for kind in [Kind::Tracked, Kind::Endpoint] {
        let prefix = keys.kind_prefix(kind);
        let left = count_keys(&raw, &prefix).await;
        if left != 0 {
            mismatches.push(format!("{left} keys left under {prefix}"));
        }
    }
    mismatches
}

// ---------------------------------------------------------------------------
// The run.

#[tokio::main]
async fn main() {
    let settings = Settings::from_env();
    let count = settings.endpoints;
    let logs = tempfile::Builder::new()
        .prefix("visor-bench-services-")
        .tempdir()
        .expect("create a directory for the controller log")
        .keep();
    let log = logs.join("controller.log");
    let secs = |d: Duration| d.as_secs_f64();
    let etcd = LocalRegistry::start()
        .await
        .expect("start etcd (is etcd-server installed? bash .ci/setup)");
    let etcd_pid = registry_pid(etcd.data_dir());
    let visor = Visor::connect(&RegistryConfig::new([etcd.endpoint()]))
        .await
        .expect("connect to etcd");
    let raw = visor.registry().etcd();
    let controller = LoggedController::start(
        &etcd.endpoint(),
        "bench",
        &["--lease-ttl", LEASE.0, "--renew-deadline", LEASE.1],
        &log,
    );
    controller.wait_leading().await;
    println!(
        "services benchmark: {count} endpoints of {SERVICE} die at once; etcd pid {etcd_pid}, \
         controller pid {}, log {}",
        controller.pid(),
        log.display()
    );
    let quiet = |limit| {
        wait_quiet(
            controller.pid(),
            Instant::now(),
            Duration::from_secs(1),
            0.02,
            limit,
        )
    };

    // Raw first, while the controller has nothing to do.
    let raw_run = raw_phase(&raw, &etcd.endpoint(), &settings, &controller, etcd_pid).await;
    println!(
        "  raw revokes → {count} notifications: {:>8.3} s",
        secs(raw_run.death.last)
    );
    delete_prefix(&raw, &format!("{RAW_ROOT}/")).await;
    wait_leader_renewed(&raw, &visor.registry().keys().leader()).await;

    let registrations = register_endpoints(&visor, count).await;
    let mut hostnames = BTreeMap::new();
    for registration in &registrations {
        let hostname = registration.endpoint().await.hostname;
        hostnames.insert(registration.id().to_owned(), hostname);
    }
    wait_tracked(&visor, count, &settings, &controller).await;
    assert!(
        quiet(settings.timeout).await.is_some(),
        "the controller did not go quiet within {:?} of tracking every endpoint; see {}",
        settings.timeout,
        controller.log().display()
    );
    println!("  {count} endpoints registered and tracked");

    let (reconciles_before, posted_before) = (
        services_reconciles(&controller),
        down_notifications_posted(&controller),
    );
    let run = visor_death(&visor, registrations, &settings, &controller, etcd_pid).await;
    println!(
        "  visor revokes → {count} notifications: {:>8.3} s (first after {:.3} s)",
        secs(run.last),
        secs(run.first)
    );
    let quiet_after = quiet(settings.timeout).await;
    let reconciles = services_reconciles(&controller);
    let (memory, _) = memory_kib(controller.pid());
    let posted = down_notifications_posted(&controller) - posted_before;
    let mut mismatches = registry_mismatches(&visor, &hostnames).await;
    if posted != count as f64 {
        mismatches.push(format!(
            "visor_notifications_total{{kind=\"service-down\"}} grew by {posted}, expected {count}"
        ));
    }
    if quiet_after.is_none() {
        mismatches.push(format!(
            "the controller did not go quiet within {:?} after the last notification",
            settings.timeout
        ));
    }

    let (reconciled, time, errors) = (
        reconciles.0 - reconciles_before.0,
        reconciles.1 - reconciles_before.1,
        reconciles.2 - reconciles_before.2,
    );
    let raw_death = &raw_run.death;
    let rate = |d: Duration| count as f64 / secs(d);
    println!();
    println!(
        "{count} endpoints of {SERVICE} die at once (leases revoked, {REVOKES_IN_FLIGHT} in \
         flight): from the first revoke until the {count}-th notification is created, \
         vs raw etcd transactions"
    );
    println!(
        "| endpoints | raw s | raw notifications/s | Visor s | Visor notifications/s | first notification s, raw / Visor | revokes done s, raw / Visor | last notification after the last revoke s, raw / Visor | Visor ÷ raw |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {count} | {:.3} | {:.0} | {:.3} | {:.0} | {:.3} / {:.3} | {:.3} / {:.3} | {:.3} / {:.3} | {:.2} |",
        secs(raw_death.last),
        rate(raw_death.last),
        secs(run.last),
        rate(run.last),
        secs(raw_death.first),
        secs(run.first),
        secs(raw_death.revoked),
        secs(run.revoked),
        secs(raw_death.last.saturating_sub(raw_death.revoked)),
        secs(run.last.saturating_sub(run.revoked)),
        secs(run.last) / secs(raw_death.last),
    );
    println!();
    println!(
        "CPU seconds from the first revoke to the last notification (other processes: the \
         machine's busy time less etcd, the controller and this benchmark), controller memory \
         after, services reconciles from the first revoke until the controller was quiet"
    );
    println!(
        "| etcd CPU s, raw / Visor | controller CPU s | bench CPU s, raw / Visor | other processes CPU s, raw / Visor | controller VmRSS MiB | services reconciles | mean reconcile ms | reconcile errors | raw posting txns | leadership lost |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {:.2} / {:.2} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {:.0} | {reconciled:.0} | {:.1} | {errors:.0} | {} | {} |",
        raw_death.cpu.etcd,
        run.cpu.etcd,
        run.cpu.controller,
        raw_death.cpu.bench,
        run.cpu.bench,
        raw_death.cpu.machine,
        run.cpu.machine,
        memory as f64 / 1024.0,
        if reconciled > 0.0 {
            time / reconciled * 1e3
        } else {
            0.0
        },
        raw_run.txns,
        controller.leadership_losses(),
    );
    // Every posting is logged at WARN by design; the rest is worth a look.
    let complaints: Vec<String> = controller
        .complaints()
        .into_iter()
        .filter(|line| !line.contains("notification posted"))
        .collect();
    if !complaints.is_empty() {
        println!(
            "\nthe controller logged {} warnings or errors besides its postings, first ones:",
            complaints.len()
        );
        for line in complaints.iter().take(5) {
            println!("  {line}");
        }
    }
    assert!(
        mismatches.is_empty(),
        "the mass death did not end as it should; see {}:\n{}",
        controller.log().display(),
        mismatches.join("\n")
    );
}
