//! What each reconcile outcome does (done, requeue-after, error, panic), and
//! the span and logs a reconcile runs with.

use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use super::{Calls, SEC, controller_metric, queue, reconciles, within};
use crate::runtime::metrics::sample;
use crate::runtime::runner::{Action, run};

#[tokio::test(start_paused = true)]
async fn errors_retry_with_growing_backoff_until_success_forgets() {
    let registry = Registry::new();
    let q = queue::<&'static str>(&registry);
    let calls = Calls::default();
    let reconcile = {
        let calls = calls.clone();
        move |key| {
            let failed = calls.record(key);
            async move {
                if failed < 3 {
                    Err("boom")
                } else {
                    Ok(Action::Done)
                }
            }
        }
    };
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(run(q.clone(), 2, reconcile, shutdown.clone()));
    q.add("a");
    within("the 4th call", calls.wait_for("a", 4)).await;
    let at = calls.of("a");
    for (n, pair) in at.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let floor = SEC * 2u32.pow(u32::try_from(n).expect("small"));
        let slack = Duration::from_millis(1); // backon computes in f32
        assert!(
            gap + slack >= floor && gap < 2 * floor + slack,
            "retry {n} after {gap:?}"
        );
    }
    tokio::task::yield_now().await; // let the runner settle the success
    assert_eq!(
        q.num_requeues(&"a"),
        0,
        "success did not forget the backoff"
    );
    assert_eq!(
        (
            reconciles(&registry, "error"),
            reconciles(&registry, "success")
        ),
        (3.0, 1.0)
    );
    assert_eq!(
        controller_metric(&registry, "controller_runtime_reconcile_errors_total"),
        Some(3.0)
    );
    let retries = sample(&registry, r#"workqueue_retries_total{name="c"}"#);
    assert_eq!(retries, Some(3.0));
    shutdown.cancel();
    within("run() after shutdown", runner)
        .await
        .expect("no panic")
        .expect("ran");
}

#[tokio::test(start_paused = true)]
async fn requeue_after_forgets_and_comes_back_after_the_delay() {
    let registry = Registry::new();
    let q = queue::<&'static str>(&registry);
    let calls = Calls::default();
    let reconcile = {
        let calls = calls.clone();
        move |key| {
            let n = calls.record(key);
            async move {
                match n {
                    0 => Err("boom"),
                    1 => Ok(Action::RequeueAfter(5 * SEC)),
                    _ => Ok(Action::Done),
                }
            }
        }
    };
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(run(q.clone(), 1, reconcile, shutdown.clone()));
    q.add("a");
    within("the 2nd call", calls.wait_for("a", 2)).await;
    tokio::task::yield_now().await;
    assert_eq!(
        q.num_requeues(&"a"),
        0,
        "RequeueAfter did not forget the backoff"
    );
    within("the 3rd call", calls.wait_for("a", 3)).await;
    let at = calls.of("a");
    assert_eq!(at[2] - at[1], 5 * SEC);
    assert_eq!(reconciles(&registry, "requeue_after"), 1.0);
    shutdown.cancel();
    within("run() after shutdown", runner)
        .await
        .expect("no panic")
        .expect("ran");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_reconcile_is_retried_not_stuck() {
    let registry = Registry::new();
    let q = queue::<&'static str>(&registry);
    let calls = Calls::default();
    let reconcile = {
        let calls = calls.clone();
        move |key| {
            let n = calls.record(key);
            async move {
                assert!(n > 0, "deliberate panic in the first reconcile");
                Ok::<_, Infallible>(Action::Done)
            }
        }
    };
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(run(q.clone(), 1, reconcile, shutdown.clone()));
    q.add("a");
    within("the retry after a panic", calls.wait_for("a", 2)).await;
    tokio::task::yield_now().await;
    assert_eq!(reconciles(&registry, "error"), 1.0);
    assert_eq!(
        controller_metric(&registry, "controller_runtime_active_workers"),
        Some(0.0)
    );
    shutdown.cancel();
    within("run() after shutdown", runner)
        .await
        .expect("no panic")
        .expect("ran");
}

/// Log output captured in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .expect("no panic under this lock")
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn reconciles_run_in_a_span_with_the_key_and_errors_name_it() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .with_ansi(false)
        .finish();
    // A current-thread runtime: every task logs through this thread's default.
    let _guard = tracing::subscriber::set_default(subscriber);
    let registry = Registry::new();
    let q = queue::<&'static str>(&registry);
    let calls = Calls::default();
    let reconcile = {
        let calls = calls.clone();
        move |key| {
            let n = calls.record(key);
            async move {
                tracing::info!("inside");
                if n == 0 {
                    Err("boom")
                } else {
                    Ok(Action::Done)
                }
            }
        }
    };
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(run(q.clone(), 1, reconcile, shutdown.clone()));
    q.add("the-key");
    within("the retry", calls.wait_for("the-key", 2)).await;
    shutdown.cancel();
    within("run() after shutdown", runner)
        .await
        .expect("no panic")
        .expect("ran");
    let logs = String::from_utf8(logs.0.lock().expect("no panic").clone()).expect("UTF-8");
    let in_span = logs
        .lines()
        .any(|l| l.contains(r#"reconcile{controller="c" key="the-key"}"#) && l.contains("inside"));
    assert!(
        in_span,
        "no event inside a reconcile span with the key:\n{logs}"
    );
    let failed = logs.lines().any(|l| {
        l.contains("reconcile failed") && l.contains(r#"key="the-key""#) && l.contains("boom")
    });
    assert!(failed, "the error was not logged with its key:\n{logs}");
}
