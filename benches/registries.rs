//! etcd and the embedded registry side by side, in one run, through the same
//! client: what the embedded registry costs or saves against the real thing.
//!
//! `cargo bench --bench registries` starts one of each (fresh data dirs, free
//! loopback ports) and measures, one registry after the other for each
//! figure, and for the latencies in turns, so both meet the machine (whose
//! disk's sync latency drifts over minutes) in the same state:
//!
//! 1. **sequential puts**: `VISOR_BENCH_PUTS` (default 2,000) puts, one at a
//!    time (each waits for its fsync);
//! 2. **64 concurrent clients**: 64 connections putting at once, 100 puts
//!    each, with the errors counted (goal: none);
//! 3. **126-put transactions**: 200 transactions of 126 puts, one at a time
//!    (the controller's batch);
//! 4. **put → watch**: 500 puts, each timed until its event arrives on a
//!    watch of the same registry, in 10 rounds that alternate between the
//!    registries (goal for the embedded one: p50 ≤ 1 ms); the same after
//!    both registries have been idle 200 ms before each put (200 puts on
//!    each, taking turns): the path from cold, as a controller at rest meets
//!    it;
//! 5. **lease expiry**: 20 leases of 1 s, each with a key, timed from the
//!    grant to the key's delete event: how late past the TTL it comes;
//! 6. **memory**: each server's RSS (now and peak) after all of it.
//!
//! `VISOR_BENCH_KEYS` (default 0) keys are written into each first, so the
//! figures can be taken on a registry of that size.
//!
//! Ratios are embedded ÷ etcd: above 1 for throughput, below 1 for latency
//! means the embedded registry is ahead.

use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, LeaseGrantOptions, PutOptions, Txn, TxnOp, WatchOptions};
use visor::registry::{LocalRegistry, LocalRegistryOptions, LocalServer};
use visor_testkit::cli::visor_binary;
use visor_testkit::procfs::{memory_kib, registry_pid};
use visor_testkit::stats::percentile;
use visor_testkit::within;

/// Bound on the whole run.
const LIMIT: Duration = Duration::from_secs(900);
const CLIENTS: usize = 64;
const PUTS_PER_CLIENT: usize = 100;
const TXNS: usize = 200;
const TXN_PUTS: usize = 126;
const WATCH_SAMPLES: usize = 500;
/// Rounds the put → watch samples are taken in, alternating between servers.
const WATCH_ROUNDS: usize = 10;
/// Puts before each round's samples, not counted.
const WATCH_WARM_UP: usize = 5;
const LEASES: usize = 20;
const IDLE_SAMPLES: usize = 200;
const IDLE_PAUSE: Duration = Duration::from_millis(200);
const VALUE: &str = "a value of about the size of an instance document, ..........................................................................................................";

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Server {
    name: &'static str,
    registry: LocalRegistry,
    client: Client,
}

async fn start(name: &'static str, server: LocalServer) -> Server {
    let registry = LocalRegistry::start_with(LocalRegistryOptions {
        server,
        ..LocalRegistryOptions::default()
    })
    .await
    .expect("start the registry (is etcd-server installed? bash .ci/setup)");
    let client = Client::connect([registry.endpoint()], None)
        .await
        .expect("connect");
    Server {
        name,
        registry,
        client,
    }
}

/// Writes `keys` keys in 126-put transactions, so the figures meet a
/// registry of that size.
async fn preload_keys(server: &Server, keys: usize) {
    let mut client = server.client.clone();
    for chunk in (0..keys).collect::<Vec<_>>().chunks(TXN_PUTS) {
        let puts: Vec<TxnOp> = chunk
            .iter()
            .map(|n| TxnOp::put(format!("pre/{n:08}"), VALUE, None))
            .collect();
        client
            .txn(Txn::new().and_then(puts))
            .await
            .expect("preload txn");
    }
}

async fn sequential_puts(server: &Server, puts: usize) -> Duration {
    let mut client = server.client.clone();
    let started = Instant::now();
    for n in 0..puts {
        client
            .put(format!("seq/{n:08}"), VALUE, None)
            .await
            .expect("put");
    }
    started.elapsed()
}

/// The time for every client's puts, and how many failed.
async fn concurrent_puts(server: &Server) -> (Duration, usize) {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(
            Client::connect([server.registry.endpoint()], None)
                .await
                .expect("connect a client"),
        );
    }
    let started = Instant::now();
    let failures = futures::future::join_all(clients.into_iter().enumerate().map(
        |(c, mut client)| async move {
            let mut failed = 0;
            for n in 0..PUTS_PER_CLIENT {
                if client
                    .put(format!("conc/{c:02}/{n:06}"), VALUE, None)
                    .await
                    .is_err()
                {
                    failed += 1;
                }
            }
            failed
        },
    ))
    .await;
    (started.elapsed(), failures.into_iter().sum())
}

async fn transactions(server: &Server) -> Duration {
    let mut client = server.client.clone();
    let started = Instant::now();
    for t in 0..TXNS {
        let puts: Vec<TxnOp> = (0..TXN_PUTS)
            .map(|n| TxnOp::put(format!("txn/{t:04}/{n:03}"), VALUE, None))
            .collect();
        client.txn(Txn::new().and_then(puts)).await.expect("txn");
    }
    started.elapsed()
}

/// Waits until an event on `key` arrives on `stream`.
async fn seen_on(stream: &mut etcd_client::WatchStream, key: &str) {
    loop {
        let response = stream.message().await.expect("watch").expect("a response");
        if response
            .events()
            .iter()
            .any(|event| event.kv().is_some_and(|kv| kv.key() == key.as_bytes()))
        {
            return;
        }
    }
}

/// Puts on one server, each timed until its event arrives on a watch of
/// the same server.
struct PutToWatch {
    client: Client,
    stream: etcd_client::WatchStream,
    prefix: &'static str,
    next: usize,
}

impl PutToWatch {
    async fn open(server: &Server, prefix: &'static str) -> Self {
        let mut watcher = server.client.clone();
        let stream = watcher
            .watch(prefix, Some(WatchOptions::new().with_prefix()))
            .await
            .expect("watch");
        Self {
            client: server.client.clone(),
            stream,
            prefix,
            next: 0,
        }
    }

    async fn time(&mut self) -> Duration {
        let key = format!("{}{:06}", self.prefix, self.next);
        self.next += 1;
        let started = Instant::now();
        self.client
            .put(key.as_str(), VALUE, None)
            .await
            .expect("put");
        seen_on(&mut self.stream, &key).await;
        started.elapsed()
    }
}

/// [`WATCH_SAMPLES`] puts on each server, back to back, in rounds that
/// alternate between the servers, so that both meet the machine (its disk
/// above all) in the same state over the run.
async fn put_to_watch(servers: [&Server; 2]) -> [Vec<Duration>; 2] {
    let mut probes = [
        PutToWatch::open(servers[0], "lat/").await,
        PutToWatch::open(servers[1], "lat/").await,
    ];
    let mut samples = [Vec::new(), Vec::new()];
    let per_round = WATCH_SAMPLES / WATCH_ROUNDS;
    for _ in 0..WATCH_ROUNDS {
        for (probe, samples) in probes.iter_mut().zip(&mut samples) {
            // The first ones of a round warm the connection and the server up.
            for _ in 0..WATCH_WARM_UP {
                probe.time().await;
            }
            for _ in 0..per_round {
                samples.push(probe.time().await);
            }
        }
    }
    samples
}

/// Puts after the servers have been idle for `pause`, each timed until its
/// event arrives on a watch: the path from cold (threads parked, caches and
/// disk cold), as a controller at rest meets it. The servers take turns,
/// each idle through the other's put too.
async fn put_to_watch_after_idle(
    servers: [&Server; 2],
    samples: usize,
    pause: Duration,
) -> [Vec<Duration>; 2] {
    let mut probes = [
        PutToWatch::open(servers[0], "idle/").await,
        PutToWatch::open(servers[1], "idle/").await,
    ];
    let mut timed = [Vec::new(), Vec::new()];
    for n in 0..samples {
        // Each goes first every other time.
        let order = if n % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            tokio::time::sleep(pause).await;
            timed[i].push(probes[i].time().await);
        }
    }
    timed
}

/// How long past its TTL of 1 s each lease's key was deleted.
async fn lease_lateness(server: &Server) -> Vec<Duration> {
    let mut client = server.client.clone();
    let mut watcher = server.client.clone();
    let mut stream = watcher
        .watch("exp/", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    let mut granted = Vec::new();
    for n in 0..LEASES {
        let at = Instant::now();
        let lease = client
            .lease_grant(1, Some(LeaseGrantOptions::new().with_id(50_000 + n as i64)))
            .await
            .expect("grant");
        client
            .put(
                format!("exp/{n:03}"),
                VALUE,
                Some(PutOptions::new().with_lease(lease.id())),
            )
            .await
            .expect("put");
        granted.push(at);
    }
    let mut lateness = vec![None; LEASES];
    while lateness.iter().any(Option::is_none) {
        let response = stream.message().await.expect("watch").expect("a response");
        for event in response.events() {
            if event.event_type() != EventType::Delete {
                continue;
            }
            let Some(n) = event.kv().and_then(|kv| {
                std::str::from_utf8(kv.key())
                    .ok()?
                    .strip_prefix("exp/")?
                    .parse::<usize>()
                    .ok()
            }) else {
                continue;
            };
            let late = granted[n].elapsed().saturating_sub(Duration::from_secs(1));
            lateness[n] = Some(late);
        }
    }
    lateness.into_iter().flatten().collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    within(LIMIT, "the registries benchmark", run()).await;
}

async fn run() {
    let puts = count("VISOR_BENCH_PUTS", 2000);
    let etcd = start("etcd", LocalServer::Etcd).await;
    let embedded = start(
        "embedded",
        LocalServer::Embedded {
            visor: visor_binary(),
        },
    )
    .await;
    let servers = [&etcd, &embedded];
    let preload = count("VISOR_BENCH_KEYS", 0);
    if preload > 0 {
        for server in servers {
            preload_keys(server, preload).await;
        }
        println!("{preload} keys written into each before the figures");
    }
    for server in servers {
        println!("{} at {}", server.name, server.registry.endpoint());
    }

    let mut rows: Vec<(String, [f64; 2], &str)> = Vec::new();
    let mut pair = [0.0; 2];
    for (i, server) in servers.iter().enumerate() {
        pair[i] = puts as f64 / sequential_puts(server, puts).await.as_secs_f64();
    }
    rows.push((format!("sequential puts ({puts}), puts/s"), pair, "higher"));

    let mut errors = [0; 2];
    for (i, server) in servers.iter().enumerate() {
        let (took, failed) = concurrent_puts(server).await;
        pair[i] = (CLIENTS * PUTS_PER_CLIENT) as f64 / took.as_secs_f64();
        errors[i] = failed;
    }
    rows.push((
        format!("{CLIENTS} concurrent clients × {PUTS_PER_CLIENT} puts, puts/s"),
        pair,
        "higher",
    ));

    for (i, server) in servers.iter().enumerate() {
        pair[i] = TXNS as f64 / transactions(server).await.as_secs_f64();
    }
    rows.push((
        format!("{TXN_PUTS}-put transactions ({TXNS}), txns/s"),
        pair,
        "higher",
    ));

    let mut p99 = [0.0; 2];
    for (i, samples) in put_to_watch(servers).await.iter().enumerate() {
        pair[i] = ms(percentile(samples, 50.0));
        p99[i] = ms(percentile(samples, 99.0));
    }
    rows.push((
        format!("put → watch p50 ({WATCH_SAMPLES}), ms"),
        pair,
        "lower",
    ));
    rows.push((
        format!("put → watch p99 ({WATCH_SAMPLES}), ms"),
        p99,
        "lower",
    ));

    let mut idle_p99 = [0.0; 2];
    let idle = put_to_watch_after_idle(servers, IDLE_SAMPLES, IDLE_PAUSE).await;
    for (i, samples) in idle.iter().enumerate() {
        pair[i] = ms(percentile(samples, 50.0));
        idle_p99[i] = ms(percentile(samples, 99.0));
    }
    rows.push((
        format!("put → watch after {IDLE_PAUSE:?} idle, p50 ({IDLE_SAMPLES}), ms"),
        pair,
        "lower",
    ));
    rows.push((
        format!("put → watch after {IDLE_PAUSE:?} idle, p99 ({IDLE_SAMPLES}), ms"),
        idle_p99,
        "lower",
    ));

    let mut late_max = [0.0; 2];
    for (i, server) in servers.iter().enumerate() {
        let lateness = lease_lateness(server).await;
        pair[i] = ms(percentile(&lateness, 50.0));
        late_max[i] = ms(percentile(&lateness, 100.0));
    }
    rows.push((
        format!("lease expiry, past a 1 s TTL, p50 ({LEASES}), ms"),
        pair,
        "lower",
    ));
    rows.push((
        format!("lease expiry, past a 1 s TTL, max ({LEASES}), ms"),
        late_max,
        "lower",
    ));

    let mut rss = [0.0; 2];
    let mut peak = [0.0; 2];
    for (i, server) in servers.iter().enumerate() {
        let (now, high) = memory_kib(registry_pid(server.registry.data_dir()));
        rss[i] = now as f64 / 1024.0;
        peak[i] = high as f64 / 1024.0;
    }
    rows.push(("RSS after the run, MiB".into(), rss, "reported"));
    rows.push(("peak RSS, MiB".into(), peak, "reported"));

    println!();
    println!("| figure | etcd | embedded | embedded ÷ etcd | better |");
    println!("|---|---:|---:|---:|---|");
    for (figure, [e, m], better) in &rows {
        println!("| {figure} | {e:.2} | {m:.2} | {:.2} | {better} |", m / e);
    }
    println!();
    println!(
        "errors with {CLIENTS} concurrent clients: etcd {}, embedded {} (goal: 0)",
        errors[0], errors[1]
    );
    println!(
        "goal: the embedded registry at or above etcd on every figure; put → watch p50 ≤ 1 ms"
    );
    // Where an embedded write's time goes: its batch's log append (fsync included).
    let metric = |text: &str, name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    let port = embedded.registry.metrics_port();
    if let Some((_, text)) = visor_testkit::controller::admin_get(port, "/metrics")
        && let (Some(sum), Some(batches)) = (
            metric(&text, "etcd_disk_backend_commit_duration_seconds_sum "),
            metric(&text, "etcd_disk_backend_commit_duration_seconds_count "),
        )
    {
        println!(
            "embedded: {batches:.0} log appends, {:.3} ms each on average (fsync included)",
            sum * 1e3 / batches
        );
    }
}
