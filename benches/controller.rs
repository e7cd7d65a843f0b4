//! The controller at scale, side by side with raw writes against the same
//! registry in the same run, on etcd and on the embedded registry.
//!
//! `cargo bench --bench controller` runs, for each N in `VISOR_BENCH_SCALE`
//! (comma-separated, default `10000,100000`) and each registry in
//! `VISOR_BENCH_REGISTRIES` (default `etcd,embedded`), with a fresh registry
//! ([`LocalRegistry`]), `VISOR_BENCH_HOSTS` hosts (default 1000, written with one
//! shared lease, capacity large enough for everything) and the real
//! `visor controller` binary as a child process:
//!
//! 1. **Scale-up**: the time from `set_scale(N)` until all N start tickets are
//!    in the registry, next to the time raw etcd takes to write the same
//!    number of instance + ticket keys, with values of the same size, in
//!    sequential transactions of 126 puts (the controller's batch size) under
//!    a separate prefix of the same length; once as plain puts, once guarded
//!    by the same compares Visor's transactions carry (`create_revision == 0`
//!    per key, plus one existing key standing in for the leader fence). Each
//!    raw copy is deleted, compacted and defragmented away before the next
//!    phase, so every phase meets the same etcd state. A leadership lost
//!    during the scale-up (seen in the controller's log) is reported with it:
//!    it changes what the figure means.
//! 2. **Memory**: `VmRSS` and `VmHWM` of the controller process once it has
//!    gone quiet after the scale-up, next to those of the etcd process.
//! 3. **Idle latency**: after convergence, `VISOR_BENCH_LATENCY_ITERATIONS`
//!    (default 50) scale changes of +1 on a separate small app, each timed
//!    from the `set_scale` call to the new start ticket arriving on a watch;
//!    interleaved with the raw baseline, a put timed until it arrives on a
//!    watch of the same etcd.
//!
//! Tickets are detected with a raw etcd watch on the tickets prefix, counting
//! key creations (`version == 1`): it timestamps the last ticket exactly as a
//! client sees it commit, without polling resolution, without O(N) count
//! ranges loading etcd during the measurement, and without decoding every
//! instance event as the typed `watch_events` stream (which watches the whole
//! root) would, on the same two cores the controller and etcd need.
//!
//! With `VISOR_BENCH_PRELOAD=1` each case skips the scale-up: the N pending
//! instances and start tickets (exactly what the controller would write) are
//! written with raw etcd before the controller starts, so memory and idle
//! latency at N can be measured without waiting for a scale-up.
//!
//! The controller runs with `--lease-ttl 10s --renew-deadline 6s`
//! (`VISOR_BENCH_LEASE_TTL`, `VISOR_BENCH_RENEW_DEADLINE` to change).
//!
//! Every wait is bounded (`VISOR_BENCH_TIMEOUT` seconds for a scale-up,
//! default 900) and fails with a message naming what did not happen and where
//! the controller's log is. The controller child is killed on drop.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use visor::Visor;
use visor::model::{App, Instance, Limits, Name, ProcType, Revision, Ticket, TicketOp};
use visor::registry::{LocalRegistry, LocalRegistryOptions, RegistryConfig};

use visor_testkit::controller::LoggedController;
use visor_testkit::fixtures::name;
use visor_testkit::procfs::{cpu_seconds, memory_kib, registry_pid, wait_quiet};
use visor_testkit::raw::{
    FenceStandIn, bounded, count_keys, delete_prefix, is_creation, next_events, next_response,
    wait_leader_renewed, watch_prefix,
};
use visor_testkit::stats::percentile;

/// Starts per controller transaction: 126 puts, the fence check makes 127 compares.
const STARTS_PER_TXN: usize = 63;
/// Root of the raw keys: as long as `/visor`, so raw keys are as long as Visor's.
const RAW_ROOT: &str = "/bench";
/// The app scaled to N.
const BIG: Group = Group {
    app: "big",
    rev: "v1",
    proc: "web",
};
/// The small app scaled by +1 at idle.
const SMALL: Group = Group {
    app: "small",
    rev: "v1",
    proc: "web",
};
/// Instances one host can take: more than N / hosts plus the small app.
const HOST_CAPACITY: u32 = 1_000;
/// How often a long scale-up reports how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

#[derive(Clone, Copy)]
struct Group {
    app: &'static str,
    rev: &'static str,
    proc: &'static str,
}

struct Settings {
    scales: Vec<usize>,
    /// The registries each N runs against, one case each.
    registries: Vec<&'static str>,
    hosts: usize,
    latency_iterations: usize,
    scale_timeout: Duration,
    preload: bool,
    /// The controller's `--lease-ttl` and `--renew-deadline`.
    lease: (String, String),
}

impl Settings {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let number = |name: &str, default: usize| {
            var(name).map_or(default, |v| {
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
            })
        };
        let scales = var("VISOR_BENCH_SCALE").map_or_else(
            || vec![10_000, 100_000],
            |v| {
                v.split(',')
                    .map(|n| {
                        n.trim().parse().unwrap_or_else(|_| {
                            panic!("VISOR_BENCH_SCALE={v:?}: {n:?} is not a number")
                        })
                    })
                    .collect()
            },
        );
        let registries = visor_testkit::bench::registries_from_env();
        Self {
            scales,
            registries,
            hosts: number("VISOR_BENCH_HOSTS", 1_000),
            latency_iterations: number("VISOR_BENCH_LATENCY_ITERATIONS", 50),
            scale_timeout: Duration::from_secs(number("VISOR_BENCH_TIMEOUT", 900) as u64),
            preload: var("VISOR_BENCH_PRELOAD").is_some_and(|v| v != "0"),
            lease: (
                var("VISOR_BENCH_LEASE_TTL").unwrap_or_else(|| "10s".into()),
                var("VISOR_BENCH_RENEW_DEADLINE").unwrap_or_else(|| "6s".into()),
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Registry set-up and raw etcd helpers.

async fn register_group(visor: &Visor, group: Group) {
    let app = App {
        repo_url: format!("https://example.com/{}.git", group.app),
        stack: name("base"),
        deploy_type: "bench".into(),
        created_at: Utc::now(),
    };
    visor
        .register_app(group.app, app)
        .await
        .expect("register app");
    let rev = Revision {
        archive_url: format!("https://example.com/{}-{}.tgz", group.app, group.rev),
        created_at: Utc::now(),
    };
    visor
        .register_rev(group.app, group.rev, rev)
        .await
        .expect("register rev");
    let proc = ProcType {
        command: "./bin/web".into(),
        port: Some(8080),
        limits: Limits::default(),
        host_labels: BTreeMap::new(),
        kill_timeout_secs: None,
        restart: Default::default(),
        readiness: None,
        service: None,
        created_at: Utc::now(),
    };
    visor
        .register_proc(group.app, group.proc, proc)
        .await
        .expect("register proc");
}

/// The pending instance and start ticket the controller writes for one start
/// on `host`, as (key, value) pairs under `root`.
fn start_pair(root: &str, group: Group, host: &Name) -> [(String, Vec<u8>); 2] {
    let now = Utc::now();
    let id = uuid::Uuid::now_v7().to_string();
    let instance = Instance::pending(
        name(group.app),
        name(group.rev),
        name(group.proc),
        Some(host.clone()),
        now,
    );
    let ticket = Ticket {
        op: TicketOp::Start,
        instance: name(&id),
        app: name(group.app),
        rev: name(group.rev),
        proc: name(group.proc),
        created_at: now,
        claimed_by: None,
        claimed_at: None,
    };
    [
        (
            format!("{root}/instances/{id}"),
            serde_json::to_vec(&instance).expect("instances serialize"),
        ),
        (
            format!("{root}/tickets/{host}/{}", uuid::Uuid::now_v7()),
            serde_json::to_vec(&ticket).expect("tickets serialize"),
        ),
    ]
}

/// Writes `count` starts (instance + ticket) under `root` in sequential
/// transactions of 126 puts; guarded like Visor's when `fence` is given.
async fn raw_batches(
    raw: &Client,
    root: &str,
    count: usize,
    hosts: &[Name],
    fence: Option<&FenceStandIn>,
) -> Duration {
    let mut kv = raw.kv_client();
    let started = Instant::now();
    let mut done = 0;
    while done < count {
        let batch = (count - done).min(STARTS_PER_TXN);
        let mut compares = Vec::new();
        let mut puts = Vec::new();
        let mut gets = Vec::new();
        for i in done..done + batch {
            for (key, value) in start_pair(root, BIG, &hosts[i % hosts.len()]) {
                if fence.is_some() {
                    compares.push(Compare::create_revision(key.as_str(), CompareOp::Equal, 0));
                    gets.push(TxnOp::get(key.as_str(), None));
                }
                puts.push(TxnOp::put(key, value, None));
            }
        }
        if let Some(fence) = fence {
            let (guard, read) = fence.guard();
            compares.push(guard);
            gets.push(read);
        }
        let txn = Txn::new().when(compares).and_then(puts).or_else(gets);
        let response = bounded("a raw batched transaction", kv.txn(txn))
            .await
            .expect("raw batched transaction");
        assert!(
            response.succeeded(),
            "a raw batched transaction's compares failed"
        );
        done += batch;
    }
    started.elapsed()
}

// ---------------------------------------------------------------------------
// The measurements.

struct ScaleUp {
    first: Duration,
    last: Duration,
}

/// `set_scale(N)` until N start tickets were created, seen on a watch;
/// progress is printed every [`PROGRESS_EVERY`] so a long run shows its rate.
async fn visor_scale_up(
    visor: &Visor,
    raw: &Client,
    count: usize,
    limit: Duration,
    controller: &LoggedController,
) -> ScaleUp {
    let tickets = visor.registry().keys().tickets(None);
    let mut stream = watch_prefix(raw, &tickets).await;
    let started = Instant::now();
    let deadline = started + limit;
    visor
        .set_scale(BIG.app, BIG.rev, BIG.proc, count as u32)
        .await
        .expect("set the scale factor");
    let (mut seen, mut first) = (0, None);
    let mut report = started + PROGRESS_EVERY;
    while seen < count {
        let now = Instant::now();
        if now >= report {
            let (rss, _) = memory_kib(controller.pid());
            let committed = count_keys(raw, &tickets).await;
            println!(
                "    {:>6.0} s: {committed} of {count} start tickets committed, {seen} seen on the \
                 watch; controller VmRSS {} MiB",
                started.elapsed().as_secs_f64(),
                rss / 1024
            );
            report += PROGRESS_EVERY;
        }
        assert!(
            now < deadline,
            "timed out after {limit:?} waiting until all {count} start tickets exist: \
             {seen} appeared ({:.0}/s); controller log: {}",
            seen as f64 / started.elapsed().as_secs_f64(),
            controller.log().display()
        );
        let wait = deadline.min(report).saturating_duration_since(now);
        let what = format!("{count} start tickets exist");
        for event in next_response(&mut stream, wait, &what)
            .await
            .unwrap_or_default()
        {
            if is_creation(&event) {
                seen += 1;
                first.get_or_insert_with(|| started.elapsed());
            }
        }
    }
    ScaleUp {
        first: first.unwrap_or_default(),
        last: started.elapsed(),
    }
}

/// Per iteration: a raw put until seen on a watch, then `set_scale(+1)` of the
/// small app until its new start ticket is seen, each after the controller went quiet.
async fn idle_latency(
    visor: &Visor,
    raw: &Client,
    controller: &LoggedController,
    iterations: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let limit = Duration::from_secs(30);
    let mut tickets = watch_prefix(raw, &visor.registry().keys().tickets(None)).await;
    let raw_prefix = format!("{RAW_ROOT}/latency/");
    let mut puts = watch_prefix(raw, &raw_prefix).await;
    let mut kv = raw.kv_client();
    let value = start_pair(RAW_ROOT, SMALL, &name("host-0000"))[1].1.clone();
    let (mut visor_samples, mut raw_samples) = (Vec::new(), Vec::new());
    for i in 1..=iterations {
        let quiet = wait_quiet(
            controller.pid(),
            Instant::now(),
            Duration::from_millis(200),
            0.01,
            Duration::from_secs(60),
        )
        .await;
        assert!(
            quiet.is_some(),
            "the controller did not go quiet within 60s between idle scale changes; see {}",
            controller.log().display()
        );

        let key = format!("{raw_prefix}{i:04}");
        let started = Instant::now();
        bounded("a raw put", kv.put(key.as_str(), value.clone(), None))
            .await
            .expect("raw put");
        'raw: loop {
            for event in next_events(&mut puts, limit, &format!("raw put {key} is seen")).await {
                if event.kv().is_some_and(|kv| kv.key() == key.as_bytes()) {
                    break 'raw;
                }
            }
        }
        raw_samples.push(started.elapsed());

        let started = Instant::now();
        visor
            .set_scale(SMALL.app, SMALL.rev, SMALL.proc, i as u32)
            .await
            .expect("scale the small app");
        let what = format!(
            "the start ticket for replica {i} of the small app exists (controller log: {})",
            controller.log().display()
        );
        'visor: loop {
            for event in next_events(&mut tickets, limit, &what).await {
                let Some(kv) = event.kv() else { continue };
                if !is_creation(&event) {
                    continue;
                }
                let ticket: Ticket = serde_json::from_slice(kv.value()).expect("tickets decode");
                if ticket.app.as_str() == SMALL.app && ticket.op == TicketOp::Start {
                    break 'visor;
                }
            }
        }
        visor_samples.push(started.elapsed());
    }
    (visor_samples, raw_samples)
}

/// The reconcile loops whose work is reported.
const LOOPS: [&str; 3] = ["scale", "liveness", "gc"];

/// `controller_runtime_reconcile_time_seconds` count and sum per loop.
struct ReconcileCounters(Vec<(f64, f64)>);

impl ReconcileCounters {
    fn read(controller: &LoggedController) -> Self {
        let name = "controller_runtime_reconcile_time_seconds";
        Self(
            LOOPS
                .iter()
                .map(|l| {
                    let labels = format!("controller=\"{l}\"");
                    let count = controller.metric(&format!("{name}_count"), &labels);
                    let sum = controller.metric(&format!("{name}_sum"), &labels);
                    (count.unwrap_or(0.0), sum.unwrap_or(0.0))
                })
                .collect(),
        )
    }

    /// (reconciles, mean seconds) per loop since `before`.
    fn since(&self, before: &Self) -> Vec<(f64, f64)> {
        self.0
            .iter()
            .zip(&before.0)
            .map(|((count, sum), (count0, sum0))| {
                let n = count - count0;
                (n, if n > 0.0 { (sum - sum0) / n } else { 0.0 })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// One case: a fresh etcd, hosts and controller, with N instances.

/// The scale-up of one case and its raw baselines.
struct ScaleUpCase {
    raw_put: Duration,
    raw_guarded: Duration,
    visor: ScaleUp,
    etcd_cpu_raw_put: f64,
    etcd_cpu_raw_guarded: f64,
    etcd_cpu_visor: f64,
    controller_cpu_to_last: f64,
    quiet_after: Option<Duration>,
    controller_cpu_to_quiet: f64,
    /// Leadership terms lost between `set_scale` and quiet.
    leadership_lost: usize,
}

struct Case {
    count: usize,
    /// The registry it ran against: etcd or embedded.
    registry: &'static str,
    /// None when the instances were preloaded instead of scaled up to.
    scale_up: Option<ScaleUpCase>,
    /// From starting the controller to it leading with synced caches.
    controller_ready: Duration,
    controller_memory: (u64, u64),
    etcd_memory: (u64, u64),
    emitted: Option<f64>,
    instances: i64,
    tickets: i64,
    latency_visor: Vec<Duration>,
    latency_raw: Vec<Duration>,
    /// Per loop (scale, liveness, gc): reconciles and their mean time during the idle phase.
    idle_reconciles: Vec<(f64, f64)>,
    complaints: Vec<String>,
}

impl Case {
    /// N and the registry, for the tables' first column.
    fn label(&self) -> String {
        format!("{} ({})", self.count, self.registry)
    }

    /// The registry must hold exactly N instances and N tickets (no start
    /// lost, none emitted twice).
    fn registry_mismatch(&self) -> Option<String> {
        let count = self.count as i64;
        (self.instances != count || self.tickets != count).then(|| {
            format!(
                "{} instances and {} tickets in the registry, expected {count} of each",
                self.instances, self.tickets
            )
        })
    }

    /// `visor_tickets_emitted_total{op="start"}` should count every start
    /// the controller wrote (none when preloaded).
    fn metric_mismatch(&self) -> Option<String> {
        let emitted = self.emitted.unwrap_or(0.0);
        let expected = match self.scale_up {
            Some(_) => self.count as f64,
            None => 0.0,
        };
        (emitted != expected).then(|| {
            format!(
                "visor_tickets_emitted_total{{op=\"start\"}} is {emitted}, but the controller \
                 wrote {expected} start tickets"
            )
        })
    }
}

/// The scale-up to `count` and its raw baselines, with the controller idle before.
async fn scale_up_case(
    settings: &Settings,
    visor: &Visor,
    count: usize,
    hosts: &[Name],
    controller: &LoggedController,
    etcd_pid: u32,
) -> ScaleUpCase {
    let secs = |d: Duration| d.as_secs_f64();
    let raw = visor.registry().etcd();
    let app_key = visor.registry().keys().app(&name(BIG.app));
    let fence = FenceStandIn::existing(&raw, app_key).await;
    // Raw first, while the controller has nothing to do; each raw copy is
    // deleted (and etcd compacted and defragmented) afterwards, so every
    // write phase meets the same live keys and a clean backend.
    let raw_prefix = format!("{RAW_ROOT}/");
    let cpu = cpu_seconds(etcd_pid);
    let raw_put = raw_batches(&raw, RAW_ROOT, count, hosts, None).await;
    let etcd_cpu_raw_put = cpu_seconds(etcd_pid) - cpu;
    println!("  raw batched puts:           {:>8.3} s", secs(raw_put));
    delete_prefix(&raw, &raw_prefix).await;
    let cpu = cpu_seconds(etcd_pid);
    let raw_guarded = raw_batches(&raw, RAW_ROOT, count, hosts, Some(&fence)).await;
    let etcd_cpu_raw_guarded = cpu_seconds(etcd_pid) - cpu;
    println!("  raw guarded batches:        {:>8.3} s", secs(raw_guarded));
    delete_prefix(&raw, &raw_prefix).await;
    wait_leader_renewed(&raw, &visor.registry().keys().leader()).await;

    let losses = controller.leadership_losses();
    let (etcd_cpu, controller_cpu) = (cpu_seconds(etcd_pid), cpu_seconds(controller.pid()));
    let started = Instant::now();
    let visor_run = visor_scale_up(visor, &raw, count, settings.scale_timeout, controller).await;
    let etcd_cpu_visor = cpu_seconds(etcd_pid) - etcd_cpu;
    let controller_cpu_to_last = cpu_seconds(controller.pid()) - controller_cpu;
    println!(
        "  visor set_scale → tickets:  {:>8.3} s (first ticket after {:.3} s)",
        secs(visor_run.last),
        secs(visor_run.first)
    );
    let quiet_after = wait_quiet(
        controller.pid(),
        started,
        Duration::from_secs(1),
        0.02,
        settings.scale_timeout,
    )
    .await;
    let controller_cpu_to_quiet = cpu_seconds(controller.pid()) - controller_cpu;
    let leadership_lost = controller.leadership_losses() - losses;
    if leadership_lost > 0 {
        println!(
            "  the controller lost its leadership {leadership_lost} time(s) during the scale-up; see {}",
            controller.log().display()
        );
    }
    match quiet_after {
        Some(after) => println!(
            "  controller quiet after:     {:>8.3} s ({controller_cpu_to_quiet:.1} CPU s)",
            secs(after)
        ),
        None => println!(
            "  controller still busy {:?} after the scale change",
            settings.scale_timeout
        ),
    }
    ScaleUpCase {
        raw_put,
        raw_guarded,
        visor: visor_run,
        etcd_cpu_raw_put,
        etcd_cpu_raw_guarded,
        etcd_cpu_visor,
        controller_cpu_to_last,
        quiet_after,
        controller_cpu_to_quiet,
        leadership_lost,
    }
}

async fn run_case(settings: &Settings, count: usize, registry: &'static str, logs: &Path) -> Case {
    let etcd = LocalRegistry::start_with(LocalRegistryOptions {
        server: visor_testkit::bench::server(registry),
        // Room for three copies of 2N keys and their history (etcd's quota;
        // the embedded registry has none).
        extra_args: vec!["--quota-backend-bytes=8589934592".into()],
        ..LocalRegistryOptions::default()
    })
    .await
    .expect("start the registry (is etcd-server installed? bash .ci/setup)");
    let etcd_pid = registry_pid(etcd.data_dir());
    let visor = Visor::connect(&RegistryConfig::new([etcd.endpoint()]))
        .await
        .expect("connect to etcd");
    let raw = visor.registry().etcd();
    let (_hosts_lease, hosts) =
        visor_testkit::bench::register_hosts(&visor, settings.hosts, HOST_CAPACITY).await;
    register_group(&visor, BIG).await;
    register_group(&visor, SMALL).await;
    if settings.preload {
        // What the controller would have written for the scale-up, written
        // before it starts: it finds its work done and only lists it.
        let took = raw_batches(&raw, visor.registry().keys().root(), count, &hosts, None).await;
        visor
            .set_scale(BIG.app, BIG.rev, BIG.proc, count as u32)
            .await
            .expect("set the scale factor");
        println!(
            "N = {count}: preloaded {count} pending instances and start tickets in {:.1} s",
            took.as_secs_f64()
        );
    }

    let log = logs.join(format!("controller-{count}.log"));
    let started = Instant::now();
    let (ttl, deadline) = &settings.lease;
    let controller = LoggedController::start(
        &etcd.endpoint(),
        "bench",
        &["--lease-ttl", ttl, "--renew-deadline", deadline],
        &log,
    );
    controller.wait_leading().await;
    let controller_ready = started.elapsed();
    println!(
        "N = {count}: etcd pid {etcd_pid}, controller pid {} leading and ready after {:.1} s, {} hosts; log {}",
        controller.pid(),
        controller_ready.as_secs_f64(),
        hosts.len(),
        log.display()
    );

    let scale_up = match settings.preload {
        false => Some(scale_up_case(settings, &visor, count, &hosts, &controller, etcd_pid).await),
        true => {
            let quiet = wait_quiet(
                controller.pid(),
                started,
                Duration::from_secs(1),
                0.02,
                settings.scale_timeout,
            )
            .await;
            let quiet = quiet.unwrap_or_else(|| {
                panic!(
                    "the controller did not go quiet within {:?} of starting on {count} preloaded instances; see {}",
                    settings.scale_timeout,
                    log.display()
                )
            });
            println!(
                "  controller quiet after:     {:>8.3} s from its start",
                quiet.as_secs_f64()
            );
            None
        }
    };
    let controller_memory = memory_kib(controller.pid());
    let etcd_memory = memory_kib(etcd_pid);
    let emitted = controller.metric("visor_tickets_emitted_total", "op=\"start\"");
    let instances = count_keys(&raw, &visor.registry().keys().instances()).await;
    let tickets = count_keys(&raw, &visor.registry().keys().tickets(None)).await;

    let before = ReconcileCounters::read(&controller);
    let (latency_visor, latency_raw) =
        idle_latency(&visor, &raw, &controller, settings.latency_iterations).await;
    let idle_reconciles = ReconcileCounters::read(&controller).since(&before);
    println!(
        "  idle +1: visor p50 {:.1} ms, raw p50 {:.1} ms",
        percentile(&latency_visor, 50.0).as_secs_f64() * 1e3,
        percentile(&latency_raw, 50.0).as_secs_f64() * 1e3
    );
    let case = Case {
        count,
        registry,
        scale_up,
        controller_ready,
        controller_memory,
        etcd_memory,
        emitted,
        instances,
        tickets,
        latency_visor,
        latency_raw,
        idle_reconciles,
        complaints: controller.complaints(),
    };
    for mismatch in [case.registry_mismatch(), case.metric_mismatch()]
        .into_iter()
        .flatten()
    {
        println!("  MISMATCH after reaching {count}: {mismatch}");
    }
    case
}

fn print_tables(settings: &Settings, cases: &[Case]) {
    let secs = |d: Duration| d.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let scaled: Vec<(&Case, &ScaleUpCase)> = cases
        .iter()
        .filter_map(|c| Some((c, c.scale_up.as_ref()?)))
        .collect();
    if !scaled.is_empty() {
        println!();
        println!(
            "Scale-up over {} hosts: set_scale(N) until N start tickets exist, vs raw etcd \
             writing the same 2N keys in sequential 126-put transactions (N with the registry it ran against)",
            settings.hosts
        );
        println!(
            "| N | raw put txns s | raw guarded txns s | visor s | first ticket s | visor starts/s | visor ÷ raw put | visor ÷ raw guarded | leadership lost |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (c, s) in &scaled {
            println!(
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | {:.2} | {:.2} | {} |",
                c.label(),
                secs(s.raw_put),
                secs(s.raw_guarded),
                secs(s.visor.last),
                secs(s.visor.first),
                c.count as f64 / secs(s.visor.last),
                secs(s.visor.last) / secs(s.raw_put),
                secs(s.visor.last) / secs(s.raw_guarded),
                s.leadership_lost,
            );
        }
        println!();
        println!(
            "CPU seconds during each write phase, and until the controller went quiet (1 s windows)"
        );
        println!(
            "| N | registry CPU s, raw put | registry CPU s, raw guarded | registry CPU s, visor | controller CPU s to last ticket | controller quiet after s | controller CPU s to quiet |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        for (c, s) in &scaled {
            println!(
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.1} |",
                c.label(),
                s.etcd_cpu_raw_put,
                s.etcd_cpu_raw_guarded,
                s.etcd_cpu_visor,
                s.controller_cpu_to_last,
                s.quiet_after
                    .map_or_else(|| "not quiet".to_owned(), |d| format!("{:.1}", secs(d))),
                s.controller_cpu_to_quiet,
            );
        }
    }
    let how = |c: &Case| match c.scale_up {
        Some(_) => "scaled up",
        None => "preloaded",
    };
    println!();
    println!(
        "Memory once quiet (MiB), and the controller's start until leading with synced caches"
    );
    println!(
        "| N instances | how | controller VmRSS | controller VmHWM | registry VmRSS | registry VmHWM | controller ready s |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for c in cases {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
            c.label(),
            how(c),
            mib(c.controller_memory.0),
            mib(c.controller_memory.1),
            mib(c.etcd_memory.0),
            mib(c.etcd_memory.1),
            secs(c.controller_ready),
        );
    }
    println!();
    println!(
        "Idle latency, {} iterations after convergence: set_scale(+1) of a small app until its \
         start ticket is seen on a watch, vs a raw put until seen on a watch (ms)",
        settings.latency_iterations
    );
    println!(
        "| instances in registry | how | visor p50 | visor p99 | raw p50 | raw p99 | visor ÷ raw p50 | visor ÷ raw p99 |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for c in cases {
        let (v50, v99) = (
            percentile(&c.latency_visor, 50.0),
            percentile(&c.latency_visor, 99.0),
        );
        let (r50, r99) = (
            percentile(&c.latency_raw, 50.0),
            percentile(&c.latency_raw, 99.0),
        );
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} |",
            c.label(),
            how(c),
            ms(v50),
            ms(v99),
            ms(r50),
            ms(r99),
            secs(v50) / secs(r50),
            secs(v99) / secs(r99),
        );
    }
    println!();
    println!(
        "Reconciles per idle +1 and their mean time (controller_runtime_reconcile_time_seconds)"
    );
    println!(
        "| instances in registry | how | scale per +1 | scale mean ms | liveness per +1 | liveness mean ms | gc per +1 | gc mean ms |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for c in cases {
        let per = c.latency_visor.len().max(1) as f64;
        let cells: Vec<String> = c
            .idle_reconciles
            .iter()
            .map(|(n, mean)| format!("{:.1} | {:.1}", n / per, mean * 1e3))
            .collect();
        println!("| {} | {} | {} |", c.label(), how(c), cells.join(" | "));
    }
    for c in cases {
        for mismatch in [c.registry_mismatch(), c.metric_mismatch()]
            .into_iter()
            .flatten()
        {
            println!("\nMISMATCH at N = {}: {mismatch}", c.label());
        }
        if !c.complaints.is_empty() {
            println!(
                "\nN = {}: the controller logged {} warnings or errors, first ones:",
                c.label(),
                c.complaints.len()
            );
            for line in c.complaints.iter().take(5) {
                println!("  {line}");
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let settings = Settings::from_env();
    let logs = tempfile::Builder::new()
        .prefix("visor-bench-controller-")
        .tempdir()
        .expect("create a directory for controller logs")
        .keep();
    println!(
        "controller benchmark: N = {:?}{} over {} hosts, {} idle iterations, lease TTL {} renew deadline {}; controller logs in {}",
        settings.scales,
        if settings.preload { " (preloaded)" } else { "" },
        settings.hosts,
        settings.latency_iterations,
        settings.lease.0,
        settings.lease.1,
        logs.display()
    );
    let mut cases = Vec::new();
    for &count in &settings.scales {
        for &registry in &settings.registries {
            let began = Instant::now();
            cases.push(run_case(&settings, count, registry, &logs).await);
            println!(
                "  case N = {count} on {registry} took {:.0} s",
                began.elapsed().as_secs_f64()
            );
            // Every case so far, so a later case that fails its bounds loses nothing.
            print_tables(&settings, &cases);
        }
    }
}
