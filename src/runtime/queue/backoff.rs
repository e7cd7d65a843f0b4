//! Per-key retry delays for [`WorkQueue::add_rate_limited`](super::WorkQueue::add_rate_limited):
//! exponential with jitter under the registry's one [`BackoffPolicy`], one
//! independent sequence per key.
//!
//! Invariants: a key's delays never shrink until it is forgotten, and never
//! exceed the configured maximum; keys do not influence each other.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use crate::registry::{Backoff, BackoffPolicy};
use crate::runtime::error::{Error, Result};

/// How [`WorkQueue::add_rate_limited`](super::WorkQueue::add_rate_limited)
/// delays a failing key: `base × 2^n` for its `n`-th consecutive retry, plus a
/// random jitter of up to 100 % of that, never more than `max`.
///
/// The default is controller-runtime's: 5 ms doubling up to 1000 s
/// (`workqueue.DefaultTypedItemBasedRateLimiter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBackoff {
    /// The delay before the first retry (before jitter).
    pub base: Duration,
    /// The cap on any delay, jitter included.
    pub max: Duration,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(5),
            max: Duration::from_secs(1000),
        }
    }
}

impl RetryBackoff {
    /// Checks that `base` is non-zero and at most `max`.
    pub fn validate(self) -> Result<Self> {
        if self.base.is_zero() || self.base > self.max {
            return Err(Error::InvalidBackoff {
                base: self.base,
                max: self.max,
            });
        }
        Ok(self)
    }

    fn policy(self) -> BackoffPolicy {
        BackoffPolicy {
            min: self.base,
            max: self.max,
            // A key's delays grow for as long as it keeps failing; only
            // `forget` starts them over.
            healthy: Duration::MAX,
        }
    }
}

/// One failing key: its delay sequence and how many retries it has had.
#[derive(Debug)]
struct Failing {
    delays: Backoff,
    retries: u32,
}

/// The delay sequences of every key that failed and was not forgotten since.
#[derive(Debug)]
pub(super) struct Retries<K> {
    policy: BackoffPolicy,
    failing: HashMap<K, Failing>,
}

impl<K: Eq + Hash> Retries<K> {
    pub(super) fn new(policy: RetryBackoff) -> Self {
        Self {
            policy: policy.policy(),
            failing: HashMap::new(),
        }
    }

    /// Counts one more retry of `key` and returns how long it should wait.
    pub(super) fn next_delay(&mut self, key: K) -> Duration {
        let failing = self.failing.entry(key).or_insert_with(|| Failing {
            delays: self.policy.start(),
            retries: 0,
        });
        failing.retries = failing.retries.saturating_add(1);
        failing.delays.next_delay(Duration::ZERO)
    }

    /// Starts `key` over at `base`.
    pub(super) fn forget(&mut self, key: &K) {
        self.failing.remove(key);
    }

    /// Retries of `key` since it was last forgotten.
    pub(super) fn retries(&self, key: &K) -> u32 {
        self.failing.get(key).map_or(0, |failing| failing.retries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    /// backon computes in `f32` seconds, so exact powers of two come out a hair off.
    const SLACK: Duration = Duration::from_micros(1);

    fn policy(base_ms: u64, max_ms: u64) -> RetryBackoff {
        RetryBackoff {
            base: MS * u32::try_from(base_ms).expect("small"),
            max: MS * u32::try_from(max_ms).expect("small"),
        }
    }

    #[test]
    fn delays_double_with_jitter_then_cap() {
        let mut retries = Retries::new(policy(10, 1000));
        for n in 0..7u32 {
            let floor = MS * 10 * 2u32.pow(n);
            let delay = retries.next_delay("a");
            assert!(
                delay + SLACK >= floor && delay < floor * 2 + SLACK,
                "retry {n}: {delay:?}"
            );
        }
        for _ in 0..5 {
            assert!(retries.next_delay("a") <= MS * 1000, "capped at max");
        }
        assert_eq!(retries.retries(&"a"), 12);
    }

    #[test]
    fn forget_restarts_one_key_only() {
        let mut retries = Retries::new(policy(10, 1000));
        for _ in 0..4 {
            retries.next_delay("a");
            retries.next_delay("b");
        }
        retries.forget(&"a");
        assert_eq!(retries.retries(&"a"), 0);
        assert_eq!(retries.retries(&"b"), 4);
        assert!(retries.next_delay("a") < MS * 20, "a starts over at base");
        assert!(
            retries.next_delay("b") + SLACK >= MS * 160,
            "b keeps growing"
        );
    }

    #[test]
    fn validate_rejects_zero_or_inverted() {
        assert!(policy(0, 10).validate().is_err());
        assert!(policy(20, 10).validate().is_err());
        assert!(policy(10, 10).validate().is_ok());
        assert!(RetryBackoff::default().validate().is_ok());
    }
}
