//! Read-your-writes for a leader's reconcile loops: a decision is made only
//! from caches that show the loop's own last writes, and, after any write of
//! the connection whose outcome is unknown, the barrier that settles it
//! ([`UnknownOutcomes`]).
//!
//! A loop's writes may land under several prefixes, each shown by its own
//! cache, which advances only on events under that prefix: so a loop keeps
//! one revision per *slot* (a group of caches it waits on together) and
//! waits for each slot's caches to reach that slot's revision only.
//!
//! Invariant: [`ReadYourWrites::caught_up`] returns `Ok` only once the caches
//! of every slot have reached that slot's last write and the revision of a
//! barrier written after every unknown outcome seen when it was called.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::UnknownOutcomes;
use crate::registry::{Error, Registry};

/// How long a reconcile waits for caches to line up before it fails and is
/// retried (a watch that is restarting catches up within its backoff).
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a loop could not catch up.
#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    /// The caches did not reach the revision within [`CATCH_UP_TIMEOUT`].
    #[error("caches have not caught up with revision {0}")]
    Behind(i64),
    /// The barrier settling an unknown outcome could not be written.
    #[error(transparent)]
    Registry(#[from] Error),
}

/// Waits, at most [`CATCH_UP_TIMEOUT`], for `reached` (a wait for caches to
/// reach `revision`) to say they did.
pub async fn reach(revision: i64, reached: impl Future<Output = bool>) -> Result<(), CatchUpError> {
    match tokio::time::timeout(CATCH_UP_TIMEOUT, reached).await {
        Ok(true) => Ok(()),
        _ => Err(CatchUpError::Behind(revision)),
    }
}

/// One loop's last writes, per slot, and the unknown outcomes it has settled.
#[derive(Debug)]
pub struct ReadYourWrites<const SLOTS: usize = 1> {
    written: [AtomicI64; SLOTS],
    unknown: UnknownOutcomes,
}

impl<const SLOTS: usize> Default for ReadYourWrites<SLOTS> {
    fn default() -> Self {
        Self {
            written: std::array::from_fn(|_| AtomicI64::new(0)),
            unknown: UnknownOutcomes::default(),
        }
    }
}

impl<const SLOTS: usize> ReadYourWrites<SLOTS> {
    /// Records a write at `revision` shown by the caches of `slot`.
    ///
    /// # Panics
    /// If `slot` is not below `SLOTS`: slots are the loop's own constants.
    pub fn wrote_in(&self, slot: usize, revision: i64) {
        self.written[slot].fetch_max(revision, Ordering::SeqCst);
    }

    /// Settles the connection's unknown outcomes (a barrier every slot must
    /// reach), then waits until `reached(targets)` — a wait for each slot's
    /// caches to reach its target — says they did; bounded by
    /// [`CATCH_UP_TIMEOUT`].
    pub async fn caught_up<F, Fut>(
        &self,
        registry: &Registry,
        reached: F,
    ) -> Result<(), CatchUpError>
    where
        F: FnOnce([i64; SLOTS]) -> Fut,
        Fut: Future<Output = bool>,
    {
        if let Some(barrier) = self.unknown.resolve(registry).await? {
            for slot in &self.written {
                slot.fetch_max(barrier, Ordering::SeqCst);
            }
        }
        let targets = std::array::from_fn(|slot| self.written[slot].load(Ordering::SeqCst));
        let highest = targets.iter().copied().max().unwrap_or(0);
        reach(highest, reached(targets)).await
    }
}

impl ReadYourWrites<1> {
    /// Records a write at `revision`.
    pub fn wrote(&self, revision: i64) {
        self.wrote_in(0, revision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_bounded_and_names_the_revision() {
        assert!(reach(7, async { true }).await.is_ok());
        let never = std::future::pending::<bool>();
        match reach(42, never).await {
            Err(CatchUpError::Behind(42)) => {}
            other => panic!("expected Behind(42), got {other:?}"),
        }
        match reach(9, async { false }).await {
            Err(CatchUpError::Behind(9)) => {}
            other => panic!("a cache that stopped is behind: {other:?}"),
        }
    }

    #[test]
    fn each_slot_keeps_its_highest_write() {
        let written = ReadYourWrites::<2>::default();
        written.wrote_in(0, 10);
        written.wrote_in(1, 4);
        written.wrote_in(0, 8);
        let targets: [i64; 2] =
            std::array::from_fn(|slot| written.written[slot].load(Ordering::SeqCst));
        assert_eq!(targets, [10, 4]);
    }
}
