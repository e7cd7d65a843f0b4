//! What the scale, rollout, liveness and GC loops of one leadership share:
//! the fenced API, the caches, the metrics, and read-your-writes over the
//! prefixes they write (instances, tickets and scale factors).
//!
//! Invariants: every decision is made from caches that have caught up with
//! this leader's last writes, including any whose outcome is unknown; scale
//! decisions are serialized, because groups share host capacity; a write
//! refused by the fence (`Deposed`) writes nothing and fails the reconcile,
//! while the term itself ends when the election notices the lost leadership.

use std::sync::Arc;

use tokio::sync::Mutex;

use super::caches::{self, Caches};
use super::metrics::ControllerMetrics;
use crate::registry::{Error, Visor};
use crate::runtime::{CatchUpError, ReadYourWrites};

/// Read-your-writes slot of the instances cache.
const INSTANCES: usize = 0;
/// Read-your-writes slot of the tickets cache.
const TICKETS: usize = 1;
/// Read-your-writes slot of the scale factors cache.
const SCALES: usize = 2;

/// What every reconcile of one leadership shares.
#[derive(Debug, Clone)]
pub struct Context {
    /// The fenced API: every write requires this leadership.
    pub visor: Visor,
    pub caches: Caches,
    pub metrics: ControllerMetrics,
    /// How long terminal instances are kept.
    pub retention: chrono::TimeDelta,
    /// How many notifications are kept, at most.
    pub notifications_kept: u64,
    /// How long notifications are kept, at most.
    pub notifications_max_age: chrono::TimeDelta,
    /// This leader's last writes to instances, tickets and scale factors.
    pub written: Arc<ReadYourWrites<3>>,
    /// Serializes placement: concurrent groups would otherwise fill one slot twice.
    pub placement: Arc<Mutex<()>>,
}

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The caches did not show our own last write in time.
    #[error("caches have not caught up with revision {0}")]
    Behind(i64),
    /// A registry write or read failed.
    #[error(transparent)]
    Registry(#[from] Error),
}

impl From<CatchUpError> for ReconcileError {
    fn from(error: CatchUpError) -> Self {
        match error {
            CatchUpError::Behind(revision) => Self::Behind(revision),
            CatchUpError::Registry(error) => Self::Registry(error),
        }
    }
}

impl Context {
    pub(super) fn wrote_instances(&self, revision: i64) {
        self.written.wrote_in(INSTANCES, revision);
    }

    pub(super) fn wrote_tickets(&self, revision: i64) {
        self.written.wrote_in(TICKETS, revision);
    }

    pub(super) fn wrote_scales(&self, revision: i64) {
        self.written.wrote_in(SCALES, revision);
    }

    /// Waits until every cache has synced and the instance, ticket and
    /// scale factor caches show this leader's last writes to them.
    pub(super) async fn caught_up(&self) -> Result<(), ReconcileError> {
        let caches = &self.caches;
        let reached = |[instances, tickets, scales]: [i64; 3]| async move {
            caches::wait_synced(caches).await;
            caches.instances.wait_for_revision(instances).await
                && caches.tickets.wait_for_revision(tickets).await
                && caches.scales.wait_for_revision(scales).await
        };
        Ok(self
            .written
            .caught_up(self.visor.registry(), reached)
            .await?)
    }
}
