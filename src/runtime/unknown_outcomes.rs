//! Writes whose outcome is unknown, resolved before the next decision.
//!
//! A write that fails with a timeout or a reset connection may have been
//! committed all the same (a dying etcd leader resets connections after
//! committing). A loop that planned again from caches that do not show such
//! a commit yet would write the same thing twice — for starts, a second
//! instance for one slot. So before deciding, a loop that shares a
//! connection with such a failure writes a barrier through etcd's log and
//! waits until its caches reach the barrier's revision: every write proposed
//! before the barrier has committed below it or never will.
//!
//! Invariant: after [`UnknownOutcomes::resolve`] returns a revision, every
//! write that had failed with an unknown outcome when it was called is either
//! at or below that revision or will never commit.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::registry::{Registry, Result};

/// How far one loop has resolved the unknown outcomes of its connection.
#[derive(Debug, Default)]
pub struct UnknownOutcomes {
    /// The connection's count of unknown outcomes at the last resolution.
    resolved: AtomicU64,
}

impl UnknownOutcomes {
    /// When writes through `registry` have failed with an unknown outcome
    /// since the last call, writes a barrier and returns its revision, which
    /// the caches must reach before the next decision; `None` when there is
    /// nothing to resolve. A failed barrier resolves nothing: the next call
    /// tries again.
    pub async fn resolve(&self, registry: &Registry) -> Result<Option<i64>> {
        let failed = registry.unknown_outcomes();
        if failed <= self.resolved.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let revision = registry.barrier().await?;
        self.resolved.fetch_max(failed, Ordering::SeqCst);
        tracing::info!(
            revision,
            "writes with an unknown outcome resolved: deciding from revision {revision} on"
        );
        Ok(Some(revision))
    }
}
