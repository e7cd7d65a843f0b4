//! The singleton controller: it campaigns for leadership, and while it leads
//! runs the reconcile loops that turn desired state into start/stop tickets,
//! mark the instances of dead hosts lost, and collect old terminal instances.
//!
//! Invariants: only the leader acts, and every write it makes is fenced by its
//! leadership; when leadership is lost every loop stops at once and the
//! controller campaigns again; on shutdown it resigns so a standby takes over
//! without waiting for the lease to expire.

mod caches;
mod leader;
mod metrics;
mod reconcile;
mod relations;
mod services;
mod snapshot;
mod status;

use std::time::Duration;

use clap::Args;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::registry::{Error as RegistryError, Visor};
use crate::runtime::cache::CacheMetrics;
use crate::runtime::election;
pub use leader::TermError;
pub use metrics::{ControllerMetrics, ELECTION_NAME};
pub use status::{GroupStatus, Status, status};

/// How the controller runs.
#[derive(Debug, Clone, Args)]
pub struct ControllerConfig {
    /// Name this replica campaigns under (default: host name and process id).
    #[arg(long, env = "VISOR_IDENTITY")]
    pub identity: Option<String>,
    /// Leadership lease TTL: a dead leader is replaced after at most this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,
    /// Renew deadline: the leader stops acting when it could not renew for this long (< TTL).
    #[arg(long, default_value = "6s", value_parser = humantime::parse_duration)]
    pub renew_deadline: Duration,
    /// Reconciles of one loop running at once.
    #[arg(long, default_value_t = 4)]
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

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// Metrics could not be registered.
    #[error("cannot register metrics: {0}")]
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

/// Campaigns and leads until `shutdown`; `ready` is true while leading with synced caches.
pub async fn run(
    visor: Visor,
    config: ControllerConfig,
    prometheus: prometheus::Registry,
    ready: watch::Sender<bool>,
    shutdown: CancellationToken,
) -> Result<(), ControllerError> {
    let metrics = ControllerMetrics::register(&prometheus)?;
    let cache_metrics = CacheMetrics::register(&prometheus)?;
    let leader_status = metrics.leader.with_label_values(&[ELECTION_NAME]);
    let identity = config.identity();
    let election_name = visor.registry().keys().leader();
    loop {
        leader_status.set(0);
        let campaign = election::campaign(
            visor.registry(),
            &election_name,
            &identity,
            config.lease_ttl,
            config.renew_deadline,
            &shutdown,
        );
        let leadership = match campaign.await {
            Ok(Some(leadership)) => leadership,
            // Shut down while standing by; the campaign's lease is already revoked.
            Ok(None) => return Ok(()),
            Err(error) => {
                tracing::warn!(%error, "campaign failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
        };
        tracing::info!(%identity, fence = %leadership.fence(), "elected leader");
        leader_status.set(1);
        let term = leadership.lost().child_token();
        let fenced = visor.fenced(leadership.fence().clone());
        let ran = tokio::select! {
            ran = leader::run_term(fenced, &config, &prometheus, &cache_metrics, &metrics, &ready, term.clone()) => ran,
            () = shutdown.cancelled() => Ok(()),
        };
        term.cancel();
        ready.send_replace(false);
        leader_status.set(0);
        if shutdown.is_cancelled() {
            tracing::info!("shutting down: resigning leadership");
            return leadership.resign().await.map_err(Into::into);
        }
        match ran {
            Ok(()) => tracing::warn!("leadership lost; campaigning again"),
            Err(error) => {
                tracing::error!(%error, "leadership term failed; resigning and campaigning again");
                if let Err(error) = leadership.resign().await {
                    tracing::warn!(%error, "resigning failed; the lease will expire");
                }
            }
        }
    }
}
