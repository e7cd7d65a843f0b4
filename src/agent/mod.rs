//! The host agent (`visor agent`): the host's side of Visor.
//!
//! It registers the host under a lease ([`host`]), claims the host's tickets
//! in registry order ([`tickets`]), runs each instance in a slot of its own
//! through the provider tasks ([`slot`], [`tasks`]; the built-in exec
//! provider is served in the same process, and a provider with a higher
//! priority takes a task over), keeps a write-ahead record of every
//! instance ([`journal`]) so that a restarted agent re-attaches instead of
//! starting again, and drains on request: the host is marked draining, the
//! controller moves its instances away, what is left is stopped, and only
//! then is the host removed. It runs its units' relation hooks and serves
//! their hook tools ([`relation_hooks`]). The contract it follows is
//! docs/agent.md.
//!
//! Invariant: an agent that stops without draining (a crash, SIGKILL, or a
//! shutdown without drain) leaves every instance running: the next agent
//! on the same data dir takes the host's lease back and re-attaches.

mod config;
mod context;
mod host;
mod identity;
mod journal;
mod metrics;
mod ports;
mod readiness;
pub mod relation_hooks;
mod slot;
mod spec;
mod state_dir;
mod tasks;
mod tickets;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{AgentConfig, ConfigError};
pub use host::{Connection, RegisterError};
pub use identity::IdentityError;
pub use journal::JournalError;
pub use metrics::{AgentMetrics, InstancePhase, Outcome};
pub use relation_hooks::{RelationHooks, RelationHooksConfig, RelationHooksError, UnitContext};
pub use state_dir::{Result, StateDir, StateDirError, StateDirs};

use context::Context;
use host::HostKeeper;
use identity::DataDir;
use journal::Journal;
use ports::Ports;
use slot::{Begin, StopReason};

use crate::admin::{AgentAdmin, AgentAdminError};
use crate::provider::exec::{self, ExecProvider, InstanceError};
use crate::provider::{
    Bound, Caller, CallerConfig, CallerError, Provider, ProviderConfig, ServeError,
};
use crate::registry::Visor;
use crate::runtime::cache::CacheMetrics;
use crate::telemetry::Chain;

/// The name of the agent's response hooks.
const NAME: &str = "agent";
/// The provider name of the exec provider the agent serves.
const EXEC_NAME: &str = "exec";

/// Why an agent could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration cannot run as asked.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data dir is another agent's, or unusable.
    #[error(transparent)]
    DataDir(#[from] IdentityError),
    /// The instance records cannot be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The exec provider cannot be set up.
    #[error("cannot set up the exec provider")]
    Exec(#[source] InstanceError),
    /// The exec provider cannot serve.
    #[error("cannot serve the exec provider")]
    Provider(#[source] ServeError),
    /// The agent cannot call providers.
    #[error("cannot call providers")]
    Caller(#[source] CallerError),
    /// The admin endpoint cannot be served.
    #[error("cannot serve the admin endpoint")]
    Admin(#[source] AgentAdminError),
    /// The metrics cannot be registered.
    #[error("cannot register the agent's metrics")]
    Metrics(#[source] prometheus::Error),
    /// The host cannot be registered.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// The relation hooks cannot be run.
    #[error("cannot run relation hooks")]
    Hooks(#[source] RelationHooksError),
}

/// An agent that holds its data dir and serves its providers and admin
/// endpoint, ready to [`run`](Agent::run).
pub struct Agent {
    ctx: Arc<Context>,
    data_dir: DataDir,
    admin: AgentAdmin,
    admin_url: String,
    provider: Bound,
    metrics: prometheus::Registry,
    resumed: BTreeMap<visor_controllers::Name, journal::Record>,
    corrupt: Vec<String>,
    exec: ExecProvider,
    hooks_config: RelationHooksConfig,
}

impl Agent {
    /// Checks `config`, takes its data dir, binds the exec provider and the
    /// admin endpoint. Nothing is written to the registry yet.
    pub async fn start(visor: Visor, config: AgentConfig) -> Result<Self, AgentError> {
        config.validate()?;
        let host = config.host_name()?;
        let data_dir = DataDir::take(&config.data_dir, &host)?;
        let journal = Journal::open(data_dir.path().join("instances"))?;
        let (resumed, corrupt) = journal.read_all()?;
        let socket_dir = config.socket_dir();
        let exec = ExecProvider::new(data_dir.path().join("exec")).map_err(AgentError::Exec)?;
        let provider_config = ProviderConfig {
            socket_dir: socket_dir.clone(),
            ..ProviderConfig::new(EXEC_NAME)
        };
        let (provider, local) = exec::register_local(Provider::new(provider_config), &exec);
        let provider = provider.bind().await.map_err(AgentError::Provider)?;
        let caller = Caller::bind(CallerConfig::new(&socket_dir, NAME))
            .await
            .map_err(AgentError::Caller)?;
        let hooks_config = RelationHooksConfig::new(
            &socket_dir,
            data_dir.path().join("relations"),
            data_dir.path().join("hooks.sock"),
        )
        .map_err(AgentError::Hooks)?;
        let metrics = prometheus::Registry::new();
        let agent_metrics = AgentMetrics::new(&metrics).map_err(AgentError::Metrics)?;
        let admin = AgentAdmin::bind(
            &config.admin,
            metrics.clone(),
            data_dir.path().join("exec").join("instances"),
            agent_metrics.ready(),
            agent_metrics.health(),
        )
        .await
        .map_err(AgentError::Admin)?;
        let admin_url = admin.url();
        let ctx = Arc::new(Context {
            visor,
            host,
            ports: Ports::new(config.port_range),
            config,
            tasks: tasks::Tasks::new(
                caller,
                Some(tasks::Local {
                    name: EXEC_NAME.to_owned(),
                    tasks: local,
                }),
            ),
            journal,
            units: watch::Sender::new(BTreeMap::new()),
            slots: Default::default(),
            phases: Default::default(),
            metrics: agent_metrics,
            artifacts: Default::default(),
            shutdown: CancellationToken::new(),
        });
        Ok(Self {
            ctx,
            data_dir,
            admin,
            admin_url,
            provider,
            metrics,
            resumed,
            corrupt,
            exec,
            hooks_config,
        })
    }

    /// Where the admin endpoint is served.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Runs the agent: re-attaches to the instances recorded before,
    /// registers the host, and executes its tickets, until `drain` (the host
    /// drains and leaves, stopping every instance) or `shutdown` (the agent
    /// stops and every instance keeps running) is cancelled.
    pub async fn run(
        self,
        drain: CancellationToken,
        drain_timeout: Duration,
        shutdown: CancellationToken,
    ) -> Result<(), AgentError> {
        let Self {
            ctx,
            data_dir,
            admin,
            admin_url,
            provider,
            metrics,
            resumed,
            corrupt,
            exec,
            hooks_config,
        } = self;
        let stop = ctx.shutdown.clone();
        let serving = CancellationToken::new();
        let provider_task = tokio::spawn(provider.serve(serving.clone()));
        let admin_task = tokio::spawn(admin.serve(serving.clone()));
        let resumed: Vec<_> = resumed
            .into_iter()
            .map(|(id, record)| slot::spawn(&ctx, id, Begin::Resume(record)))
            .collect();
        for id in corrupt {
            settle_corrupt(&ctx, &exec, &id).await;
        }
        let keeper = match HostKeeper::register(Arc::clone(&ctx), data_dir, admin_url).await {
            Ok(keeper) => Arc::new(keeper),
            Err(error) => {
                stop.cancel();
                serving.cancel();
                await_quietly(provider_task).await;
                return Err(error.into());
            }
        };
        // Ready once registered and back with every instance it ran before.
        let (attached_tx, attached) = watch::channel(false);
        tokio::spawn(async move {
            futures::future::join_all(resumed.iter().map(|slot| slot.started())).await;
            attached_tx.send_replace(true);
        });
        let cache_metrics = CacheMetrics::register(&metrics).map_err(AgentError::Metrics)?;
        let tickets = tokio::spawn(tickets::run(
            Arc::clone(&ctx),
            cache_metrics.clone(),
            stop.clone(),
        ));
        let hooks = RelationHooks::with_cache_metrics(
            ctx.visor.clone(),
            hooks_config,
            &metrics,
            cache_metrics,
        )
        .map_err(AgentError::Hooks)?;
        let hooks = tokio::spawn(hooks.run(ctx.units.subscribe(), stop.clone()));
        let keeping = {
            let keeper = Arc::clone(&keeper);
            let stop = stop.clone();
            tokio::spawn(async move { keeper.keep(stop).await })
        };
        let connection = keeper.connection();
        let health_task = tokio::spawn(follow_health(
            Arc::clone(&ctx),
            connection,
            attached,
            stop.clone(),
        ));
        let drained = tokio::select! {
            () = drain.cancelled() => true,
            () = shutdown.cancelled() => false,
        };
        if drained {
            drain_host(&ctx, &keeper, drain_timeout).await;
        }
        stop.cancel();
        await_quietly(tickets).await;
        match hooks.await {
            Ok(Err(error)) => {
                tracing::warn!(error = %Chain(&error), "relation hooks stopped with an error")
            }
            Err(error) => tracing::warn!(%error, "the relation hooks task failed"),
            Ok(Ok(())) => {}
        }
        await_quietly(keeping).await;
        await_quietly(health_task).await;
        if drained {
            keeper.deregister().await;
        }
        serving.cancel();
        await_quietly(provider_task).await;
        if let Ok(Err(error)) = admin_task.await {
            tracing::warn!(%error, "the admin endpoint failed");
        }
        Ok(())
    }
}

/// The drain: the host stops taking work, the controller moves its
/// instances, what is left after `timeout` is stopped here.
async fn drain_host(ctx: &Context, keeper: &HostKeeper, timeout: Duration) {
    tracing::info!(host = %ctx.host, "draining");
    if let Err(error) = keeper.drain().await {
        tracing::warn!(error = %Chain(&error), "cannot mark the host draining; stopping its instances");
    }
    let moved = async {
        while !ctx.all_slots().is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(timeout, moved).await.is_err() {
        tracing::info!(
            left = ctx.all_slots().len(),
            "stopping what the controller did not move"
        );
    }
    host::stop_all(ctx, StopReason::Drain).await;
}

/// An instance whose record did not read: whatever runs of it is stopped
/// (its invocation found in the exec provider's own state), and it is
/// reported failed for the controller to replace.
async fn settle_corrupt(ctx: &Context, exec: &ExecProvider, id: &str) {
    let Ok(id) = visor_controllers::Name::parse("instance", id) else {
        return;
    };
    tracing::warn!(instance = %id, "its record was corrupt: stopping what runs of it");
    if let Some(invocation) = exec.instances().recorded_invocation(id.as_str()) {
        let kill_timeout = Duration::from_secs(u64::from(
            visor_controllers::ProcType::DEFAULT_KILL_TIMEOUT_SECS,
        ));
        if let Err(error) = ctx.tasks.stop(id.as_str(), &invocation, kill_timeout).await {
            tracing::warn!(instance = %id, %error, "cannot stop it");
        }
    }
    let reason = "its agent's record of it was corrupt: stopped".to_owned();
    if let Err(error) = ctx
        .move_instance(
            &id,
            visor_controllers::InstanceState::Failed,
            None,
            Some(reason),
        )
        .await
    {
        tracing::warn!(instance = %id, error = %Chain(&error), "cannot report it failed");
    }
}

/// Keeps `/healthz`, `/readyz` and the registry gauges saying whether the
/// registry holds the host.
async fn follow_health(
    ctx: Arc<Context>,
    mut connection: watch::Receiver<Connection>,
    mut attached: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    loop {
        let registered = *connection.borrow_and_update() == Connection::Registered;
        let back = *attached.borrow_and_update();
        ctx.metrics.set_registry_reachable(registered);
        ctx.metrics.set_registered(registered && back);
        tokio::select! {
            changed = connection.changed() => if changed.is_err() { return },
            // Once true it stays true (its sender is gone then).
            _ = attached.changed(), if !back => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn await_quietly<T>(task: JoinHandle<T>) {
    if let Err(error) = task.await {
        tracing::warn!(%error, "an agent task failed");
    }
}
