//! The agent's relation hooks: for every unit running on this host, the
//! hooks the controller hands it (`/hooks/<unit>/<rel-id>`), run one at a
//! time per unit, through the `hook.run` provider task, with the hook tools
//! served on the agent's own socket. `docs/agent.md` ("Relation hooks") is
//! the contract.
//!
//! The shape is a reconcile loop keyed by unit: a cache of `/hooks/`
//! wakes a unit when one of its hooks is handed or goes; the set of units
//! wakes those that start; a unit's reconcile runs its oldest hook once
//! ([`attempt`]) and, on failure, comes back after its backoff.
//!
//! Invariants: only units in the set given get hooks run; a unit never
//! runs two hooks at once (the loop's queue never hands one key out twice)
//! and takes its hooks oldest first, so a failing hook holds the unit's
//! others back, as in Juju; a failed hook is retried with backoff until it
//! succeeds or is withdrawn, its failure recorded on it each time; a hook
//! that started runs to its end (bounded by its timeout) and its outcome is
//! recorded, even when its unit leaves the set or the runner shuts down.

mod attempt;
mod config;
mod endpoint;
mod error;
mod metrics;
mod retries;
mod run;
pub mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use visor_controllers::{HandedHook, Name};

use crate::provider::{Caller, CallerConfig, OwnedSocket, SocketPaths};
use crate::registry::{Kind, Visor};
use crate::runtime::cache::{self, CacheMetrics, CacheReader, Change, Index, Indexes};
use crate::runtime::{Action, ReconcileLoop, Touched};
use attempt::Attempted;
use retries::{HookId, Retries};
use tools::Contexts;

pub use config::{DEFAULT_RETRY, RelationHooksConfig, UnitContext};
pub use error::{RelationHooksError, UnitError};
pub use metrics::HookResult;
pub use tools::{HookTools, ToolError};

/// The name of the loop (its work queue's `name` and controller label).
const LOOP_NAME: &str = "agent-relation-hooks";
/// The caller name of `hook.run` requests (in the response socket's name).
const CALLER_NAME: &str = "agent-hooks";
/// How many units run a hook at once.
const CONCURRENT_UNITS: usize = 16;
/// How often every unit is looked at again, to catch what no change said.
const RESYNC: Duration = Duration::from_secs(300);

/// Hooks by the unit they are handed to.
const HOOKS_BY_UNIT: Index<HandedHook, Name> = Index::new("unit", |path, _| path.unit().cloned());

/// The relation hooks runner, set up and not yet running.
#[derive(Debug)]
pub struct RelationHooks {
    visor: Visor,
    config: RelationHooksConfig,
    prometheus: prometheus::Registry,
    metrics: metrics::HookMetrics,
    cache_metrics: CacheMetrics,
}

impl RelationHooks {
    /// Checks `config` and registers the runner's metrics on `metrics`:
    /// `visor_agent_hook_runs_total`, `visor_agent_hook_duration_seconds`,
    /// its hook cache's `visor_watch_restarts_total`, `visor_relists_total`
    /// and `visor_malformed_objects_total` (label `cache="hook"`), and, once
    /// it runs, its loop's `workqueue_*` and `controller_runtime_*`
    /// (`agent-relation-hooks`).
    pub fn new(
        visor: Visor,
        config: RelationHooksConfig,
        metrics: &prometheus::Registry,
    ) -> Result<Self, RelationHooksError> {
        config.validate()?;
        let cache_metrics = CacheMetrics::register(metrics).map_err(RelationHooksError::Metrics)?;
        Self::with_cache_metrics(visor, config, metrics, cache_metrics)
    }

    /// [`new`](Self::new), its hook cache reporting to `cache_metrics`: for
    /// a process whose caches already registered them on `metrics` (they
    /// can be registered once per registry).
    pub fn with_cache_metrics(
        visor: Visor,
        config: RelationHooksConfig,
        metrics: &prometheus::Registry,
        cache_metrics: CacheMetrics,
    ) -> Result<Self, RelationHooksError> {
        config.validate()?;
        let hook_metrics =
            metrics::HookMetrics::register(metrics).map_err(RelationHooksError::Metrics)?;
        Ok(Self {
            visor,
            config,
            prometheus: metrics.clone(),
            metrics: hook_metrics,
            cache_metrics,
        })
    }

    /// Runs until `shutdown`; `units` is the set of units that are running on
    /// this host now (the agent updates it as instances start and stop).
    ///
    /// At shutdown no hook starts any more; the hooks running are let
    /// finish (each bounded by the hook timeout) and their outcomes
    /// recorded, the hook tools served meanwhile; then it returns.
    pub async fn run(
        self,
        units: watch::Receiver<BTreeMap<Name, UnitContext>>,
        shutdown: CancellationToken,
    ) -> Result<(), RelationHooksError> {
        let config = &self.config;
        let tools_socket = config.tools_socket.clone();
        let paths = SocketPaths {
            lock: tools_socket.with_extension("lock"),
            socket: tools_socket.clone(),
        };
        let (socket, _) =
            OwnedSocket::bind(paths)
                .await
                .map_err(|source| RelationHooksError::ToolsSocket {
                    path: tools_socket,
                    source,
                })?;
        let caller = Caller::bind(CallerConfig::new(&config.socket_dir, CALLER_NAME))
            .await
            .map_err(RelationHooksError::Caller)?;
        // The cache and the tools outlive the loop: hooks still running
        // after it stopped use them.
        let background = CancellationToken::new();
        let _background = background.clone().drop_guard();
        let registry = self.visor.registry().clone();
        let prefix = registry.keys().kind_prefix(Kind::Hook);
        let indexes = Indexes::new().with(HOOKS_BY_UNIT);
        let (hooks, changes) = cache::spawn(
            registry,
            Kind::Hook,
            prefix,
            indexes,
            self.cache_metrics.clone(),
            background.clone(),
        );
        let contexts = Contexts::default();
        let server = tokio::spawn(tools::serve(
            socket,
            contexts.clone(),
            self.visor.clone(),
            background.clone(),
        ));
        let shared = Arc::new(Shared {
            // Validated: both are UTF-8.
            tools_dir: config.tools_dir.to_string_lossy().into_owned(),
            tools_socket: config.tools_socket.to_string_lossy().into_owned(),
            retries: Retries::new(config.retry),
            visor: self.visor,
            config: self.config,
            caller,
            hooks: hooks.clone(),
            units: units.clone(),
            contexts,
            metrics: self.metrics,
            attempts: TaskTracker::new(),
        });
        let mut synced = hooks.clone();
        let outcome = tokio::select! {
            () = synced.wait_synced() => {
                declare(&shared, changes, units).run(self.prometheus, shutdown).await
            }
            () = shutdown.cancelled() => Ok(()),
        };
        shared.attempts.close();
        shared.attempts.wait().await;
        background.cancel();
        if let Err(error) = server.await {
            tracing::warn!(%error, "the hook tools' server failed");
        }
        outcome.map_err(RelationHooksError::Loop)
    }
}

/// What every unit's reconcile shares.
#[derive(Debug)]
struct Shared {
    visor: Visor,
    config: RelationHooksConfig,
    tools_dir: String,
    tools_socket: String,
    caller: Caller,
    hooks: CacheReader<HandedHook>,
    units: watch::Receiver<BTreeMap<Name, UnitContext>>,
    contexts: Contexts,
    retries: Retries,
    metrics: metrics::HookMetrics,
    /// Attempts running: they outlive a reconcile cut short by shutdown.
    attempts: TaskTracker,
}

/// The loop: one key per unit served.
fn declare(
    shared: &Arc<Shared>,
    changes: tokio::sync::mpsc::UnboundedReceiver<Change>,
    units: watch::Receiver<BTreeMap<Name, UnitContext>>,
) -> ReconcileLoop<Name, UnitError> {
    let listed = units.clone();
    let reconciled = shared.clone();
    let (hooks, keys) = (shared.hooks.clone(), shared.visor.registry().keys().clone());
    ReconcileLoop::new(
        LOOP_NAME,
        move || listed.borrow().keys().cloned().collect::<Vec<_>>(),
        move |unit| reconciled.clone().serve(unit),
    )
    .concurrency(CONCURRENT_UNITS)
    .resync_every(RESYNC)
    .watches(changes, move |change| match change {
        Change::Relisted => Touched::All,
        Change::Upserted(key) | Change::Deleted(key) => {
            let Some(unit) = keys.parse(key).unit().cloned() else {
                return Touched::Nothing;
            };
            // The agent's own failure records wake nobody: the unit comes
            // back after its backoff.
            let failure = matches!(change, Change::Upserted(_))
                && hooks
                    .get_shared(key)
                    .is_some_and(|hook| hook.value.failed.is_some());
            Touched::only_if(!failure, unit)
        }
    })
    .triggered_by(started_units(units))
}

/// The units that join the set, each time it changes.
fn started_units(
    mut units: watch::Receiver<BTreeMap<Name, UnitContext>>,
) -> impl Stream<Item = Touched<Name>> + Send + 'static {
    let seen: BTreeSet<Name> = units.borrow_and_update().keys().cloned().collect();
    futures::stream::unfold((units, seen), |(mut units, seen)| async move {
        units.changed().await.ok()?;
        let now: BTreeSet<Name> = units.borrow_and_update().keys().cloned().collect();
        let started = now.difference(&seen).cloned().collect();
        Some((Touched::Keys(started), (units, now)))
    })
}

impl Shared {
    /// Runs `unit`'s oldest hook once, if the unit is served and the hook
    /// is not waiting out its backoff.
    async fn serve(self: Arc<Self>, unit: Name) -> Result<Action, UnitError> {
        let Some(context) = self.units.borrow().get(&unit).cloned() else {
            return Ok(Action::Done);
        };
        let Some(next) = self.next_hook(&unit) else {
            self.retries.forget(&unit);
            return Ok(Action::Done);
        };
        if let Some(wait) = self.retries.wait_left(&unit, &next) {
            return Ok(Action::RequeueAfter(wait));
        }
        // On a task of its own: a hook that started finishes, and its
        // outcome is recorded, even if this reconcile is cut short.
        let attempt = self
            .attempts
            .spawn(self.clone().attempt(context, next.relation.clone()));
        let attempted = attempt.await.map_err(|source| UnitError::Panicked {
            unit: unit.clone(),
            source,
        })??;
        Ok(match attempted {
            Attempted::Acknowledged | Attempted::Gone => {
                self.retries.forget(&unit);
                Action::Done
            }
            Attempted::Failed => Action::RequeueAfter(self.retries.failed(&unit, &next)),
        })
    }

    /// The oldest hook handed to `unit`, as the cache has it.
    fn next_hook(&self, unit: &Name) -> Option<HookId> {
        self.hooks
            .indexed_map(&HOOKS_BY_UNIT, unit, |path, hook| {
                Some(HookId {
                    relation: path.relation()?.clone(),
                    created: hook.create_revision,
                })
            })
            .into_iter()
            .min_by_key(|hook| hook.created)
    }
}
