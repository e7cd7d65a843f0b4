//! Registering N instances through the typed Visor API vs raw etcd puts of the
//! same keys and values, side by side against one real etcd in the same run.
//!
//! `cargo bench --bench registry` (N with `VISOR_BENCH_INSTANCES`, default 5000).
//! Prints one line per concurrency level with both timings and their ratio.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use visor::model::{Instance, Name};
use visor::registry::{LocalEtcd, RegistryConfig};
use visor::{Error, Visor};

/// In-flight requests per run: one at a time, then a busy agent fleet.
const CONCURRENCY: [usize; 2] = [1, 32];
/// Unmeasured requests before each measured run.
const WARM_UP: usize = 200;

fn instance(i: usize) -> Instance {
    let name =
        |field, value: String| Name::parse(field, &value).expect("benchmark names are valid");
    Instance::pending(
        name("app", "bench".into()),
        name("rev", "v1".into()),
        name("proc", "web".into()),
        Some(name("host", format!("host-{}", i % 100))),
        Utc::now(),
    )
}

async fn raw_puts(
    client: &etcd_client::Client,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> Duration {
    let started = Instant::now();
    futures::stream::iter(0..count)
        .for_each_concurrent(concurrency, |i| {
            let mut kv = client.kv_client();
            let key = format!("{prefix}/instances/{}", uuid::Uuid::now_v7());
            let value = serde_json::to_vec(&instance(i)).expect("instances serialize");
            async move {
                kv.put(key, value, None).await.expect("raw put");
            }
        })
        .await;
    started.elapsed()
}

async fn typed_creates(visor: &Visor, count: usize, concurrency: usize) -> Result<Duration, Error> {
    let started = Instant::now();
    let results: Vec<Result<_, Error>> = futures::stream::iter(0..count)
        .map(|i| visor.create_instance(instance(i)))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::var("VISOR_BENCH_INSTANCES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5000);
    let etcd = LocalEtcd::start().await?;
    let visor = Visor::connect(&RegistryConfig::new([etcd.endpoint()])).await?;
    let raw = visor.registry().etcd();
    println!(
        "register {count} instances: typed Visor API (create-if-absent txn + JSON) vs raw etcd put"
    );
    println!(
        "{:>11}  {:>10}  {:>10}  {:>12}  {:>12}  {:>11}",
        "concurrency", "raw s", "typed s", "raw ops/s", "typed ops/s", "typed/raw"
    );
    for concurrency in CONCURRENCY {
        raw_puts(&raw, "/bench-warmup", WARM_UP, concurrency).await;
        typed_creates(&visor, WARM_UP, concurrency).await?;
        let raw_time = raw_puts(
            &raw,
            &format!("/bench-raw-{concurrency}"),
            count,
            concurrency,
        )
        .await;
        let typed_time = typed_creates(&visor, count, concurrency).await?;
        let rate = |d: Duration| count as f64 / d.as_secs_f64();
        println!(
            "{concurrency:>11}  {:>10.3}  {:>10.3}  {:>12.0}  {:>12.0}  {:>11.2}",
            raw_time.as_secs_f64(),
            typed_time.as_secs_f64(),
            rate(raw_time),
            rate(typed_time),
            typed_time.as_secs_f64() / raw_time.as_secs_f64()
        );
    }
    Ok(())
}
