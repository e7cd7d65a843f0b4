//! The singleton controller: it campaigns for leadership, and while it leads
//! runs the reconcile loops that turn desired state into start/stop tickets,
//! mark the instances of dead hosts lost, and collect old terminal instances.
//!
//! Invariants: only the leader acts, and every write it makes is fenced by its
//! leadership; when leadership is lost every loop stops at once and the
//! controller campaigns again, after a backoff; whatever ends a term, its
//! lease is revoked so a standby takes over without waiting for it to
//! expire. A configuration is checked before anything runs.

mod caches;
mod config;
mod context;
mod gc;
mod leader;
mod liveness;
mod metrics;
mod relations;
mod replica;
mod rollout;
mod scale;
mod services;
mod snapshot;
mod status;

use std::time::Duration;

use clap::Args;

use crate::registry::Error as RegistryError;
pub use config::ConfigError;
pub use leader::TermError;
pub use metrics::{ControllerMetrics, ELECTION_NAME};
pub use replica::{Controller, RETRY};
pub use status::{Status, status};

/// How the controller runs.
#[derive(Debug, Clone, Args)]
pub struct ControllerConfig {
    /// Name this replica campaigns under (default: host name and process id).
    #[arg(long, env = "VISOR_IDENTITY")]
    pub identity: Option<String>,
    /// Leadership lease TTL, whole seconds from 1s (etcd's granularity): a
    /// dead leader is replaced after at most this long.
    #[arg(long, default_value = "10s", value_parser = config::parse_lease_ttl)]
    pub lease_ttl: Duration,
    /// Renew deadline: the leader stops acting when it could not renew for this long (above 0, below the TTL).
    #[arg(long, default_value = "6s", value_parser = config::parse_renew_deadline)]
    pub renew_deadline: Duration,
    /// Reconciles of one loop running at once (at least 1).
    #[arg(long, default_value_t = 4, value_parser = config::parse_concurrency)]
    pub concurrency: usize,
    /// Period of the full resync of every loop (0s disables it).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub resync: Duration,
    /// How long terminal instances are kept before garbage collection.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// How long a cleanly stopped endpoint's tombstone is kept, so that
    /// subscribers catching up after a compaction still see it was clean.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub tombstone_grace: Duration,
    /// Notifications kept: at most this many (the newest)...
    #[arg(long, default_value_t = 10_000)]
    pub notifications_kept: u64,
    /// ...and none older than this.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub notifications_max_age: Duration,
}

/// Why the controller stopped, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The configuration cannot run as asked.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Metrics could not be registered.
    #[error("cannot register metrics")]
    Metrics(#[from] prometheus::Error),
    /// Talking to the registry failed in a way retrying will not fix.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A term of leadership could not run its loops.
    #[error(transparent)]
    Term(#[from] TermError),
}

impl ControllerConfig {
    fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "controller".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }
}
