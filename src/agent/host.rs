//! The host's registration: registered (or taken back on the lease kept in
//! the data dir) at start, kept alive, registered again after it is lost,
//! marked draining, and removed on the way out; and what the agent does
//! about the registry's view of its instances each time it registers.
//!
//! Invariants: the lease id in the data dir is always the one the host key
//! was last bound to, so a restarted agent resumes it; once the lease is
//! lost, instances keep running for the disconnect window and are stopped
//! when it passes without a new registration, so that the controller's
//! replacements never run beside them for longer; after every
//! registration the registry is reconciled against the slots (an instance
//! the controller marked lost is stopped here; one the registry says runs
//! here but no slot runs is reported gone).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use visor_controllers::{Host, InstanceState};

use super::context::Context;
use super::identity::{DataDir, IdentityError, boot_id};
use super::slot::StopReason;
use crate::registry::{BackoffPolicy, Error, HostRegistration, InstanceFilter, backoff};
use crate::telemetry::Chain;

/// How re-registration backs off.
const REREGISTER: BackoffPolicy = BackoffPolicy {
    min: Duration::from_millis(100),
    max: Duration::from_secs(2),
    healthy: Duration::from_secs(30),
};

/// Where the host's registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// The host key is in the registry, on a live lease.
    Registered,
    /// The lease was lost at this instant; registering again.
    Lost(Instant),
}

/// Why the host could not be registered at start.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Another agent, alive, holds the host name.
    #[error(
        "host {0} is registered by another live agent (another data dir); stop it or pick another --host"
    )]
    Taken(String),
    /// The registry refused or could not be reached.
    #[error("cannot register host {host}")]
    Registry {
        /// The host.
        host: String,
        /// Why.
        #[source]
        source: Error,
    },
    /// The data dir could not record the lease.
    #[error(transparent)]
    DataDir(#[from] IdentityError),
}

/// The host's registration and the data dir that remembers its lease.
pub struct HostKeeper {
    ctx: Arc<Context>,
    data_dir: Mutex<DataDir>,
    admin_url: String,
    registration: Mutex<Option<HostRegistration>>,
    connection: watch::Sender<Connection>,
}

impl HostKeeper {
    /// Registers the host (taking back the lease the data dir names, if
    /// etcd still has it); refused while another agent holds the name.
    pub async fn register(
        ctx: Arc<Context>,
        data_dir: DataDir,
        admin_url: String,
    ) -> Result<Self, RegisterError> {
        let keeper = Self {
            ctx,
            data_dir: Mutex::new(data_dir),
            admin_url,
            registration: Mutex::new(None),
            connection: watch::Sender::new(Connection::Lost(Instant::now())),
        };
        match keeper.register_once().await {
            Ok(()) => Ok(keeper),
            Err(Error::AlreadyExists(_)) => Err(RegisterError::Taken(keeper.ctx.host.to_string())),
            Err(source) => Err(RegisterError::Registry {
                host: keeper.ctx.host.to_string(),
                source,
            }),
        }
    }

    /// Follows the registration's state.
    pub fn connection(&self) -> watch::Receiver<Connection> {
        self.connection.subscribe()
    }

    async fn register_once(&self) -> Result<(), Error> {
        let mut data_dir = self.data_dir.lock().await;
        let spec = self.spec(data_dir.incarnation());
        let (visor, host, ttl) = (
            &self.ctx.visor,
            self.ctx.host.as_str(),
            self.ctx.config.lease_ttl,
        );
        let registration = match data_dir.lease() {
            Some(lease) => visor.resume_host(host, spec, lease, ttl).await?,
            None => visor.register_host(host, spec, ttl).await?,
        };
        if let Err(error) = data_dir.set_lease(Some(registration.lease_id())) {
            tracing::warn!(error = %Chain(&error), "cannot record the host's lease; a restart registers afresh");
        }
        drop(data_dir);
        *self.registration.lock().await = Some(registration);
        self.connection.send_replace(Connection::Registered);
        tracing::info!(host, "host registered");
        reconcile(&self.ctx).await;
        Ok(())
    }

    fn spec(&self, incarnation: u64) -> Host {
        let config = &self.ctx.config;
        Host {
            addr: config.addr.clone(),
            capacity: config.capacity,
            labels: config.labels.iter().cloned().collect(),
            stacks: config.stacks.clone(),
            registered_at: Utc::now(),
            draining: false,
            admin_url: Some(self.admin_url.clone()),
            boot_id: boot_id(),
            incarnation,
        }
    }

    /// Keeps the host registered until `shutdown`: registers again after
    /// a loss, and stops the instances if the disconnect window passes first.
    pub async fn keep(&self, shutdown: CancellationToken) {
        loop {
            let lost = match self.registration.lock().await.as_ref() {
                Some(registration) => registration.lost(),
                None => CancellationToken::new(),
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = lost.cancelled() => {}
            }
            let since = Instant::now();
            tracing::warn!(host = %self.ctx.host, "host registration lost; registering again");
            self.connection.send_replace(Connection::Lost(since));
            *self.registration.lock().await = None;
            // The window runs beside the attempts, which may each hang for
            // as long as the registry does not answer.
            let window = self.ctx.config.stop_after_disconnect();
            let ctx = Arc::clone(&self.ctx);
            let host = self.ctx.host.clone();
            let disconnected = tokio::spawn(async move {
                tokio::time::sleep_until(since + window).await;
                tracing::warn!(%host, ?window, "disconnected past the window: stopping every instance");
                stop_all(&ctx, StopReason::Disconnected).await;
            });
            let mut delays = REREGISTER.start();
            let registered = loop {
                match self.register_once().await {
                    Ok(()) => break true,
                    Err(error) => {
                        tracing::debug!(error = %Chain(&error), "cannot register the host yet")
                    }
                }
                if !backoff::sleep(delays.next_delay(Duration::ZERO), &shutdown).await {
                    break false;
                }
            };
            // Stops already asked for go on in their slots.
            disconnected.abort();
            if !registered {
                return;
            }
        }
    }

    /// Marks the host draining: the controller places nothing new here and
    /// moves its instances away. Retried while the registry is unavailable.
    pub async fn drain(&self) -> Result<(), Error> {
        let mut registration = self.registration.lock().await;
        let Some(registration) = registration.as_mut() else {
            return Ok(());
        };
        let mut delays = REREGISTER.start();
        loop {
            match registration.drain(&self.ctx.visor).await {
                Err(Error::Unavailable { .. }) if !self.ctx.shutdown.is_cancelled() => {
                    backoff::sleep(delays.next_delay(Duration::ZERO), &self.ctx.shutdown).await;
                }
                other => return other,
            }
        }
    }

    /// Removes the host: its lease is revoked and forgotten.
    pub async fn deregister(&self) {
        if let Some(registration) = self.registration.lock().await.take()
            && let Err(error) = registration.deregister().await
        {
            tracing::warn!(error = %Chain(&error), "cannot revoke the host's lease; it expires on its own");
        }
        if let Err(error) = self.data_dir.lock().await.set_lease(None) {
            tracing::warn!(error = %Chain(&error), "cannot forget the host's lease");
        }
    }
}

/// Stops every slot for `reason`, all at once.
pub async fn stop_all(ctx: &Context, reason: StopReason) {
    let slots = ctx.all_slots();
    futures::future::join_all(slots.iter().map(|slot| slot.stop(reason))).await;
}

/// Compares what the registry says runs here with what does, and mends
/// the difference.
pub async fn reconcile(ctx: &Context) {
    let filter = InstanceFilter {
        host: Some(ctx.host.to_string()),
        ..InstanceFilter::default()
    };
    let listed = match ctx.visor.instances(&filter).await {
        Ok(listed) => listed,
        Err(error) => {
            tracing::warn!(error = %Chain(&error), "cannot list this host's instances to reconcile");
            return;
        }
    };
    let mut seen = std::collections::HashSet::new();
    for instance in &listed.items {
        let Ok(id) = visor_controllers::Name::parse("instance", instance.name()) else {
            continue;
        };
        seen.insert(id.clone());
        let state = instance.value.state;
        match (ctx.slot(&id), state) {
            (Some(slot), _) if state.is_terminal() => {
                tracing::info!(instance = %id, %state, "the registry ended it; stopping it here");
                tokio::spawn(async move { slot.stop(StopReason::Replaced).await });
            }
            (None, InstanceState::Running) => {
                let reason = "its process is gone: stopped while its host was away".to_owned();
                let _ = ctx
                    .move_instance(&id, InstanceState::Failed, None, Some(reason))
                    .await;
            }
            (None, InstanceState::Stopping) => {
                let reason = "stopped while its host was away".to_owned();
                let _ = ctx
                    .move_instance(&id, InstanceState::Exited, None, Some(reason))
                    .await;
            }
            _ => {}
        }
    }
    for slot_id in ctx.lock_slots().keys().cloned().collect::<Vec<_>>() {
        if !seen.contains(&slot_id)
            && let Some(slot) = ctx.slot(&slot_id)
        {
            tracing::info!(instance = %slot_id, "the registry no longer has it; stopping it here");
            tokio::spawn(async move { slot.stop(StopReason::Replaced).await });
        }
    }
}
