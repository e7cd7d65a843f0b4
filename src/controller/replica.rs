//! One controller replica from start-up to shutdown: it reaches the
//! registry, campaigns, leads a term while elected, and campaigns again when
//! the term ends.
//!
//! Invariants: its standing (leader status, registry reachability) is
//! exported from the moment it is created, before the registry is reached.
//! Between two attempts to connect, two failed campaigns, and after every
//! term, it backs off along [`RETRY`], starting over only after an attempt
//! or a term that lasted the healthy period, so a fault that ends every
//! term cannot make it campaign in a loop. Whatever ends a term (lost,
//! failed, shut down), the term's lease is revoked before anything else, so
//! the next leader is elected at once.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::{ControllerMetrics, Standing};
use super::{ControllerConfig, ControllerError, TermError, leader};
use crate::admin::Health;
use crate::registry::backoff::{self, BackoffPolicy};
use crate::registry::{Error as RegistryError, Lease, RegistryConfig, Visor};
use crate::runtime::cache::CacheMetrics;
use crate::runtime::election::{self, Leadership};

/// How a replica retries reaching the registry and campaigning: from 200ms
/// doubling to 10s, with jitter, starting over after a connection attempt,
/// campaign or term that lasted 30s.
pub const RETRY: BackoffPolicy = BackoffPolicy {
    min: Duration::from_millis(200),
    max: Duration::from_secs(10),
    healthy: Duration::from_secs(30),
};

/// A controller replica, its configuration checked and its metrics registered.
#[derive(Debug)]
pub struct Controller {
    config: ControllerConfig,
    prometheus: prometheus::Registry,
    metrics: ControllerMetrics,
    cache_metrics: CacheMetrics,
    standing: Standing,
}

/// How a term of leadership ended.
enum TermEnd {
    /// Leadership was lost (lease or leader key gone).
    Lost,
    /// The term's loops could not run.
    Failed(TermError),
    /// Shutdown was requested.
    Shutdown,
}

impl Controller {
    /// Checks `config` and registers the controller's metrics on
    /// `prometheus`, exporting from now on that this replica neither reaches
    /// the registry nor leads, until it does.
    pub fn new(
        config: ControllerConfig,
        prometheus: &prometheus::Registry,
    ) -> Result<Self, ControllerError> {
        config.validate()?;
        let metrics = ControllerMetrics::register(prometheus)?;
        let cache_metrics = CacheMetrics::register(prometheus)?;
        let standing = Standing::new(&metrics);
        Ok(Self {
            config,
            prometheus: prometheus.clone(),
            metrics,
            cache_metrics,
            standing,
        })
    }

    /// What `/healthz` reports, kept current from now on.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.standing.health()
    }

    /// Connects to the registry and checks its schema, retrying along
    /// [`RETRY`] while that fails; `None` if shut down first.
    pub async fn connect(
        &self,
        registry: &RegistryConfig,
        shutdown: &CancellationToken,
    ) -> Option<Visor> {
        let mut backoff = RETRY.start();
        loop {
            let attempt = Instant::now();
            let connected = tokio::select! {
                connected = Visor::connect(registry) => connected,
                () = shutdown.cancelled() => return None,
            };
            self.standing.set_reachable(connected.is_ok());
            let error = match connected {
                Ok(visor) => return Some(visor),
                Err(error) => error,
            };
            let delay = backoff.next_delay(attempt.elapsed());
            tracing::warn!(%error, ?delay, "cannot reach the registry; retrying");
            if !backoff::sleep(delay, shutdown).await {
                return None;
            }
        }
    }

    /// Campaigns and leads with `visor` until `shutdown`; `ready` is true
    /// while leading with synced caches. Returns an error only if giving
    /// leadership up at shutdown failed.
    pub async fn run(
        self,
        visor: Visor,
        ready: watch::Sender<bool>,
        shutdown: CancellationToken,
    ) -> Result<(), ControllerError> {
        // Whoever hands a connected registry in has just reached it.
        self.standing.set_reachable(true);
        let identity = self.config.identity();
        let election_name = visor.registry().keys().leader();
        let mut backoff = RETRY.start();
        loop {
            let attempt = Instant::now();
            let leadership = match self
                .campaign(&visor, &election_name, &identity, &shutdown)
                .await
            {
                Ok(Some(leadership)) => leadership,
                // Shut down while standing by; the campaign's lease is already revoked.
                Ok(None) => return Ok(()),
                Err(error) => {
                    let delay = backoff.next_delay(attempt.elapsed());
                    tracing::warn!(%error, ?delay, "campaign failed; retrying");
                    if !backoff::sleep(delay, &shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            tracing::info!(%identity, fence = %leadership.fence(), "elected leader");
            self.standing.set_leading(true);
            let elected = Instant::now();
            let ended = self.lead(&visor, &leadership, &ready, &shutdown).await;
            ready.send_replace(false);
            self.standing.set_leading(false);
            let delay = backoff.next_delay(elected.elapsed());
            match &ended {
                TermEnd::Shutdown => tracing::info!("shutting down: resigning leadership"),
                TermEnd::Lost => {
                    tracing::warn!(?delay, "leadership lost; campaigning again");
                }
                TermEnd::Failed(error) => tracing::error!(
                    error = %crate::telemetry::Chain(error), ?delay,
                    "leadership term failed; resigning and campaigning again"
                ),
            }
            let resigned = leadership.resign().await;
            if let TermEnd::Shutdown = ended {
                return resigned.map_err(Into::into);
            }
            if let Err(error) = resigned {
                self.standing.set_reachable(false);
                tracing::warn!(%error, "giving the term's lease up failed; it expires after its TTL");
            }
            if !backoff::sleep(delay, &shutdown).await {
                return Ok(());
            }
        }
    }

    /// One campaign with a fresh lease; the registry counts as reachable
    /// once the lease is granted (a standby then waits in line), and as
    /// unreachable when either step fails.
    async fn campaign(
        &self,
        visor: &Visor,
        election_name: &str,
        identity: &str,
        shutdown: &CancellationToken,
    ) -> Result<Option<Leadership>, RegistryError> {
        let registry = visor.registry();
        let granted =
            Lease::grant_with_deadline(registry, self.config.lease_ttl, self.config.renew_deadline)
                .await;
        self.standing.set_reachable(granted.is_ok());
        let campaign =
            election::campaign_with_lease(registry, election_name, identity, granted?, shutdown)
                .await;
        self.standing.set_reachable(campaign.is_ok());
        campaign
    }

    /// Runs one term's loops until leadership is lost, they fail, or shutdown.
    async fn lead(
        &self,
        visor: &Visor,
        leadership: &Leadership,
        ready: &watch::Sender<bool>,
        shutdown: &CancellationToken,
    ) -> TermEnd {
        let term = leadership.lost().child_token();
        let fenced = visor.fenced(leadership.fence().clone());
        let loops = leader::run_term(
            fenced,
            &self.config,
            &self.prometheus,
            &self.cache_metrics,
            &self.metrics,
            ready,
            term.clone(),
        );
        let ended = tokio::select! {
            ran = loops => match ran {
                Ok(()) => TermEnd::Lost,
                Err(error) => TermEnd::Failed(error),
            },
            () = shutdown.cancelled() => TermEnd::Shutdown,
        };
        term.cancel();
        ended
    }
}
