//! Registering N instances through the typed Visor API vs raw etcd puts of the
//! same keys and values, side by side against one real etcd in the same run.
//!
//! `cargo bench --bench registry` (N with `VISOR_BENCH_INSTANCES`, default 5000).
//! Prints one line per concurrency level with both timings and their ratio.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use visor::model::{Instance, Name};
use visor::registry::{LocalRegistry, RegistryConfig};
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

/// How the raw side writes each key.
#[derive(Clone, Copy)]
enum Raw {
    /// A plain put.
    Put,
    /// The same create-if-absent transaction Visor sends, built by hand:
    /// separates what etcd's transaction costs from what the typed layer adds.
    CreateIfAbsent,
}

async fn raw_writes(
    client: &etcd_client::Client,
    how: Raw,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> Duration {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let started = Instant::now();
    futures::stream::iter(0..count)
        .for_each_concurrent(concurrency, |i| {
            let mut kv = client.kv_client();
            let key = format!("{prefix}/instances/{}", uuid::Uuid::now_v7());
            let value = serde_json::to_vec(&instance(i)).expect("instances serialize");
            async move {
                match how {
                    Raw::Put => drop(kv.put(key, value, None).await.expect("raw put")),
                    Raw::CreateIfAbsent => {
                        let txn = Txn::new()
                            .when(vec![Compare::create_revision(
                                key.as_str(),
                                CompareOp::Equal,
                                0,
                            )])
                            .and_then(vec![TxnOp::put(key.as_str(), value, None)])
                            .or_else(vec![TxnOp::get(key.as_str(), None)]);
                        drop(kv.txn(txn).await.expect("raw txn"));
                    }
                }
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
    let etcd = LocalRegistry::start().await?;
    let visor = Visor::connect(&RegistryConfig::new([etcd.endpoint()])).await?;
    let raw = visor.registry().etcd();
    println!(
        "register {count} instances, same keys and values: raw etcd put, raw create-if-absent txn, typed Visor API"
    );
    println!(
        "{:>11}  {:>9}  {:>9}  {:>9}  {:>11}  {:>13}  {:>13}",
        "concurrency", "put s", "txn s", "typed s", "typed ops/s", "typed/raw put", "typed/raw txn"
    );
    for concurrency in CONCURRENCY {
        raw_writes(&raw, Raw::Put, "/bench-warmup", WARM_UP, concurrency).await;
        typed_creates(&visor, WARM_UP, concurrency).await?;
        let put = raw_writes(
            &raw,
            Raw::Put,
            &format!("/bench-put-{concurrency}"),
            count,
            concurrency,
        )
        .await;
        let txn = raw_writes(
            &raw,
            Raw::CreateIfAbsent,
            &format!("/bench-txn-{concurrency}"),
            count,
            concurrency,
        )
        .await;
        let typed = typed_creates(&visor, count, concurrency).await?;
        let secs = |d: Duration| d.as_secs_f64();
        println!(
            "{concurrency:>11}  {:>9.3}  {:>9.3}  {:>9.3}  {:>11.0}  {:>13.2}  {:>13.2}",
            secs(put),
            secs(txn),
            secs(typed),
            count as f64 / secs(typed),
            secs(typed) / secs(put),
            secs(typed) / secs(txn)
        );
    }
    Ok(())
}
