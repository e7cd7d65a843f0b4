//! The embedded registry's `/metrics`, under etcd's own names, so that what
//! watches an etcd (dashboards, alerts, tests counting watchers) reads the
//! embedded registry the same way.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntGauge, Registry};

/// etcd's buckets for its backend commit duration (1 ms to about 8 s).
const COMMIT_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// The registry's metrics.
#[derive(Debug, Clone)]
pub struct RegistryMetrics {
    /// Where they are registered, for `/metrics`.
    pub registry: Registry,
    watchers: IntGauge,
    revision: IntGauge,
    db_size: IntGauge,
    commit_seconds: Histogram,
}

impl RegistryMetrics {
    /// Creates the metrics on a registry of their own.
    pub fn new() -> prometheus::Result<Self> {
        use crate::telemetry::register as add;
        let registry = Registry::new();
        let has_leader = add(
            &registry,
            IntGauge::new(
                "etcd_server_has_leader",
                "Whether a leader exists: always 1, the single node leads.",
            )?,
        )?;
        has_leader.set(1);
        Ok(Self {
            watchers: add(
                &registry,
                IntGauge::new(
                    "etcd_debugging_mvcc_watcher_total",
                    "Watches open on every stream.",
                )?,
            )?,
            revision: add(
                &registry,
                IntGauge::new(
                    "etcd_debugging_mvcc_current_revision",
                    "The newest revision readers and watchers see.",
                )?,
            )?,
            db_size: add(
                &registry,
                IntGauge::new(
                    "etcd_mvcc_db_total_size_in_bytes",
                    "The size of the durable log's database file.",
                )?,
            )?,
            commit_seconds: add(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "etcd_disk_backend_commit_duration_seconds",
                        "How long appending one batch of writes to the log took, its fsync included.",
                    )
                    .buckets(COMMIT_BUCKETS.to_vec()),
                )?,
            )?,
            registry,
        })
    }

    /// Watches were opened (positive) or closed (negative).
    pub fn watches_changed(&self, by: i64) {
        self.watchers.add(by);
    }

    /// A batch was made durable in `took`, leaving the store at `revision`.
    pub fn committed(&self, took: Duration, revision: i64) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.at_revision(revision);
    }

    /// The store is at `revision` (as it starts).
    pub fn at_revision(&self, revision: i64) {
        self.revision.set(revision);
    }

    /// The database file is `size` bytes long.
    pub fn sized(&self, size: u64) {
        self.db_size.set(i64::try_from(size).unwrap_or(i64::MAX));
    }
}
