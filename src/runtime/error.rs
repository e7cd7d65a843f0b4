//! The work queue's and runner's error type: one variant per way setting them
//! up fails. Once running, neither fails: a reconcile error is retried, not
//! returned.

use std::time::Duration;

/// A `Result` whose error is the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a work queue or a runner could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Building a metric failed (an invalid name or label, i.e. a bug here).
    #[error("creating metric {metric}")]
    CreateMetric {
        /// The metric's name.
        metric: &'static str,
        /// What prometheus refused.
        #[source]
        source: prometheus::Error,
    },
    /// The queue's metrics could not be registered, typically because a queue
    /// of the same name is already registered on that registry.
    #[error("registering the metrics of work queue {queue:?}")]
    RegisterQueueMetrics {
        /// The queue's name.
        queue: String,
        /// What the registry refused.
        #[source]
        source: prometheus::Error,
    },
    /// The controller's metrics could not be registered, typically because a
    /// runner is already running on that queue.
    #[error("registering the metrics of controller {controller:?}")]
    RegisterControllerMetrics {
        /// The controller's name (its queue's name).
        controller: String,
        /// What the registry refused.
        #[source]
        source: prometheus::Error,
    },
    /// The retry backoff's base delay is zero or above its maximum.
    #[error("invalid retry backoff: base {base:?} must be non-zero and at most max {max:?}")]
    InvalidBackoff {
        /// The first retry's delay.
        base: Duration,
        /// The cap on any retry's delay.
        max: Duration,
    },
    /// A runner was asked to run no reconcile at a time.
    #[error("a runner needs a concurrency of at least 1")]
    ZeroConcurrency,
}
