//! A rolling deploy at scale, side by side with the raw writes it needs,
//! on etcd and on the embedded registry in the same run.
//!
//! `cargo bench --bench rollout` runs, for each registry in
//! `VISOR_BENCH_REGISTRIES` (default `etcd,embedded`), with a fresh registry
//! ([`LocalRegistry`]), `VISOR_BENCH_HOSTS` hosts (default 100, one shared
//! lease), the real `visor controller` binary as a child process, and the
//! hosts' agents simulated in this process: one task per host watching its
//! own tickets, and for each one claiming it, moving the instance through
//! its life cycle (`claimed → running` for a start, as if its readiness
//! check passed at once; `stopping → exited` for a stop) and completing it,
//! with the typed API the real agent uses.
//!
//! 1. **Deploy**: an app of `VISOR_BENCH_INSTANCES` instances (default
//!    1,000) at revision v1 is applied and brought up (not timed).
//! 2. **Rollout**: v2 is applied with `max_surge` `VISOR_BENCH_SURGE`
//!    (default 25 % of the instances) and `max_unavailable` 0, timed from
//!    the apply until the controller records the rollout complete (every v2
//!    instance ready, no v1 one left). Every write the registry took
//!    meanwhile is recorded on a watch of the whole root, grouped by
//!    revision: what the rollout cost the registry, controller and agents
//!    together.
//! 3. **Raw**: the recorded writes replayed, one transaction per recorded
//!    revision, under a root of the same length (`/bench`): the registry
//!    work the rollout needs without the decisions, round trips and waiting
//!    between them. Once serially, in order (what one writer would take),
//!    once with 64 transactions in flight (about the concurrency of the
//!    agents and the controller together; issued in order, so they can
//!    complete out of it: the cost of each write, not the final state, is
//!    what is compared). Each copy is deleted afterwards.
//!
//! The run checks itself and fails loudly: the rollout must end complete
//! with exactly N v2 instances running and no v1 one active, and the ready
//! count (running instances of either revision, on the recorded events)
//! must never fall below N, nor the instances rise above N + surge.
//!
//! Every wait is bounded (`VISOR_BENCH_TIMEOUT` seconds, default 600) and
//! fails naming what did not happen and where the controller's log is. The
//! controller child is killed on drop; the agents are aborted when a case ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, GetOptions, Txn, TxnOp, WatchOptions};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use visor::Visor;
use visor::model::TicketOp;
use visor::model::{AppSpec, Instance, InstanceState, Name, RolloutPhase, RolloutStatus};
use visor::registry::{LocalRegistry, LocalRegistryOptions, RegistryConfig};

use visor_testkit::controller::LoggedController;
use visor_testkit::fixtures::name;
use visor_testkit::procfs::{cpu_seconds, registry_pid};
use visor_testkit::raw::{bounded, current_revision, delete_prefix};

/// Root of the replayed keys: as long as `/visor`, so keys are as long as Visor's.
const RAW_ROOT: &str = "/bench";
/// The app rolled.
const APP: &str = "big";
/// Tickets one simulated agent works on at once (the real agent's slots run
/// in parallel too).
const AGENT_PARALLELISM: usize = 8;
/// Transactions the parallel replay keeps outstanding: about as many as the
/// simulated agents and the controller have in flight together.
const REPLAY_IN_FLIGHT: usize = 64;

struct Settings {
    registries: Vec<&'static str>,
    instances: u32,
    hosts: usize,
    surge: u32,
    timeout: Duration,
}

impl Settings {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let number = |name: &str, default: u64| {
            var(name).map_or(default, |v| {
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
            })
        };
        let registries = visor_testkit::bench::registries_from_env();
        let instances = u32::try_from(number("VISOR_BENCH_INSTANCES", 1_000))
            .expect("VISOR_BENCH_INSTANCES fits in 32 bits");
        let surge = u32::try_from(number("VISOR_BENCH_SURGE", u64::from(instances / 4)))
            .expect("VISOR_BENCH_SURGE fits in 32 bits")
            .max(1);
        Self {
            registries,
            instances,
            hosts: usize::try_from(number("VISOR_BENCH_HOSTS", 100)).expect("hosts fit"),
            surge,
            timeout: Duration::from_secs(number("VISOR_BENCH_TIMEOUT", 600)),
        }
    }
}

/// What one registry's case measured.
struct Case {
    registry: &'static str,
    rollout: Duration,
    raw_serial: Duration,
    raw_parallel: Duration,
    revisions: usize,
    writes: usize,
    lowest_ready: usize,
    highest_total: usize,
    controller_cpu: f64,
    registry_cpu: f64,
    leadership_lost: usize,
}

fn spec(current: &str, instances: u32, surge: u32) -> AppSpec {
    serde_json::from_value(serde_json::json!({
        "name": APP,
        "repo_url": "https://example.com/big.git",
        "stack": "base",
        "procs": { "web": { "command": "./bin/web", "port": 8080 } },
        "revisions": {
            "v1": { "archive_url": "https://example.com/big-v1.tgz" },
            "v2": { "archive_url": "https://example.com/big-v2.tgz" },
        },
        "current": current,
        "scale": { "web": instances },
        "rollout": { "max_surge": surge, "max_unavailable": 0, "deadline_secs": 3600 },
    }))
    .expect("the benchmark's spec is valid")
}

async fn apply(visor: &Visor, spec: &AppSpec) {
    let state = visor.app_state(APP).await.expect("read the app");
    visor
        .apply_spec(spec, &state, false)
        .await
        .expect("apply the spec");
}

/// One host's agent, simulated: works every ticket addressed to `host`, as
/// the real agent would, until aborted.
async fn agent(visor: Visor, host: Name) {
    let prefix = format!("{}/tickets/{host}/", visor.registry().keys().root());
    let mut client = visor.registry().etcd();
    // Tickets already there, then every one created after.
    let listed = bounded(
        "list the host's tickets",
        client.get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
    )
    .await
    .expect("list the host's tickets");
    let from = listed.header().map_or(0, |h| h.revision()) + 1;
    let slots = Arc::new(Semaphore::new(AGENT_PARALLELISM));
    let mut work = JoinSet::new();
    let take = |work: &mut JoinSet<()>, id: String| {
        let (visor, host, slots) = (visor.clone(), host.clone(), slots.clone());
        work.spawn(async move {
            let _slot = slots
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            work_ticket(&visor, host.as_str(), &id).await;
        });
    };
    for kv in listed.kvs() {
        take(&mut work, ticket_id(kv.key()));
    }
    let mut stream = client
        .watch(
            prefix.as_str(),
            Some(WatchOptions::new().with_prefix().with_start_revision(from)),
        )
        .await
        .expect("watch the host's tickets");
    while let Some(response) = stream.message().await.expect("the tickets watch") {
        for event in response.events() {
            if let (EventType::Put, Some(kv)) = (event.event_type(), event.kv())
                && kv.version() == 1
            {
                take(&mut work, ticket_id(kv.key()));
            }
        }
        while let Some(done) = work.try_join_next() {
            done.expect("a simulated agent's ticket work");
        }
    }
}

fn ticket_id(key: &[u8]) -> String {
    let key = String::from_utf8_lossy(key);
    key.rsplit('/').next().unwrap_or_default().to_owned()
}

/// Claims ticket `id`, moves its instance as it asks, and completes it.
async fn work_ticket(visor: &Visor, host: &str, id: &str) {
    let Ok(ticket) = visor.claim_ticket(host, id, host).await else {
        return;
    };
    let instance = ticket.value.instance.to_string();
    let moved = match ticket.value.op {
        TicketOp::Start => {
            visor.claim_instance(&instance, host).await.is_ok()
                && visor
                    .start_instance(&instance, host, Some(8080))
                    .await
                    .is_ok()
        }
        TicketOp::Stop => {
            // An instance stopped before its start was worked is already gone.
            let _ = visor.stop_instance(&instance, host).await;
            let _ = visor.exit_instance(&instance, host, None).await;
            true
        }
    };
    assert!(moved, "instance {instance} on {host} could not be started");
    visor
        .complete_ticket(&ticket, host)
        .await
        .unwrap_or_else(|e| panic!("complete ticket {id} of {host}: {e}"));
}

/// One recorded write of the rollout.
enum Write {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// What the recording saw until the rollout was complete.
struct Recording {
    /// Every write, grouped by registry revision, in order.
    revisions: Vec<Vec<Write>>,
    /// When the rollout status said complete.
    completed: Instant,
    lowest_ready: usize,
    highest_total: usize,
}

/// Records every write under the root after `from` until the rollout of
/// `APP` to v2 is complete; tracks the ready and total instance counts.
async fn record(
    visor: Visor,
    from: i64,
    mut states: BTreeMap<Vec<u8>, InstanceState>,
) -> Recording {
    let keys = visor.registry().keys().clone();
    let instances = keys
        .kind_prefix(visor::registry::Kind::Instance)
        .into_bytes();
    let rollout_key = keys.rollout(&name(APP)).into_bytes();
    let root = format!("{}/", keys.root());
    let mut client = visor.registry().etcd();
    let mut stream = client
        .watch(
            root.as_str(),
            Some(WatchOptions::new().with_prefix().with_start_revision(from)),
        )
        .await
        .expect("watch the root");
    let ready = |s: &BTreeMap<Vec<u8>, InstanceState>| {
        s.values()
            .filter(|st| **st == InstanceState::Running)
            .count()
    };
    let total =
        |s: &BTreeMap<Vec<u8>, InstanceState>| s.values().filter(|st| !st.is_terminal()).count();
    let mut recording = Recording {
        revisions: Vec::new(),
        completed: Instant::now(),
        lowest_ready: ready(&states),
        highest_total: total(&states),
    };
    let mut last_revision = 0;
    while let Some(response) = stream.message().await.expect("the root watch") {
        let mut complete = false;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            if kv.mod_revision() != last_revision {
                recording.revisions.push(Vec::new());
                last_revision = kv.mod_revision();
            }
            let writes = recording.revisions.last_mut().expect("pushed above");
            match event.event_type() {
                EventType::Put => {
                    writes.push(Write::Put(kv.key().to_vec(), kv.value().to_vec()));
                    if kv.key().starts_with(&instances) {
                        let instance: Instance =
                            serde_json::from_slice(kv.value()).expect("an instance");
                        states.insert(kv.key().to_vec(), instance.state);
                    }
                    if kv.key() == rollout_key.as_slice() {
                        let status: RolloutStatus =
                            serde_json::from_slice(kv.value()).expect("a rollout status");
                        complete |= status.revision.as_str() == "v2"
                            && status.phase == RolloutPhase::Complete;
                    }
                }
                EventType::Delete => {
                    writes.push(Write::Delete(kv.key().to_vec()));
                    states.remove(kv.key());
                }
            }
        }
        recording.lowest_ready = recording.lowest_ready.min(ready(&states));
        recording.highest_total = recording.highest_total.max(total(&states));
        if complete {
            recording.completed = Instant::now();
            return recording;
        }
    }
    panic!("the root watch ended before the rollout was complete")
}

/// Replays `revisions` under [`RAW_ROOT`], one transaction each, issued in
/// order with `in_flight` outstanding at most.
async fn replay(raw: &Client, root: &str, revisions: &[Vec<Write>], in_flight: usize) -> Duration {
    let moved = |key: &[u8]| {
        let mut raw_key = RAW_ROOT.as_bytes().to_vec();
        raw_key.extend_from_slice(&key[root.len()..]);
        raw_key
    };
    let txns: Vec<Txn> = revisions
        .iter()
        .map(|writes| {
            let ops: Vec<TxnOp> = writes
                .iter()
                .map(|write| match write {
                    Write::Put(key, value) => TxnOp::put(moved(key), value.clone(), None),
                    Write::Delete(key) => TxnOp::delete(moved(key), None),
                })
                .collect();
            Txn::new().and_then(ops)
        })
        .collect();
    let started = Instant::now();
    futures::stream::iter(txns)
        .map(|txn| {
            let mut kv = raw.kv_client();
            async move {
                bounded("replay a revision", kv.txn(txn))
                    .await
                    .expect("replay a revision");
            }
        })
        .buffer_unordered(in_flight)
        .collect::<Vec<()>>()
        .await;
    let took = started.elapsed();
    delete_prefix(raw, &format!("{RAW_ROOT}/")).await;
    took
}

/// Waits until `what` holds, polling every 100 ms, at most `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, log: &std::path::Path, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}; the controller's log is {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Active instances by revision and state.
async fn census(visor: &Visor) -> BTreeMap<(String, InstanceState), usize> {
    let mut counts = BTreeMap::new();
    let listing = visor
        .instances(&Default::default())
        .await
        .expect("list instances");
    for instance in listing.items {
        if !instance.value.state.is_terminal() {
            *counts
                .entry((instance.value.rev.to_string(), instance.value.state))
                .or_default() += 1;
        }
    }
    counts
}

async fn run_case(settings: &Settings, registry: &'static str, logs: &std::path::Path) -> Case {
    let local = LocalRegistry::start_with(LocalRegistryOptions {
        server: visor_testkit::bench::server(registry),
        ..LocalRegistryOptions::default()
    })
    .await
    .expect("start the registry (is etcd-server installed? bash .ci/setup)");
    let registry_pid = registry_pid(local.data_dir());
    let visor = Visor::connect(&RegistryConfig::new([local.endpoint()]))
        .await
        .expect("connect to the registry");
    let n = settings.instances;
    let capacity =
        (n + settings.surge).div_ceil(u32::try_from(settings.hosts).expect("hosts fit")) + 1;
    let (_hosts_lease, hosts) =
        visor_testkit::bench::register_hosts(&visor, settings.hosts, capacity).await;
    let log = logs.join(format!("controller-{registry}.log"));
    let controller = LoggedController::start(
        &local.endpoint(),
        "bench",
        &["--lease-ttl", "10s", "--renew-deadline", "6s"],
        &log,
    );
    controller.wait_leading().await;
    let mut agents = JoinSet::new();
    for host in hosts {
        agents.spawn(agent(visor.clone(), host));
    }

    apply(&visor, &spec("v1", n, settings.surge)).await;
    let deployed = Instant::now();
    until(settings.timeout, "v1 is deployed", &log, || async {
        census(&visor).await
            == BTreeMap::from([(("v1".to_owned(), InstanceState::Running), n as usize)])
            && visor
                .rollout_status(APP)
                .await
                .is_ok_and(|s| s.value.phase == RolloutPhase::Complete)
    })
    .await;
    println!(
        "{registry}: {n} v1 instances deployed on {} hosts in {:.1} s",
        settings.hosts,
        deployed.elapsed().as_secs_f64()
    );

    let raw = visor.registry().etcd();
    let from = current_revision(&raw).await;
    let mut states = BTreeMap::new();
    for instance in visor
        .instances(&Default::default())
        .await
        .expect("list instances")
        .items
    {
        states.insert(instance.key.into_bytes(), instance.value.state);
    }
    let recorder = tokio::spawn(record(visor.clone(), from + 1, states));
    let (controller_cpu, registry_cpu) = (cpu_seconds(controller.pid()), cpu_seconds(registry_pid));
    let started = Instant::now();
    apply(&visor, &spec("v2", n, settings.surge)).await;
    let recording = tokio::time::timeout(settings.timeout, recorder)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "timed out after {:?} waiting until the rollout is complete; the controller's log is {}",
                settings.timeout,
                log.display()
            )
        })
        .expect("the recorder");
    let rollout = recording.completed - started;
    let controller_cpu = cpu_seconds(controller.pid()) - controller_cpu;
    let registry_cpu = cpu_seconds(registry_pid) - registry_cpu;
    agents.abort_all();
    assert_eq!(
        census(&visor).await,
        BTreeMap::from([(("v2".to_owned(), InstanceState::Running), n as usize)]),
        "the rollout ends with exactly {n} v2 instances running and nothing else active"
    );
    assert!(
        recording.lowest_ready >= n as usize,
        "ready fell to {}",
        recording.lowest_ready
    );
    assert!(
        recording.highest_total <= (n + settings.surge) as usize,
        "instances rose to {}",
        recording.highest_total
    );

    let root = visor.registry().keys().root();
    let raw_serial = replay(&raw, root, &recording.revisions, 1).await;
    let raw_parallel = replay(&raw, root, &recording.revisions, REPLAY_IN_FLIGHT).await;
    let writes = recording.revisions.iter().map(Vec::len).sum();
    Case {
        registry,
        rollout,
        raw_serial,
        raw_parallel,
        revisions: recording.revisions.len(),
        writes,
        lowest_ready: recording.lowest_ready,
        highest_total: recording.highest_total,
        controller_cpu,
        registry_cpu,
        leadership_lost: controller.leadership_losses(),
    }
}

#[tokio::main]
async fn main() {
    let settings = Settings::from_env();
    let logs = tempfile::Builder::new()
        .prefix("visor-bench-rollout-")
        .tempdir()
        .expect("create a directory for the controller logs")
        .keep();
    println!(
        "rollout of {} instances over {} hosts, max_surge {}, max_unavailable 0; logs in {}",
        settings.instances,
        settings.hosts,
        settings.surge,
        logs.display()
    );
    let mut cases = Vec::new();
    for registry in &settings.registries {
        cases.push(run_case(&settings, registry, &logs).await);
    }
    println!();
    println!(
        "| registry | rollout s | raw serial s | raw {REPLAY_IN_FLIGHT} in flight s | rollout ÷ raw serial | rollout ÷ raw {REPLAY_IN_FLIGHT} in flight | revisions | writes | lowest ready | highest total | controller CPU s | registry CPU s | leadership lost |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for case in &cases {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {} | {} | {} | {} | {:.2} | {:.2} | {} |",
            case.registry,
            case.rollout.as_secs_f64(),
            case.raw_serial.as_secs_f64(),
            case.raw_parallel.as_secs_f64(),
            case.rollout.as_secs_f64() / case.raw_serial.as_secs_f64(),
            case.rollout.as_secs_f64() / case.raw_parallel.as_secs_f64(),
            case.revisions,
            case.writes,
            case.lowest_ready,
            case.highest_total,
            case.controller_cpu,
            case.registry_cpu,
            case.leadership_lost,
        );
    }
}
