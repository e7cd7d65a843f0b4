//! The relation loop: for each relation, hand every unit its next hook.
//!
//! A reconcile reads one relation from the caches — the running instances
//! of its apps, the live hosts, its units' settings versions, acknowledged
//! states and outstanding hooks, and the instances of the units holding
//! them — into a [`RelationSnapshot`], asks the relation's pure
//! [`RelationHooks`] for its plan (who takes part, what each unit needs),
//! and writes it in batched, fenced transactions.
//!
//! Invariants: a decision is made from hook and state caches at the same
//! revision (an acknowledgement writes both in one transaction, so seeing one
//! half would hand the acknowledged hook again) and after this leader's own
//! last writes; a unit has at most one hook outstanding per relation, since
//! hooks are only ever created where none exists.
//!
//! Its key is the relation. A change of a relation, settings, state or hook
//! touches the relation its key names; an instance change touches the
//! relations of its app and those it holds state in; a host change can
//! touch any relation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use visor_controllers::{
    HookInfo, Instance, Name, RelationHooks, RelationSnapshot, RelationState, UnitAction,
};

use super::ControllerConfig;
use super::caches::{
    Caches, HOOKS_BY_RELATION, RUNNING_BY_APP, SETTINGS_BY_RELATION, STATES_BY_RELATION,
    STATES_BY_UNIT,
};
use super::context::{Context, ReconcileError};
use super::metrics::ControllerMetrics;
use crate::registry::{Versioned, Visor};
use crate::runtime::cache::Change;
use crate::runtime::runner::Action;
use crate::runtime::{ReadYourWrites, ReconcileLoop, Touched, read_your_writes};

/// The relation loop of one term.
pub fn reconcile_loop(
    ctx: &Context,
    config: &ControllerConfig,
) -> ReconcileLoop<Name, ReconcileError> {
    let caches = &ctx.caches;
    let relations = Arc::new(RelationContext::new(
        ctx.visor.clone(),
        caches.clone(),
        ctx.metrics.clone(),
    ));
    let (listed, instances) = (caches.clone(), caches.clone());
    let named = || {
        let caches = caches.clone();
        move |change: &Change| relation_of_change(&caches, change).into()
    };
    ReconcileLoop::new(
        "relation",
        move || all_relations(&listed),
        move |relation| reconcile(relations.clone(), relation),
    )
    .concurrency(config.concurrency)
    .resync_every(config.resync)
    .watches(caches.hosts.changes(), |_| Touched::All)
    .watches(caches.relations.changes(), named())
    .watches(caches.settings.changes(), named())
    .watches(caches.states.changes(), named())
    .watches(caches.hooks.changes(), named())
    // Membership follows running instances; units hold state.
    .watches(caches.instances.changes(), move |change| {
        let touched = change
            .key()
            .and_then(|key| relations_of_instance(&instances, key));
        touched.map_or(Touched::All, |touched| {
            Touched::Keys(touched.into_iter().collect())
        })
    })
}

/// What every relation reconcile of one leadership shares.
#[derive(Debug)]
pub struct RelationContext {
    /// The fenced API.
    pub visor: Visor,
    pub caches: Caches,
    pub metrics: ControllerMetrics,
    /// Per relation, the hook sources of its units.
    drivers: std::sync::Mutex<HashMap<Name, RelationHooks>>,
    /// This leader's last relation writes.
    written: ReadYourWrites,
}

impl RelationContext {
    /// A context with no hook source yet: each is rebuilt from the registry.
    pub fn new(visor: Visor, caches: Caches, metrics: ControllerMetrics) -> Self {
        Self {
            visor,
            caches,
            metrics,
            drivers: std::sync::Mutex::default(),
            written: ReadYourWrites::default(),
        }
    }

    /// Waits until the hook and state caches show this leader's last write
    /// and each other's revision.
    async fn caught_up(&self) -> Result<(), ReconcileError> {
        let (hooks, states) = (&self.caches.hooks, &self.caches.states);
        let lined_up = hooks.revision().max(states.revision());
        let reached = |[written]: [i64; 1]| async move {
            let target = written.max(lined_up);
            hooks.wait_for_revision(target).await && states.wait_for_revision(target).await
        };
        Ok(self
            .written
            .caught_up(self.visor.registry(), reached)
            .await?)
    }
}

/// Every relation to look at: those registered, and those units still hold
/// state or hooks for (removed relations winding down).
fn all_relations(caches: &Caches) -> BTreeSet<Name> {
    let registered = caches.relations.list_map(|path, _| path.name().cloned());
    let held = caches
        .states
        .index_counts(&STATES_BY_RELATION)
        .into_keys()
        .chain(caches.hooks.index_counts(&HOOKS_BY_RELATION).into_keys());
    registered.into_iter().chain(held).collect()
}

/// The relation a change of a relation, settings, state or hook key is about.
fn relation_of_change(caches: &Caches, change: &Change) -> Option<Name> {
    caches.keys().parse(change.key()?).relation().cloned()
}

/// The relations an instance change can touch: those of its app, and those
/// it holds state in. `None` when that cannot be known (it is gone).
fn relations_of_instance(caches: &Caches, key: &str) -> Option<BTreeSet<Name>> {
    let instance = caches.instances.get_shared(key)?;
    let unit = caches.keys().parse(&instance.key).name()?.clone();
    let app = &instance.value.app;
    let mut touched: BTreeSet<Name> = caches
        .relations
        .list_map(|path, r| {
            path.name()
                .filter(|_| r.value.apps().any(|a| a == app))
                .cloned()
        })
        .into_iter()
        .collect();
    touched.extend(
        caches
            .states
            .indexed_map(&STATES_BY_UNIT, &unit, |path, _| path.relation().cloned()),
    );
    Some(touched)
}

/// Hands every unit of `relation` what it needs next.
pub async fn reconcile(
    ctx: Arc<RelationContext>,
    relation: Name,
) -> Result<Action, ReconcileError> {
    ctx.caught_up().await?;
    let caches = &ctx.caches;
    let keys = caches.keys();
    let registered = caches.relations.get(&keys.relation(&relation));
    if let Some(invalid) = registered.as_ref().and_then(|r| r.value.check().err()) {
        // Written around Visor (etcdctl): leave its units as they are.
        tracing::warn!(%relation, %invalid, "skipping an invalid relation");
        return Ok(Action::Done);
    }
    // The running instances of its apps: every instance that could be one
    // of its units.
    let running: Vec<(Name, Arc<Versioned<Instance>>)> = registered
        .iter()
        .flat_map(|registered| registered.value.apps())
        .flat_map(|app| {
            caches
                .instances
                .indexed_map(&RUNNING_BY_APP, app, |path, i| {
                    Some((path.name()?.clone(), i.clone()))
                })
        })
        .collect();
    let live_hosts = caches.live_hosts();
    let versions: BTreeMap<Name, i64> = caches
        .settings
        .indexed_map(&SETTINGS_BY_RELATION, &relation, |path, s| {
            Some((path.unit()?.clone(), s.mod_revision))
        })
        .into_iter()
        .collect();
    // Hooks first, then states at least as new: an acknowledgement deletes
    // the hook and writes the state in one transaction, so a hook gone from
    // the snapshot always has its state write in the states snapshot. (The
    // other skew, a state ahead of its still-cached hook, is harmless: the
    // unit is left idle until the hook's deletion queues the relation again.)
    let outstanding: BTreeMap<Name, HookInfo> = caches
        .hooks
        .indexed_map(&HOOKS_BY_RELATION, &relation, |path, h| {
            Some((path.unit()?.clone(), h.value.clone()))
        })
        .into_iter()
        .collect();
    let hooks_at = caches.hooks.revision();
    read_your_writes::reach(hooks_at, caches.states.wait_for_revision(hooks_at)).await?;
    let stored: BTreeMap<Name, Arc<Versioned<RelationState>>> = caches
        .states
        .indexed_map(&STATES_BY_RELATION, &relation, |path, s| {
            Some((path.unit()?.clone(), s.clone()))
        })
        .into_iter()
        .collect();
    // The instances of the units that hold a state or a hook: whether they
    // can still run hooks.
    let holders: Vec<(Name, Arc<Versioned<Instance>>)> = stored
        .keys()
        .chain(outstanding.keys())
        .filter_map(|unit| {
            let instance = caches.instances.get_shared(&keys.instance(unit))?;
            Some((unit.clone(), instance))
        })
        .collect();
    let snapshot = RelationSnapshot {
        registered: registered.as_ref().map(|r| &r.value),
        instances: running
            .iter()
            .chain(&holders)
            .map(|(unit, i)| (unit, &i.value))
            .collect(),
        live_hosts: &live_hosts,
        versions,
        stored: stored
            .iter()
            .map(|(unit, s)| (unit.clone(), &s.value))
            .collect(),
        outstanding,
    };

    let plan = {
        let mut drivers = ctx
            .drivers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let driver = drivers
            .entry(relation.clone())
            .or_insert_with(|| RelationHooks::new(relation.as_str()));
        let plan = driver.plan(snapshot);
        if plan.finished {
            drivers.remove(&relation);
        }
        plan
    };

    let revision = ctx.visor.write_units(&relation, &plan.writes).await?;
    ctx.written.wrote(revision);
    for write in &plan.writes {
        if let UnitAction::Hand { hook, .. } = &write.action {
            ctx.metrics
                .hooks
                .with_label_values(&[hook.kind.as_str()])
                .inc();
        }
    }
    if plan.clear {
        let revision = ctx.visor.clear_relation(&relation).await?;
        ctx.written.wrote(revision);
    }
    if !plan.writes.is_empty() {
        tracing::debug!(%relation, writes = plan.writes.len(), "relation units written");
    }
    Ok(Action::Done)
}
