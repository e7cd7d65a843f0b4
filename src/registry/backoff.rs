//! Backing off a long-running step that keeps failing — a connection, a
//! watch, a campaign — with exponential delays and jitter computed by backon,
//! capped, that start over once the step has run for a healthy period.
//!
//! Invariants: no delay exceeds the policy's maximum (jitter included); while
//! attempts keep failing quickly the delays grow, each at least the previous
//! one's base; an attempt that ran for at least the healthy period starts the
//! sequence over at the minimum.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// How a step is retried: `min × 2^n` plus a random jitter of up to 100 %
/// of that before its `n`-th consecutive quick failure, never more than
/// `max`; an attempt that lasted `healthy` or longer counts as a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The delay after the first failure (before jitter).
    pub min: Duration,
    /// The cap on any delay, jitter included.
    pub max: Duration,
    /// How long an attempt must have run for the delays to start over.
    pub healthy: Duration,
}

impl BackoffPolicy {
    /// A fresh sequence of delays under this policy.
    pub fn start(self) -> Backoff {
        Backoff {
            policy: self,
            delays: self.builder().build(),
        }
    }

    fn builder(self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_jitter()
            // The step is retried for as long as it fails; only its owner stops it.
            .without_max_times()
    }
}

/// The delays of one step under a [`BackoffPolicy`].
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    delays: ExponentialBackoff,
}

impl Backoff {
    /// The delay before the next attempt, after one that ran for `ran` and
    /// ended (failed, or was lost).
    pub fn next_delay(&mut self, ran: Duration) -> Duration {
        if ran >= self.policy.healthy {
            self.delays = self.policy.builder().build();
        }
        // Jitter can push a capped delay above `max`; the cap is the contract.
        self.delays
            .next()
            .map_or(self.policy.max, |delay| delay.min(self.policy.max))
    }
}

/// Sleeps `delay`; false if `cancel` fired first.
pub async fn sleep(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = cancel.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    /// backon computes in `f32` seconds, so exact powers of two come out a hair off.
    const SLACK: Duration = Duration::from_micros(1);

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            min: MS * 10,
            max: MS * 1000,
            healthy: Duration::from_secs(30),
        }
    }

    #[test]
    fn quick_failures_double_with_jitter_up_to_the_cap() {
        let mut backoff = policy().start();
        for n in 0..7u32 {
            let floor = MS * 10 * 2u32.pow(n);
            let delay = backoff.next_delay(Duration::ZERO);
            assert!(
                delay + SLACK >= floor && delay < floor * 2 + SLACK,
                "failure {n}: {delay:?}"
            );
        }
        for _ in 0..20 {
            let delay = backoff.next_delay(MS);
            assert!(delay <= MS * 1000, "capped, jitter included: {delay:?}");
            assert!(delay + SLACK >= MS * 640, "stays near the cap: {delay:?}");
        }
    }

    #[test]
    fn a_healthy_attempt_starts_over_and_a_short_one_does_not() {
        let mut backoff = policy().start();
        for _ in 0..5 {
            backoff.next_delay(Duration::ZERO);
        }
        let short = backoff.next_delay(policy().healthy - MS);
        assert!(short + SLACK >= MS * 320, "still backing off: {short:?}");
        let after_healthy = backoff.next_delay(policy().healthy);
        assert!(
            after_healthy < MS * 20,
            "back to the minimum: {after_healthy:?}"
        );
        let next = backoff.next_delay(Duration::ZERO);
        assert!(next + SLACK >= MS * 20, "and growing again: {next:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_waits_the_delay_unless_cancelled() {
        let cancel = CancellationToken::new();
        let before = tokio::time::Instant::now();
        assert!(sleep(MS * 10, &cancel).await);
        assert_eq!(before.elapsed(), MS * 10);
        cancel.cancel();
        assert!(!sleep(Duration::from_secs(3600), &cancel).await);
        assert_eq!(before.elapsed(), MS * 10, "returned at once when cancelled");
    }
}
