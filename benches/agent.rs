//! The host agent at work on one host, against raw baselines in the same run.
//!
//! `cargo bench --bench agent` runs a real etcd and a `visor agent` child
//! (no controller: the benchmark writes instances and tickets as the
//! controller would) and measures:
//!
//! 1. **ticket → running**: N = 200 starts (`VISOR_BENCH_STARTS`), one at a
//!    time, each timed from the start ticket's creation to the instance's
//!    `instance-started` event on a watch; alternated with a raw spawn of the
//!    same command (`sleep 1000`, in a session of its own), timed to its
//!    exec. Goal: p50 ≤ 10 ms, p99 ≤ 50 ms.
//! 2. **1,000 at once** (`VISOR_BENCH_BULK`): 1,000 instances and tickets
//!    written, timed from the first write to the last `instance-started`,
//!    against the same writes alone (instances and tickets created, nothing
//!    running them) and 1,000 raw spawns. Goal: ≤ 10 s.
//! 3. **restart with 1,000 running**: the agent SIGKILLed and started on
//!    the same data dir, timed to `/readyz` (registered and re-attached to
//!    every instance). Goal: ≤ 2 s, no restart counted, no process replaced.
//! 4. **memory**: the agent's RSS with 1,000 instances (and one supervisor's).
//!
//! Every process started is killed when the run ends: the agent's with the
//! agent's handle, the raw ones as soon as they are timed.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use visor::model::{InstanceState, TicketOp};
use visor::registry::{EventKind, EventStream, InstanceFilter};
use visor_testkit::agent::AgentProcess;
use visor_testkit::fixtures::{app, instance_spec, portless_proc_type, revision, ticket_spec};
use visor_testkit::stats::percentile;
use visor_testkit::{TestRegistry, eventually, procfs, within};

/// Bound on the whole run.
const LIMIT: Duration = Duration::from_secs(900);
const WARM_UP: usize = 10;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    within(LIMIT, "the agent benchmark", run()).await;
}

async fn run() {
    let starts = count("VISOR_BENCH_STARTS", 200);
    let bulk = count("VISOR_BENCH_BULK", 1000);
    let t = TestRegistry::start().await;
    let capacity = (bulk + starts + WARM_UP + 10).to_string();
    let mut agent =
        AgentProcess::start_with(&t, "h1", &["--capacity", &capacity, "--concurrency", "64"]);
    eventually(Duration::from_secs(30), "the agent registers", || async {
        agent.ready().then_some(())
    })
    .await;
    let rev = tempfile::tempdir().expect("a revision dir");
    let visor = &t.visor;
    visor
        .register_app("bench", app("https://example.com/bench.git"))
        .await
        .expect("app");
    let url = format!("file://{}", rev.path().display());
    visor
        .register_rev("bench", "v1", revision(&url))
        .await
        .expect("rev");
    visor
        .register_proc("bench", "web", portless_proc_type("sleep 1000"))
        .await
        .expect("proc");
    let mut raw = Vec::new();

    // 1. One at a time.
    let mut events = visor.watch_events(0).await.expect("events");
    let (mut agent_samples, mut raw_samples) = (Vec::new(), Vec::new());
    for i in 0..WARM_UP + starts {
        let took = start_one(&t, &mut events).await;
        let spawned = raw_spawn(&mut raw);
        reap(&mut raw);
        if i >= WARM_UP {
            agent_samples.push(took);
            raw_samples.push(spawned);
        }
    }
    stop_all(&t, &mut events).await;

    // 2. A thousand at once, against the same writes alone.
    let writes = {
        let began = Instant::now();
        let ids = write_starts(&t, "idle", bulk).await;
        let took = began.elapsed();
        for id in ids {
            let instance = visor.instance(&id).await.expect("instance");
            visor.unregister_instance(&instance).await.expect("remove");
        }
        took
    };
    let raw_bulk = {
        let began = Instant::now();
        for _ in 0..bulk {
            raw_spawn(&mut raw);
        }
        began.elapsed()
    };
    reap(&mut raw);
    let began = Instant::now();
    let ids: BTreeSet<String> = write_starts(&t, "h1", bulk).await.into_iter().collect();
    let mut pending = ids.clone();
    while !pending.is_empty() {
        let event = events.next().await.expect("an event").expect("no error");
        if let EventKind::InstanceStarted { id, .. } = event.kind {
            pending.remove(&id);
        }
    }
    let bulk_took = began.elapsed();

    // 4. Memory with a thousand.
    let (rss, _) = procfs::memory_kib(agent.pid());
    let shim = agent.supervisors()[0];
    let (shim_rss, _) = procfs::memory_kib(shim);
    let workloads: BTreeSet<u32> = agent.workloads().into_iter().collect();

    // 3. Restart with a thousand running.
    agent.kill();
    let began = Instant::now();
    agent.restart();
    eventually(
        Duration::from_secs(60),
        "the restarted agent is ready",
        || async { agent.ready().then_some(()) },
    )
    .await;
    let reattach = began.elapsed();
    let filter = InstanceFilter {
        host: Some("h1".into()),
        ..InstanceFilter::default()
    };
    let listed = visor.instances(&filter).await.expect("instances").items;
    let running = listed
        .iter()
        .filter(|i| ids.contains(i.name()) && i.value.state == InstanceState::Running)
        .count();
    let restarts: u32 = listed.iter().map(|i| i.value.restarts).sum();
    let same = agent.workloads().into_iter().collect::<BTreeSet<u32>>() == workloads;

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (a50, a99) = (
        percentile(&agent_samples, 50.0),
        percentile(&agent_samples, 99.0),
    );
    let (r50, r99) = (
        percentile(&raw_samples, 50.0),
        percentile(&raw_samples, 99.0),
    );
    println!(
        "ticket created -> instance running, {starts} starts, one at a time, alternating with a raw spawn"
    );
    println!("| path | p50 ms | p99 ms | p50 ÷ raw |");
    println!("|---|---:|---:|---:|");
    println!(
        "| raw spawn of `sleep 1000` | {:.2} | {:.2} | 1.0 |",
        ms(r50),
        ms(r99)
    );
    println!(
        "| ticket → running (visor agent) | {:.2} | {:.2} | {:.1} |",
        ms(a50),
        ms(a99),
        a50.as_secs_f64() / r50.as_secs_f64()
    );
    println!("goal: p50 ≤ 10 ms, p99 ≤ 50 ms");
    println!();
    println!("{bulk} instances on one host");
    println!("| what | s | ÷ writes alone |");
    println!("|---|---:|---:|");
    println!(
        "| the writes alone ({bulk} instances + tickets) | {:.2} | 1.0 |",
        writes.as_secs_f64()
    );
    println!(
        "| {bulk} raw spawns | {:.2} | {:.2} |",
        raw_bulk.as_secs_f64(),
        raw_bulk.as_secs_f64() / writes.as_secs_f64()
    );
    println!(
        "| written and running (visor agent) | {:.2} | {:.2} |",
        bulk_took.as_secs_f64(),
        bulk_took.as_secs_f64() / writes.as_secs_f64()
    );
    println!("goal: ≤ 10 s");
    println!();
    println!(
        "agent SIGKILLed with {bulk} running, restarted: ready (re-attached) in {:.2} s; {running} of {bulk} running, {restarts} restarts, same processes: {same}",
        reattach.as_secs_f64()
    );
    println!("goal: ≤ 2 s, no restart");
    println!();
    println!(
        "agent RSS with {bulk} instances: {:.1} MiB; one supervisor: {:.1} MiB",
        rss as f64 / 1024.0,
        shim_rss as f64 / 1024.0
    );
}

/// Writes one instance and its start ticket, as the controller does; the
/// time from the ticket's write to its `instance-started`.
async fn start_one(t: &TestRegistry, events: &mut EventStream) -> Duration {
    let instance = t
        .visor
        .create_instance(instance_spec("bench", "v1", "web", Some("h1")))
        .await
        .expect("instance");
    let id = instance.name().to_owned();
    let began = Instant::now();
    t.visor
        .create_ticket(
            "h1",
            ticket_spec(TicketOp::Start, &id, "bench", "v1", "web"),
        )
        .await
        .expect("ticket");
    loop {
        let event = events.next().await.expect("an event").expect("no error");
        if matches!(&event.kind, EventKind::InstanceStarted { id: started, .. } if *started == id) {
            return began.elapsed();
        }
    }
}

/// Writes `count` instances of host `host` and their start tickets.
async fn write_starts(t: &TestRegistry, host: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        let instance = t
            .visor
            .create_instance(instance_spec("bench", "v1", "web", Some(host)))
            .await
            .expect("instance");
        let id = instance.name().to_owned();
        t.visor
            .create_ticket(
                host,
                ticket_spec(TicketOp::Start, &id, "bench", "v1", "web"),
            )
            .await
            .expect("ticket");
        ids.push(id);
    }
    ids
}

/// Stops every running instance with stop tickets, and waits until each exited.
async fn stop_all(t: &TestRegistry, events: &mut EventStream) {
    let filter = InstanceFilter::default();
    let running: BTreeSet<String> = t
        .visor
        .instances(&filter)
        .await
        .expect("instances")
        .items
        .iter()
        .filter(|i| i.value.state == InstanceState::Running)
        .map(|i| i.name().to_owned())
        .collect();
    for id in &running {
        t.visor
            .create_ticket("h1", ticket_spec(TicketOp::Stop, id, "bench", "v1", "web"))
            .await
            .expect("stop ticket");
    }
    let mut pending = running;
    while !pending.is_empty() {
        let event = events.next().await.expect("an event").expect("no error");
        if let EventKind::InstanceExited { id } = event.kind {
            pending.remove(&id);
        }
    }
}

/// Spawns `sleep 1000` in a process group of its own, kept in `raw` (killed
/// and reaped by [`reap`]); the time until it was exec'd.
fn raw_spawn(raw: &mut Vec<Child>) -> Duration {
    use std::os::unix::process::CommandExt;
    let began = Instant::now();
    let child = Command::new("sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn sleep");
    let took = began.elapsed();
    raw.push(child);
    took
}

/// Kills and reaps every raw process.
fn reap(raw: &mut Vec<Child>) {
    for mut child in raw.drain(..) {
        let _ = child.kill();
        let _ = child.wait();
    }
}
