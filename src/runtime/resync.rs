//! Periodic resync: every so often, add every known key to a work queue, so
//! that drift the watches missed (or that a reconcile chose to ignore) is
//! eventually seen again. The queue deduplicates, so a resync never queues a
//! key twice or runs it alongside itself.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_util::sync::CancellationToken;

use super::queue::{Key, WorkQueue};

/// Adds every key `list` returns to `queue` each `period` (the first time one
/// `period` from now), until `shutdown` is cancelled or the queue shuts down.
///
/// A zero `period` disables resync: this returns at once.
pub async fn resync<K, I>(
    queue: WorkQueue<K>,
    period: Duration,
    mut list: impl FnMut() -> I,
    shutdown: CancellationToken,
) where
    K: Key,
    I: IntoIterator<Item = K>,
{
    if period.is_zero() {
        return;
    }
    let mut ticks = interval_at(Instant::now() + period, period);
    // A slow tick is not made up for with a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if queue.is_shutting_down() {
            return;
        }
        queue.add_all(list());
    }
}

#[cfg(test)]
mod tests {
    use prometheus::Registry;
    use tokio::time::{advance, timeout};

    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn adds_all_keys_every_period_until_shutdown() {
        let registry = Registry::new();
        let queue = WorkQueue::new("q", &registry).expect("fresh registry");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(resync(
            queue.clone(),
            10 * SEC,
            || ["a", "b"],
            shutdown.clone(),
        ));
        tokio::task::yield_now().await;
        assert_eq!(queue.len(), 0, "no resync before the first period");
        advance(10 * SEC).await;
        tokio::task::yield_now().await;
        assert_eq!(queue.len(), 2);
        advance(10 * SEC).await;
        tokio::task::yield_now().await;
        assert_eq!(queue.len(), 2, "a resync queues waiting keys once");
        shutdown.cancel();
        let stopped = timeout(SEC, task).await;
        assert!(
            stopped.is_ok(),
            "deadlock: resync ignored its shutdown token"
        );
    }
}
