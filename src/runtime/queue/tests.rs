//! Behaviour of [`WorkQueue`] through its public API, time on a paused clock.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::Registry;
use tokio::time::{Instant, advance, timeout};

use super::{RetryBackoff, WorkQueue};
use crate::runtime::metrics::sample;

const SEC: Duration = Duration::from_secs(1);
/// Far above any wait in these tests; on a paused clock a deadlock makes time
/// jump straight here.
const DEADLOCK: Duration = Duration::from_secs(24 * 3600);
/// backon computes in `f32` seconds, so delays are a hair off exact.
const SLACK: Duration = Duration::from_millis(1);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match timeout(DEADLOCK, fut).await {
        Ok(out) => out,
        Err(_) => panic!("deadlock: {what} never finished — a key was lost or a getter not woken"),
    }
}

async fn next(queue: &WorkQueue<&'static str>) -> &'static str {
    within("get()", queue.get())
        .await
        .expect("queue shut down unexpectedly")
}

/// Whether `get` stays pending for a (virtual) minute; cancel-safe, so no key is lost.
async fn stays_empty(queue: &WorkQueue<&'static str>) -> bool {
    timeout(60 * SEC, queue.get()).await.is_err()
}

fn queue(registry: &Registry) -> WorkQueue<&'static str> {
    WorkQueue::new("q", registry).expect("fresh registry")
}

fn metric(registry: &Registry, name: &str) -> f64 {
    sample(registry, &format!(r#"{name}{{name="q"}}"#)).unwrap_or(f64::NAN)
}

#[tokio::test(start_paused = true)]
async fn waiting_key_is_queued_once() {
    let registry = Registry::new();
    let q = queue(&registry);
    for key in ["a", "a", "b", "a", "b"] {
        q.add(key);
    }
    assert_eq!(q.len(), 2);
    assert_eq!(next(&q).await, "a");
    assert_eq!(next(&q).await, "b");
    assert!(stays_empty(&q).await, "duplicates were queued");
}

#[tokio::test(start_paused = true)]
async fn key_added_while_processing_comes_back_once_after_done() {
    let registry = Registry::new();
    let q = queue(&registry);
    q.add("a");
    let a = next(&q).await;
    for _ in 0..3 {
        q.add("a");
    }
    assert!(stays_empty(&q).await, "handed out while still processing");
    q.done(&a);
    assert_eq!(next(&q).await, "a", "not re-delivered after done");
    q.done(&"a");
    assert!(stays_empty(&q).await, "re-delivered more than once");
}

/// Many workers on few keys, with keys re-added while in flight, on real threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_is_never_processed_by_two_workers_at_once() {
    let registry = Registry::new();
    let q = queue(&registry);
    let in_flight = Arc::new(Mutex::new(HashSet::new()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (q, in_flight) = (q.clone(), Arc::clone(&in_flight));
        workers.spawn(async move {
            let mut processed = 0u32;
            while let Some(key) = q.get().await {
                let fresh = in_flight.lock().expect("no panics").insert(key);
                assert!(fresh, "{key} handed to two workers at once");
                q.add(key); // re-added while processing: must wait for done
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                in_flight.lock().expect("no panics").remove(key);
                q.done(&key);
                processed += 1;
                if processed >= 50 {
                    break;
                }
            }
        });
    }
    for key in ["a", "b", "c"] {
        q.add(key);
    }
    let all = async {
        while let Some(worker) = workers.join_next().await {
            worker.expect("worker saw an overlap");
        }
    };
    let real_time = Duration::from_secs(30);
    timeout(real_time, all)
        .await
        .expect("deadlock: workers starved — a re-added key was never re-delivered");
}

#[tokio::test(start_paused = true)]
async fn add_after_delivers_no_earlier_than_the_delay() {
    let registry = Registry::new();
    let q = queue(&registry);
    let start = Instant::now();
    q.add_after("late", 10 * SEC);
    q.add_after("early", 3 * SEC);
    q.add_after("early", 8 * SEC); // a later deadline does not postpone it
    assert_eq!(q.len(), 0);
    assert_eq!(next(&q).await, "early");
    assert_eq!(start.elapsed(), 3 * SEC);
    assert_eq!(next(&q).await, "late");
    assert_eq!(start.elapsed(), 10 * SEC);
    assert!(stays_empty(&q).await, "a superseded timer fired too");
}

#[tokio::test(start_paused = true)]
async fn a_sleeping_getter_wakes_for_an_earlier_deadline() {
    let registry = Registry::new();
    let q = queue(&registry);
    let start = Instant::now();
    q.add_after("late", 100 * SEC);
    let getter = tokio::spawn({
        let q = q.clone();
        async move { q.get().await }
    });
    tokio::task::yield_now().await; // the getter now sleeps until 100 s
    q.add_after("soon", SEC);
    let got = within("the spawned get()", getter).await.expect("no panic");
    assert_eq!(got, Some("soon"));
    assert_eq!(start.elapsed(), SEC);
}

/// The delay of the `n`-th consecutive retry is in `[base·2ⁿ, base·2ⁿ⁺¹)`.
async fn retry_delay(q: &WorkQueue<&'static str>, key: &'static str) -> Duration {
    let start = Instant::now();
    q.add_rate_limited(key);
    assert_eq!(next(q).await, key);
    q.done(&key);
    start.elapsed()
}

fn assert_retry(delay: Duration, n: u32) {
    let floor = SEC * 2u32.pow(n);
    assert!(
        delay + SLACK >= floor && delay < 2 * floor + SLACK,
        "retry {n} waited {delay:?}, expected [{floor:?}, {:?})",
        2 * floor
    );
}

fn backoff_queue(registry: &Registry) -> WorkQueue<&'static str> {
    let backoff = RetryBackoff {
        base: SEC,
        max: 1000 * SEC,
    };
    WorkQueue::with_backoff("q", registry, backoff).expect("fresh registry")
}

#[tokio::test(start_paused = true)]
async fn rate_limited_backoff_grows_per_key_and_resets_on_forget() {
    let registry = Registry::new();
    let q = backoff_queue(&registry);
    for n in 0..5 {
        assert_retry(retry_delay(&q, "a").await, n);
    }
    assert_eq!(q.num_requeues(&"a"), 5);
    q.forget(&"a");
    assert_eq!(q.num_requeues(&"a"), 0);
    assert_retry(retry_delay(&q, "a").await, 0);
    assert_eq!(metric(&registry, "workqueue_retries_total"), 6.0);
}

#[tokio::test(start_paused = true)]
async fn keys_back_off_independently() {
    let registry = Registry::new();
    let q = backoff_queue(&registry);
    for n in 0..4 {
        assert_retry(retry_delay(&q, "a").await, n);
    }
    assert_retry(retry_delay(&q, "b").await, 0);
    q.forget(&"b");
    assert_eq!((q.num_requeues(&"a"), q.num_requeues(&"b")), (4, 0));
    assert_retry(retry_delay(&q, "a").await, 4);
}

#[tokio::test(start_paused = true)]
async fn shut_down_drains_queued_keys_then_stops() {
    let registry = Registry::new();
    let q = queue(&registry);
    let idle = WorkQueue::<&str>::new("idle", &registry).expect("fresh name");
    let waiting = tokio::spawn({
        let idle = idle.clone();
        async move { idle.get().await }
    });
    tokio::task::yield_now().await; // the getter now waits on the empty queue
    idle.shut_down();
    q.add("a");
    q.add("b");
    q.add_after("delayed", SEC);
    q.shut_down();
    q.add("refused");
    q.add_rate_limited("refused");
    assert!(q.is_shutting_down());
    assert_eq!(next(&q).await, "a");
    assert_eq!(next(&q).await, "b");
    assert_eq!(within("get() after shutdown", q.get()).await, None);
    assert_eq!(within("get() again", q.get()).await, None);
    let woken = within("a getter waiting at shutdown", waiting).await;
    assert_eq!(woken.expect("no panic"), None);
}

#[tokio::test(start_paused = true)]
async fn metrics_move() {
    let registry = Registry::new();
    let q = queue(&registry);
    q.add("a");
    q.add("a");
    q.add("b");
    assert_eq!(metric(&registry, "workqueue_adds_total"), 2.0);
    assert_eq!(metric(&registry, "workqueue_depth"), 2.0);

    advance(2 * SEC).await;
    let a = next(&q).await;
    assert_eq!(metric(&registry, "workqueue_depth"), 1.0);
    assert_eq!(
        metric(&registry, "workqueue_queue_duration_seconds_count"),
        1.0
    );
    assert_eq!(
        metric(&registry, "workqueue_queue_duration_seconds_sum"),
        2.0
    );

    advance(3 * SEC).await;
    let b = next(&q).await;
    advance(SEC).await;
    // In progress: a for 4 s, b for 1 s; read at scrape.
    assert_eq!(metric(&registry, "workqueue_unfinished_work_seconds"), 5.0);
    assert_eq!(
        metric(&registry, "workqueue_longest_running_processor_seconds"),
        4.0
    );

    q.done(&a);
    q.done(&b);
    assert_eq!(
        metric(&registry, "workqueue_work_duration_seconds_count"),
        2.0
    );
    assert_eq!(
        metric(&registry, "workqueue_work_duration_seconds_sum"),
        5.0
    );
    assert_eq!(metric(&registry, "workqueue_unfinished_work_seconds"), 0.0);

    q.add_rate_limited("c");
    assert_eq!(metric(&registry, "workqueue_retries_total"), 1.0);
    assert_eq!(metric(&registry, "workqueue_depth"), 0.0, "not due yet");
    advance(SEC).await;
    assert_eq!(
        metric(&registry, "workqueue_depth"),
        1.0,
        "due, counted at scrape"
    );
    // Promotion is lazy: the add is counted by the first call after the deadline.
    assert_eq!(q.len(), 1);
    assert_eq!(metric(&registry, "workqueue_adds_total"), 3.0);
}

#[tokio::test(start_paused = true)]
async fn queue_names_are_unique_per_registry_until_dropped() {
    let registry = Registry::new();
    let q = queue(&registry);
    let other = WorkQueue::<&str>::new("other", &registry).expect("another name");
    assert!(
        WorkQueue::<&str>::new("q", &registry).is_err(),
        "same name twice"
    );
    let clone = q.clone();
    drop(q);
    assert!(
        WorkQueue::<&str>::new("q", &registry).is_err(),
        "a clone still lives"
    );
    drop(clone);
    let again = WorkQueue::<&str>::new("q", &registry).expect("name freed by the last drop");
    again.add("x");
    other.add("y");
    assert_eq!(metric(&registry, "workqueue_adds_total"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn a_delay_beyond_the_clock_is_never_due_and_does_not_panic() {
    let registry = Registry::new();
    let q = queue(&registry);
    q.add_after("never", Duration::MAX);
    q.add("now");
    assert_eq!(next(&q).await, "now");
    assert!(stays_empty(&q).await);
}
