//! Bounded waits: every wait of a test or benchmark ends, and a wait that
//! runs out fails naming what did not happen (the likely deadlock).
//!
//! These run on tokio's clock, so a test on a paused clock advances through
//! them instead of sleeping.

use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(20);
/// How often [`holds_for`] looks again.
const RECHECK: Duration = Duration::from_millis(50);

/// Runs a test body under a deadline; a hang fails with `what` as the likely cause.
pub async fn within<T>(limit: Duration, what: &str, body: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, body).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Polls `condition` until it returns `Some`, failing after `limit` with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("condition not met within {limit:?}: {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Checks `condition` repeatedly for `period`, failing as soon as it is false:
/// for properties that must hold over time (a key outliving its lease TTL).
pub async fn holds_for<F, Fut>(period: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + period;
    while tokio::time::Instant::now() < end {
        assert!(
            condition().await,
            "stopped holding before {period:?}: {what}"
        );
        tokio::time::sleep(RECHECK).await;
    }
    assert!(condition().await, "stopped holding at {period:?}: {what}");
}
