//! Relation hooks at scale: a relation between N and N running units, side by
//! side with raw etcd against one real etcd in the same run.
//!
//! `cargo bench --bench relations` starts a fresh etcd ([`LocalRegistry`]) and the
//! real `visor controller` binary (`--lease-ttl 10s --renew-deadline 6s`) as
//! a child, deploys two apps `web` and `db` of their own stacks on
//! [`HOSTS_PER_APP`] hosts each, scales each to N (`VISOR_BENCH_UNITS`,
//! default 100) and runs every unit, as the hosts' agents would. Then:
//!
//! 1. **Raw etcd**: the same hook life cycles under `/bench` (a root as long
//!    as `/visor`, with the same unit ids and JSON values of the same size),
//!    in lockstep rounds: each round one "controller" hands every unit its
//!    next hook in fenced create-if-absent transactions of up to 127 puts
//!    (as the controller batches them), then one worker per host acknowledges
//!    its units' hooks one at a time, each in one transaction that compares
//!    the hook's and the state's mod revisions, deletes the hook and writes
//!    the grown state. The copy is deleted, compacted and defragmented away
//!    afterwards, so the Visor phase meets the etcd the raw phase met.
//! 2. **Visor**: one agent per host, each watching the hook keys of its own
//!    units (one watch per unit on one watch stream) and acknowledging every
//!    hook created there with [`Visor::complete_hook`], one at a time. Timed
//!    from `add_relation` until every unit's acknowledged state holds all N
//!    remote units (4N² hooks: a joined and a changed per unit and remote).
//!
//! The run is checked, and fails loudly if it is wrong: no acknowledgement
//! refused, none leaving the state as it was (a `changed` handed twice),
//! exactly 4N² acknowledged, none outstanding once the controller is quiet,
//! and every unit's stored state exactly the other side's units at settings
//! version 0. `visor_hooks_handed_total` is reported next to the
//! acknowledgements (a difference is reported, not fatal), with the relation
//! loop's reconcile count and mean time, and the CPU time other processes
//! took meanwhile (non-zero: the figures were disturbed).
//!
//! Every wait is bounded (`VISOR_BENCH_TIMEOUT` seconds, default 600) and
//! fails with a message naming what did not happen and where the controller's
//! log is. The controller child is killed on drop; the agents are aborted
//! when the run ends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use etcd_client::{
    Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchOptions, WatchStream,
};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use visor::Visor;
use visor::model::{App, HookInfo, Host, InstanceState, Limits, ProcType, RelationState, Revision};
use visor::registry::{
    EndpointSpec, HostRegistration, InstanceFilter, Keys, LocalRegistry, RegistryConfig,
};

use visor_testkit::controller::LoggedController;
use visor_testkit::fixtures::name;
use visor_testkit::procfs::{
    cpu_seconds, machine_busy_seconds, memory_kib, registry_pid, wait_quiet,
};
use visor_testkit::raw::{
    FenceStandIn, bounded, count_keys, current_revision, delete_prefix, wait_leader_renewed,
};

/// The relation between the two apps.
const RELATION: &str = "webdb";
/// The two sides: (app, proc type). Each app has a stack and hosts of its own.
const SIDES: [(&str, &str); 2] = [("web", "http"), ("db", "sql")];
/// Root of the raw keys: as long as `/visor`, so raw keys are as long as Visor's.
const RAW_ROOT: &str = "/bench";
/// Hosts per app; one agent per host acknowledges its units' hooks.
const HOSTS_PER_APP: usize = 10;
/// Operations per controller transaction: etcd's default `--max-txn-ops`
/// (128) less one for the leader fence (`OPS_PER_TXN` in
/// `src/registry/api/relations.rs`).
const OPS_PER_TXN: usize = 127;
/// How long a host registration lives without renewal.
const HOST_TTL: Duration = Duration::from_secs(30);
/// Concurrent claim+start requests while bringing the units up.
const START_CONCURRENCY: usize = 20;
/// How often a long wait reports how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// The controller's `--lease-ttl` and `--renew-deadline`.
const LEASE: (&str, &str) = ("10s", "6s");

struct Settings {
    /// Units per side.
    units: usize,
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
        Self {
            units: number("VISOR_BENCH_UNITS", 100),
            timeout: Duration::from_secs(number("VISOR_BENCH_TIMEOUT", 600) as u64),
        }
    }

    /// Hooks until quiet: a joined and a changed per unit and remote unit.
    fn expected_hooks(&self) -> usize {
        2 * 2 * self.units * self.units
    }
}

// ---------------------------------------------------------------------------
// The deployment: two apps' units running on hosts of their own.

/// A running unit and the host running it.
#[derive(Debug, Clone)]
struct RunningUnit {
    id: String,
    host: String,
    /// Index into [`SIDES`].
    side: usize,
}

struct Deployment {
    /// Every unit, by id.
    units: Vec<RunningUnit>,
    /// Kept alive for the whole run: a host that expires takes its units out.
    _hosts: Vec<HostRegistration>,
}

impl Deployment {
    /// The units of each host, hosts and units in name order.
    fn by_host(&self) -> Vec<Vec<&RunningUnit>> {
        let mut hosts: BTreeMap<&str, Vec<&RunningUnit>> = BTreeMap::new();
        for unit in &self.units {
            hosts.entry(&unit.host).or_default().push(unit);
        }
        hosts.into_values().collect()
    }

    /// The remote units of `unit`: every unit of the other side, in id order.
    fn remotes(&self, unit: &RunningUnit) -> Vec<String> {
        self.units
            .iter()
            .filter(|u| u.side != unit.side)
            .map(|u| u.id.clone())
            .collect()
    }
}

async fn register_side(visor: &Visor, side: usize, capacity: u32) -> Vec<HostRegistration> {
    let (app, proc) = SIDES[side];
    let stack = name(&format!("{app}-stack"));
    let spec = App {
        repo_url: format!("https://example.com/{app}.git"),
        stack: stack.clone(),
        deploy_type: "bench".into(),
        created_at: Utc::now(),
    };
    visor.register_app(app, spec).await.expect("register app");
    let rev = Revision {
        archive_url: format!("https://example.com/{app}-v1.tgz"),
        created_at: Utc::now(),
    };
    visor
        .register_rev(app, "v1", rev)
        .await
        .expect("register rev");
    let proc_type = ProcType {
        command: format!("./bin/{proc}"),
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
        .register_proc(app, proc, proc_type)
        .await
        .expect("register proc");
    let mut hosts = Vec::new();
    for i in 0..HOSTS_PER_APP {
        let host = Host {
            addr: format!("10.{side}.0.{i}:4000"),
            capacity,
            labels: BTreeMap::new(),
            stacks: vec![stack.clone()],
            registered_at: Utc::now(),
            draining: false,
            admin_url: None,
            boot_id: None,
            incarnation: 0,
        };
        let registration = bounded(
            "register a host",
            visor.register_host(&format!("{app}-host-{i:02}"), host, HOST_TTL),
        )
        .await
        .expect("register a host");
        hosts.push(registration);
    }
    hosts
}

/// Deploys both sides, scales each to `settings.units` and runs every unit
/// the controller places, as the hosts' agents would.
async fn deploy(visor: &Visor, settings: &Settings, controller: &LoggedController) -> Deployment {
    let per_host = settings.units.div_ceil(HOSTS_PER_APP);
    let capacity = (2 * per_host).max(20) as u32;
    let mut hosts = Vec::new();
    for (side, (app, proc)) in SIDES.into_iter().enumerate() {
        hosts.extend(register_side(visor, side, capacity).await);
        visor
            .set_scale(app, "v1", proc, settings.units as u32)
            .await
            .expect("set the scale factor");
    }
    let started = Instant::now();
    let placed = loop {
        let listing = bounded(
            "list instances",
            visor.instances(&InstanceFilter::default()),
        )
        .await
        .expect("list instances");
        let placed: Vec<RunningUnit> = listing
            .items
            .iter()
            .filter(|i| i.value.state == InstanceState::Pending)
            .filter_map(|i| {
                Some(RunningUnit {
                    id: i.name().to_owned(),
                    host: i.value.host.as_ref()?.to_string(),
                    side: SIDES
                        .iter()
                        .position(|(app, _)| *app == i.value.app.as_str())?,
                })
            })
            .collect();
        if placed.len() == SIDES.len() * settings.units {
            break placed;
        }
        assert!(
            started.elapsed() < settings.timeout,
            "the controller did not place {} units on each side within {:?} ({} placed); see {}",
            settings.units,
            settings.timeout,
            placed.len(),
            controller.log().display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    futures::stream::iter(&placed)
        .map(|unit| async move {
            let what = format!("claim and start {}", unit.id);
            bounded(&what, async {
                visor.claim_instance(&unit.id, &unit.host).await?;
                visor.start_instance(&unit.id, &unit.host, Some(8080)).await
            })
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        })
        .buffer_unordered(START_CONCURRENCY)
        .collect::<()>()
        .await;
    let mut units = placed;
    units.sort_by(|a, b| a.id.cmp(&b.id));
    Deployment {
        units,
        _hosts: hosts,
    }
}

// ---------------------------------------------------------------------------
// The raw etcd baseline.

/// One unit's hook life cycle as raw etcd keys and values.
struct RawUnit {
    hook_key: String,
    state_key: String,
    remotes: Vec<String>,
    state: RelationState,
    /// Mod revision of the outstanding hook and of the stored state.
    hook_revision: i64,
    state_revision: i64,
}

impl RawUnit {
    /// The hook handed in `round`: joined, then changed, for each remote in turn.
    fn hook(&self, round: usize) -> HookInfo {
        let remote = self.remotes[round / 2].as_str();
        match round % 2 {
            0 => HookInfo::joined(RELATION, remote, 0),
            _ => HookInfo::changed(RELATION, remote, 0),
        }
    }
}

/// The raw life cycles, grouped by host (one worker each).
fn raw_units(deployment: &Deployment) -> Vec<Vec<RawUnit>> {
    let keys = Keys::new(RAW_ROOT).expect("a valid root");
    let relation = name(RELATION);
    deployment
        .by_host()
        .into_iter()
        .map(|units| {
            units
                .into_iter()
                .map(|unit| {
                    let id = name(&unit.id);
                    RawUnit {
                        hook_key: keys.hook(&id, &relation),
                        state_key: keys.relation_state(&relation, &id),
                        remotes: deployment.remotes(unit),
                        state: RelationState::new(RELATION),
                        hook_revision: 0,
                        state_revision: 0,
                    }
                })
                .collect()
        })
        .collect()
}

/// Hands every unit the hook of `round`, in unit id order, in fenced
/// create-if-absent transactions of at most [`OPS_PER_TXN`] puts; the first
/// round creates each unit's empty state with its hook, as the controller does.
async fn raw_hand_out(
    raw: &Client,
    hosts: &mut [Vec<RawUnit>],
    round: usize,
    fence: &FenceStandIn,
) {
    let mut order: Vec<&mut RawUnit> = hosts.iter_mut().flatten().collect();
    order.sort_by(|a, b| a.hook_key.cmp(&b.hook_key));
    let per_unit = if round == 0 { 2 } else { 1 };
    let mut kv = raw.kv_client();
    for batch in order.chunks_mut(OPS_PER_TXN / per_unit) {
        let (mut compares, mut puts, mut diagnose) = (Vec::new(), Vec::new(), Vec::new());
        for unit in batch.iter() {
            let hook = serde_json::to_vec(&unit.hook(round)).expect("hooks serialize");
            let mut writes = vec![(unit.hook_key.as_str(), hook)];
            if round == 0 {
                let state = serde_json::to_vec(&unit.state).expect("states serialize");
                writes.push((unit.state_key.as_str(), state));
            }
            for (key, value) in writes {
                compares.push(Compare::create_revision(key, CompareOp::Equal, 0));
                puts.push(TxnOp::put(key, value, None));
                diagnose.push(TxnOp::get(key, None));
            }
        }
        let (guard, read) = fence.guard();
        compares.push(guard);
        diagnose.push(read);
        let txn = Txn::new().when(compares).and_then(puts).or_else(diagnose);
        let response = bounded("a raw hand-out transaction", kv.txn(txn))
            .await
            .expect("raw hand-out transaction");
        assert!(response.succeeded(), "a raw hand-out's compares failed");
        let revision = response.header().map_or(0, |h| h.revision());
        for unit in batch.iter_mut() {
            unit.hook_revision = revision;
            if round == 0 {
                unit.state_revision = revision;
            }
        }
    }
}

/// One worker: acknowledges the hook of `round` of each of its units, one at
/// a time, as `complete_hook`'s transaction does.
async fn raw_acknowledge(raw: Client, units: &mut [RawUnit], round: usize) {
    let mut kv = raw.kv_client();
    for unit in units {
        let hook = unit.hook(round);
        unit.state
            .apply(&hook)
            .expect("raw hooks follow each other");
        let state = serde_json::to_vec(&unit.state).expect("states serialize");
        let (hook_key, state_key) = (unit.hook_key.as_str(), unit.state_key.as_str());
        let txn = Txn::new()
            .when([
                Compare::mod_revision(state_key, CompareOp::Equal, unit.state_revision),
                Compare::mod_revision(hook_key, CompareOp::Equal, unit.hook_revision),
            ])
            .and_then([
                TxnOp::put(
                    state_key,
                    state,
                    Some(PutOptions::new().with_ignore_lease()),
                ),
                TxnOp::get(state_key, None),
                TxnOp::delete(hook_key, None),
            ])
            .or_else([TxnOp::get(state_key, None), TxnOp::get(hook_key, None)]);
        let response = bounded("a raw acknowledgement", kv.txn(txn))
            .await
            .expect("raw acknowledgement");
        assert!(
            response.succeeded(),
            "a raw acknowledgement's compares failed"
        );
        unit.state_revision = response.header().map_or(0, |h| h.revision());
    }
}

/// Every unit's full life cycle in lockstep rounds; returns the time it took.
async fn raw_lifecycles(raw: &Client, deployment: &Deployment, fence: &FenceStandIn) -> Duration {
    let mut hosts = raw_units(deployment);
    let rounds = 2 * hosts
        .iter()
        .flatten()
        .map(|u| u.remotes.len())
        .max()
        .unwrap_or(0);
    let started = Instant::now();
    for round in 0..rounds {
        raw_hand_out(raw, &mut hosts, round, fence).await;
        futures::future::join_all(
            hosts
                .iter_mut()
                .map(|units| raw_acknowledge(raw.clone(), units, round)),
        )
        .await;
    }
    started.elapsed()
}

// ---------------------------------------------------------------------------
// Visor: agents acknowledging hooks through the library.

/// What the agents achieved, shared with the run.
#[derive(Default)]
struct Progress {
    acknowledged: AtomicUsize,
    /// Units whose acknowledged state holds every remote unit.
    complete: AtomicUsize,
    first_hook: OnceLock<Instant>,
    /// When the last unit became complete.
    all_complete: OnceLock<Instant>,
    /// Acknowledgements refused or failed: the run is wrong.
    failures: Mutex<Vec<String>>,
}

impl Progress {
    fn fail(&self, failure: String) {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(failure);
    }

    fn failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// One agent's watch stream: a watch of each of its units' hook prefixes,
/// from revision `from`, every one created before it returns.
async fn agent_watch(raw: &Client, prefixes: &[String], from: i64) -> WatchStream {
    let options = || Some(WatchOptions::new().with_prefix().with_start_revision(from));
    let mut client = raw.watch_client();
    let mut stream = bounded(
        "open a watch stream",
        client.watch(prefixes[0].as_str(), options()),
    )
    .await
    .expect("open a watch stream");
    for prefix in &prefixes[1..] {
        bounded("add a watch", stream.watch(prefix.as_str(), options()))
            .await
            .expect("add a watch");
    }
    let mut created = 0;
    while created < prefixes.len() {
        let response = bounded("a watch is created", stream.message())
            .await
            .expect("watch creation")
            .expect("the watch stream ended before its watches were created");
        assert!(response.created(), "a watch answered before it was created");
        created += 1;
    }
    stream
}

/// An agent: acknowledges each hook created under its units' prefixes, one
/// at a time in the order they were seen, until aborted.
async fn agent(
    visor: Visor,
    mut stream: WatchStream,
    all_units: usize,
    remotes: usize,
    progress: Arc<Progress>,
) {
    let (seen, mut hooks) = mpsc::unbounded_channel::<(String, String)>();
    let watch = {
        let progress = progress.clone();
        async move {
            loop {
                let response = match stream.message().await {
                    Ok(Some(response)) if !response.canceled() => response,
                    ended => {
                        progress.fail(format!("an agent's watch ended: {ended:?}"));
                        return;
                    }
                };
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    // A hook is created once per hand-out; deletions are our own.
                    if event.event_type() != EventType::Put || kv.version() != 1 {
                        continue;
                    }
                    progress.first_hook.get_or_init(Instant::now);
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    let mut parts = key.rsplit('/');
                    let (Some(relation), Some(unit)) = (parts.next(), parts.next()) else {
                        continue;
                    };
                    // The receiving half lives as long as this sender.
                    let _ = seen.send((unit.to_owned(), relation.to_owned()));
                }
            }
        }
    };
    let acknowledge = async move {
        let mut complete = BTreeSet::new();
        let mut last: BTreeMap<String, RelationState> = BTreeMap::new();
        while let Some((unit, relation)) = hooks.recv().await {
            match visor.complete_hook(&unit, &relation).await {
                Ok(state) => {
                    progress.acknowledged.fetch_add(1, Ordering::SeqCst);
                    // Every hook of this relation changes the state (settings
                    // stay at version 0): an unchanged one was a repeated changed.
                    if last.get(&unit) == Some(&state) {
                        progress.fail(format!(
                            "{unit} was handed a hook it had already acknowledged \
                             (a repeated changed); its state stayed at {} members",
                            state.members.len()
                        ));
                    }
                    let full = state.members.len() == remotes && state.changed_pending.is_none();
                    if full && complete.insert(unit.clone()) {
                        let done = progress.complete.fetch_add(1, Ordering::SeqCst) + 1;
                        if done == all_units {
                            progress.all_complete.get_or_init(Instant::now);
                        }
                    }
                    last.insert(unit, state);
                }
                Err(error) => {
                    progress.fail(format!(
                        "acknowledging the hook of {unit} in {relation}: {error}"
                    ));
                }
            }
        }
    };
    futures::future::join(watch, acknowledge).await;
}

/// What the Visor phase measured.
struct VisorRun {
    first_hook: Duration,
    quiesced: Duration,
    controller_cpu: f64,
    etcd_cpu: f64,
    bench_cpu: f64,
    /// Busy CPU seconds of every other process on the machine.
    other_cpu: f64,
}

/// Starts the agents, adds the relation and waits until every unit's state
/// holds every remote unit. The agents keep running in `agents`.
async fn visor_phase(
    visor: &Visor,
    deployment: &Deployment,
    settings: &Settings,
    controller: &LoggedController,
    etcd_pid: u32,
    agents: &mut JoinSet<()>,
    progress: &Arc<Progress>,
) -> VisorRun {
    let raw = visor.registry().etcd();
    let from = current_revision(&raw).await + 1;
    for units in deployment.by_host() {
        let prefixes: Vec<String> = units
            .iter()
            .map(|u| visor.registry().keys().hooks(Some(&name(&u.id))))
            .collect();
        let stream = agent_watch(&raw, &prefixes, from).await;
        agents.spawn(agent(
            visor.clone(),
            stream,
            deployment.units.len(),
            settings.units,
            progress.clone(),
        ));
    }
    let endpoints: Vec<EndpointSpec> = SIDES
        .iter()
        .map(|(app, _)| app.parse().expect("valid endpoints"))
        .collect();
    let cpu = || {
        (
            cpu_seconds(controller.pid()),
            cpu_seconds(etcd_pid),
            cpu_seconds(std::process::id()),
            machine_busy_seconds(),
        )
    };
    let before = cpu();
    let started = Instant::now();
    visor
        .add_relation(RELATION, &endpoints)
        .await
        .expect("add the relation");
    let mut report = started + PROGRESS_EVERY;
    let done = loop {
        if let Some(done) = progress.all_complete.get() {
            break *done;
        }
        let acknowledged = progress.acknowledged.load(Ordering::SeqCst);
        let complete = progress.complete.load(Ordering::SeqCst);
        let failures = progress.failures();
        assert!(
            failures.is_empty(),
            "the agents met a wrong hook {:.3} s after add_relation, with {acknowledged} of {} \
             hooks acknowledged and {complete} units complete; see {}:\n{}",
            started.elapsed().as_secs_f64(),
            settings.expected_hooks(),
            controller.log().display(),
            failures.join("\n")
        );
        assert!(
            started.elapsed() < settings.timeout,
            "not every unit saw every remote unit within {:?}: {complete} of {} units \
             complete, {acknowledged} of {} hooks acknowledged; see {}",
            settings.timeout,
            deployment.units.len(),
            settings.expected_hooks(),
            controller.log().display()
        );
        if Instant::now() >= report {
            println!(
                "    {:>5.0} s: {acknowledged} hooks acknowledged, {complete} units complete",
                started.elapsed().as_secs_f64()
            );
            report += PROGRESS_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let after = cpu();
    VisorRun {
        first_hook: progress
            .first_hook
            .get()
            .map_or(Duration::ZERO, |t| t.duration_since(started)),
        quiesced: done.duration_since(started),
        controller_cpu: after.0 - before.0,
        etcd_cpu: after.1 - before.1,
        bench_cpu: after.2 - before.2,
        other_cpu: (after.3 - before.3)
            - (after.0 - before.0)
            - (after.1 - before.1)
            - (after.2 - before.2),
    }
}

/// Why the final registry is wrong, if it is: every unit's state must hold
/// exactly the other side's units at version 0, and no hook be outstanding.
async fn registry_mismatches(visor: &Visor, deployment: &Deployment) -> Vec<String> {
    let raw = visor.registry().etcd();
    let mut mismatches = Vec::new();
    let outstanding = count_keys(&raw, &visor.registry().keys().hooks(None)).await;
    if outstanding != 0 {
        mismatches.push(format!("{outstanding} hooks outstanding once quiet"));
    }
    let states = futures::stream::iter(&deployment.units)
        .map(|unit| async move {
            let state = bounded(
                "read a relation state",
                visor.relation_state(RELATION, &unit.id),
            )
            .await;
            (unit, state)
        })
        .buffer_unordered(START_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    for (unit, state) in states {
        let expected: BTreeMap<String, i64> = deployment
            .remotes(unit)
            .into_iter()
            .map(|r| (r, 0))
            .collect();
        match state {
            Ok(state)
                if state.value.members == expected && state.value.changed_pending.is_none() => {}
            Ok(state) => mismatches.push(format!(
                "{} holds {} members (changed pending {:?}), expected the {} units of {}",
                unit.id,
                state.value.members.len(),
                state.value.changed_pending,
                expected.len(),
                SIDES[1 - unit.side].0
            )),
            Err(error) => mismatches.push(format!("{}: no relation state: {error}", unit.id)),
        }
    }
    mismatches
}

// ---------------------------------------------------------------------------
// The run.

/// `controller_runtime_reconcile_time_seconds{controller="relation"}` count
/// and sum, and the relation loop's errors.
fn relation_reconciles(controller: &LoggedController) -> (f64, f64, f64) {
    let name = "controller_runtime_reconcile_time_seconds";
    let labels = "controller=\"relation\"";
    let read = |metric: &str| controller.metric(metric, labels).unwrap_or(0.0);
    (
        read(&format!("{name}_count")),
        read(&format!("{name}_sum")),
        read("controller_runtime_reconcile_errors_total"),
    )
}

#[tokio::main]
async fn main() {
    let settings = Settings::from_env();
    let logs = tempfile::Builder::new()
        .prefix("visor-bench-relations-")
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
    let expected = settings.expected_hooks();
    println!(
        "relations benchmark: {} × {} units on {} hosts each, {expected} hooks expected; \
         etcd pid {etcd_pid}, controller pid {}, log {}",
        settings.units,
        settings.units,
        HOSTS_PER_APP,
        controller.pid(),
        log.display()
    );

    let deployment = deploy(&visor, &settings, &controller).await;
    let quiet = |limit| {
        wait_quiet(
            controller.pid(),
            Instant::now(),
            Duration::from_secs(1),
            0.02,
            limit,
        )
    };
    assert!(
        quiet(settings.timeout).await.is_some(),
        "the controller did not go quiet within {:?} of the units starting; see {}",
        settings.timeout,
        controller.log().display()
    );
    println!("  {} units running", deployment.units.len());

    // Raw first, while the controller has nothing to do.
    let fence_key = visor.registry().keys().app(&name(SIDES[0].0));
    let fence = FenceStandIn::existing(&raw, fence_key).await;
    let ours =
        || cpu_seconds(etcd_pid) + cpu_seconds(controller.pid()) + cpu_seconds(std::process::id());
    let (etcd_cpu, ours_cpu, busy) = (cpu_seconds(etcd_pid), ours(), machine_busy_seconds());
    let raw_time = raw_lifecycles(&raw, &deployment, &fence).await;
    let raw_etcd_cpu = cpu_seconds(etcd_pid) - etcd_cpu;
    let raw_other_cpu = (machine_busy_seconds() - busy) - (ours() - ours_cpu);
    println!("  raw hook life cycles:  {:>8.3} s", secs(raw_time));
    delete_prefix(&raw, &format!("{RAW_ROOT}/")).await;
    wait_leader_renewed(&raw, &visor.registry().keys().leader()).await;

    let handed = || {
        controller
            .metric("visor_hooks_handed_total", "")
            .unwrap_or(0.0)
    };
    let (handed_before, reconciles_before) = (handed(), relation_reconciles(&controller));
    let progress = Arc::new(Progress::default());
    let mut agents = JoinSet::new();
    let run = visor_phase(
        &visor,
        &deployment,
        &settings,
        &controller,
        etcd_pid,
        &mut agents,
        &progress,
    )
    .await;
    println!(
        "  visor add_relation → quiet: {:>8.3} s (first hook after {:.3} s)",
        secs(run.quiesced),
        secs(run.first_hook)
    );
    let quiet_after = quiet(settings.timeout).await;
    let (memory, _) = memory_kib(controller.pid());
    let handed = handed() - handed_before;
    let reconciles = relation_reconciles(&controller);
    let mut mismatches = registry_mismatches(&visor, &deployment).await;
    agents.shutdown().await;
    let acknowledged = progress.acknowledged.load(Ordering::SeqCst);
    if acknowledged != expected {
        mismatches.push(format!(
            "{acknowledged} hooks acknowledged, expected {expected}"
        ));
    }
    mismatches.extend(progress.failures());
    if quiet_after.is_none() {
        mismatches.push(format!(
            "the controller did not go quiet within {:?} after the last hook",
            settings.timeout
        ));
    }

    let (count, sum, errors) = (
        reconciles.0 - reconciles_before.0,
        reconciles.1 - reconciles_before.1,
        reconciles.2 - reconciles_before.2,
    );
    let rate = |d: Duration| expected as f64 / secs(d);
    println!();
    println!(
        "Relation between {n} and {n} units: {expected} hooks handed and acknowledged, \
         from add_relation until every unit holds every remote, vs raw etcd transactions",
        n = settings.units
    );
    println!(
        "| units per side | hooks | raw s | raw hooks/s | Visor s | Visor hooks/s | first hook s | Visor ÷ raw |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {expected} | {:.3} | {:.0} | {:.3} | {:.0} | {:.3} | {:.2} |",
        settings.units,
        secs(raw_time),
        rate(raw_time),
        secs(run.quiesced),
        rate(run.quiesced),
        secs(run.first_hook),
        secs(run.quiesced) / secs(raw_time),
    );
    println!();
    println!(
        "CPU seconds during each phase (other processes: the machine's busy time less etcd, \
         the controller and this benchmark), controller memory after, relation reconciles"
    );
    println!(
        "| etcd CPU s, raw | etcd CPU s, Visor | controller CPU s | agents (bench) CPU s | other processes CPU s, raw / Visor | controller VmRSS MiB | reconciles | mean reconcile ms | reconcile errors | hooks handed (metric) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {raw_etcd_cpu:.1} | {:.1} | {:.1} | {:.1} | {raw_other_cpu:.1} / {:.1} | {:.0} | {count:.0} | {:.1} | {errors:.0} | {handed:.0} |",
        run.etcd_cpu,
        run.controller_cpu,
        run.bench_cpu,
        run.other_cpu,
        memory as f64 / 1024.0,
        if count > 0.0 { sum / count * 1e3 } else { 0.0 },
    );
    if handed != acknowledged as f64 {
        println!(
            "\nMISMATCH: visor_hooks_handed_total grew by {handed}, but {acknowledged} hooks were acknowledged"
        );
    }
    let complaints = controller.complaints();
    if !complaints.is_empty() {
        println!(
            "\nthe controller logged {} warnings or errors, first ones:",
            complaints.len()
        );
        for line in complaints.iter().take(5) {
            println!("  {line}");
        }
    }
    assert!(
        mismatches.is_empty(),
        "the relation did not end as it should; see {}:\n{}",
        controller.log().display(),
        mismatches.join("\n")
    );
}
