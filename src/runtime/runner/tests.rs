//! Behaviour of [`run`] on a paused clock: concurrency bound, per-key
//! exclusion, shutdown, setup errors; what each outcome does is in `outcomes`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::Registry;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::{Action, run};
use crate::runtime::error::Error;
use crate::runtime::metrics::sample;
use crate::runtime::queue::{Key, RetryBackoff, WorkQueue};

mod outcomes;

const SEC: Duration = Duration::from_secs(1);
/// Far above any wait here; on a paused clock a deadlock jumps straight to it.
const DEADLOCK: Duration = Duration::from_secs(24 * 3600);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match timeout(DEADLOCK, fut).await {
        Ok(out) => out,
        Err(_) => panic!("deadlock: {what} — a key was never settled or a worker never freed"),
    }
}

/// A queue (and controller) named `c`, retries starting at 1 s.
fn queue<K: Key>(registry: &Registry) -> WorkQueue<K> {
    let backoff = RetryBackoff {
        base: SEC,
        max: 1000 * SEC,
    };
    WorkQueue::with_backoff("c", registry, backoff).expect("fresh registry")
}

fn reconciles(registry: &Registry, result: &str) -> f64 {
    let series =
        format!(r#"controller_runtime_reconcile_total{{controller="c",result="{result}"}}"#);
    sample(registry, &series).unwrap_or(0.0)
}

fn controller_metric(registry: &Registry, name: &str) -> Option<f64> {
    sample(registry, &format!(r#"{name}{{controller="c"}}"#))
}

/// Calls of each key, and a signal for every call.
#[derive(Clone, Default)]
struct Calls {
    at: Arc<Mutex<HashMap<&'static str, Vec<Instant>>>>,
    each: Arc<Notify>,
}

impl Calls {
    /// Records a call of `key`, returning how many it has had before.
    fn record(&self, key: &'static str) -> usize {
        let mut at = self.at.lock().expect("no panic under this lock");
        let calls = at.entry(key).or_default();
        calls.push(Instant::now());
        self.each.notify_one();
        calls.len() - 1
    }

    fn of(&self, key: &'static str) -> Vec<Instant> {
        let at = self.at.lock().expect("no panic under this lock");
        at.get(key).cloned().unwrap_or_default()
    }

    async fn wait_for(&self, key: &'static str, calls: usize) {
        while self.of(key).len() < calls {
            self.each.notified().await;
        }
    }
}

/// Reconciles in progress now, and the most ever at once.
#[derive(Clone, Default)]
struct InFlight {
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl InFlight {
    fn enter(&self) {
        self.peak
            .fetch_max(self.now.fetch_add(1, SeqCst) + 1, SeqCst);
    }

    fn exit(&self) {
        self.now.fetch_sub(1, SeqCst);
    }

    fn peak(&self) -> usize {
        self.peak.load(SeqCst)
    }
}

#[tokio::test(start_paused = true)]
async fn never_more_than_concurrency_reconciles_at_once() {
    let registry = Registry::new();
    let q = queue::<u32>(&registry);
    q.add_all(0..20);
    let (in_flight, finished) = (InFlight::default(), Arc::new(AtomicUsize::new(0)));
    let all_done = Arc::new(Notify::new());
    let reconcile = {
        let (in_flight, finished, all_done) =
            (in_flight.clone(), finished.clone(), all_done.clone());
        move |_key: u32| {
            let (in_flight, finished) = (in_flight.clone(), finished.clone());
            let all_done = all_done.clone();
            async move {
                in_flight.enter();
                sleep(SEC).await;
                in_flight.exit();
                if finished.fetch_add(1, SeqCst) + 1 == 20 {
                    all_done.notify_one();
                }
                Ok::<_, Infallible>(Action::Done)
            }
        }
    };
    let start = Instant::now();
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(run(q.clone(), 3, reconcile, shutdown.clone()));
    sleep(SEC / 2).await;
    assert_eq!(
        controller_metric(&registry, "controller_runtime_active_workers"),
        Some(3.0)
    );
    assert_eq!(
        controller_metric(&registry, "controller_runtime_max_concurrent_reconciles"),
        Some(3.0)
    );
    within("20 reconciles", all_done.notified()).await;
    assert_eq!(
        in_flight.peak(),
        3,
        "concurrency bound not kept (or not used)"
    );
    assert_eq!(
        start.elapsed(),
        7 * SEC,
        "20 one-second reconciles, 3 at a time"
    );
    assert_eq!(reconciles(&registry, "success"), 20.0);
    let time = controller_metric(&registry, "controller_runtime_reconcile_time_seconds_count");
    assert_eq!(time, Some(20.0));
    shutdown.cancel();
    within("run() after shutdown", runner)
        .await
        .expect("no panic")
        .expect("ran");
    assert_eq!(
        controller_metric(&registry, "controller_runtime_active_workers"),
        None,
        "unregistered"
    );
}

#[tokio::test(start_paused = true)]
async fn a_key_re_added_during_its_reconcile_runs_again_once_never_alongside() {
    let registry = Registry::new();
    let q = queue::<&'static str>(&registry);
    let calls = Calls::default();
    let in_flight = InFlight::default();
    let reconcile = {
        let (q, calls, in_flight) = (q.clone(), calls.clone(), in_flight.clone());
        move |key| {
            let (q, calls, in_flight) = (q.clone(), calls.clone(), in_flight.clone());
            async move {
                in_flight.enter();
                if calls.record(key) < 9 {
                    q.add(key); // twice: still one more run
                    q.add(key);
                }
                sleep(SEC / 10).await;
                in_flight.exit();
                Ok::<_, Infallible>(Action::Done)
            }
        }
    };
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(run(q.clone(), 8, reconcile, shutdown.clone()));
    q.add("a");
    q.add("b");
    within("10 runs of a", calls.wait_for("a", 10)).await;
    within("10 runs of b", calls.wait_for("b", 10)).await;
    sleep(60 * SEC).await;
    assert_eq!(
        (calls.of("a").len(), calls.of("b").len()),
        (10, 10),
        "re-delivered once per run"
    );
    assert_eq!(
        in_flight.peak(),
        2,
        "8 workers, 2 keys: a key ran alongside itself"
    );
    shutdown.cancel();
    within("run() after shutdown", runner)
        .await
        .expect("no panic")
        .expect("ran");
}

/// A reconcile that records its call and finishes after ten seconds.
fn slow_reconcile(
    calls: &Calls,
    finished: &Arc<AtomicUsize>,
) -> impl Fn(&'static str) -> std::pin::Pin<Box<dyn Future<Output = Result<Action, Infallible>> + Send>>
+ use<> {
    let (calls, finished) = (calls.clone(), finished.clone());
    move |key| {
        calls.record(key);
        let finished = finished.clone();
        Box::pin(async move {
            sleep(10 * SEC).await;
            finished.fetch_add(1, SeqCst);
            Ok(Action::Done)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_taking_keys_and_cancels_reconciles_in_flight() {
    let registry = Registry::new();
    let q = queue::<&'static str>(&registry);
    let (calls, finished) = (Calls::default(), Arc::new(AtomicUsize::new(0)));
    let start = Instant::now();
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(run(
        q.clone(),
        1,
        slow_reconcile(&calls, &finished),
        shutdown.clone(),
    ));
    q.add("slow");
    within("the first call", calls.wait_for("slow", 1)).await;
    q.add("next");
    shutdown.cancel();
    within("run() after shutdown", runner)
        .await
        .expect("no panic")
        .expect("ran");
    assert_eq!(
        finished.load(SeqCst),
        0,
        "a reconcile went on after shutdown"
    );
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "shutdown waited for a reconcile"
    );
    assert!(calls.of("next").is_empty(), "took a key after shutdown");
    assert!(q.is_shutting_down());
    assert_eq!(
        controller_metric(&registry, "controller_runtime_active_workers"),
        None,
        "metrics stay registered only while the runner runs"
    );
}

#[tokio::test(start_paused = true)]
async fn a_queue_shut_down_by_its_owner_lets_reconciles_in_flight_finish() {
    let registry = Registry::new();
    let q = queue::<&'static str>(&registry);
    let (calls, finished) = (Calls::default(), Arc::new(AtomicUsize::new(0)));
    let start = Instant::now();
    let runner = tokio::spawn(run(
        q.clone(),
        1,
        slow_reconcile(&calls, &finished),
        CancellationToken::new(),
    ));
    q.add("slow");
    within("the first call", calls.wait_for("slow", 1)).await;
    q.shut_down();
    within("run() draining", runner)
        .await
        .expect("no panic")
        .expect("ran");
    assert_eq!(
        finished.load(SeqCst),
        1,
        "in-flight reconcile was cut short"
    );
    assert_eq!(start.elapsed(), 10 * SEC);
}

#[tokio::test(start_paused = true)]
async fn setup_errors() {
    let registry = Registry::new();
    let q = queue::<&'static str>(&registry);
    let done = |_key| async { Ok::<_, Infallible>(Action::Done) };
    let zero = run(q.clone(), 0, done, CancellationToken::new()).await;
    assert!(matches!(zero, Err(Error::ZeroConcurrency)));
    let shutdown = CancellationToken::new();
    let first = tokio::spawn(run(q.clone(), 1, done, shutdown.clone()));
    tokio::task::yield_now().await;
    let second = run(q.clone(), 1, done, CancellationToken::new()).await;
    assert!(matches!(
        second,
        Err(Error::RegisterControllerMetrics { .. })
    ));
    shutdown.cancel();
    within("run() after shutdown", first)
        .await
        .expect("no panic")
        .expect("ran");
}
