//! The scale loop: brings one (app, rev, proc) group to its scale factor
//! with start and stop tickets, placing starts on live hosts and removing
//! never-placed excess instances, as `visor_controllers::plan_group` says.
//!
//! Its key is the group. Apps, proc types, revisions and hosts can touch
//! every group; a scale factor, an instance or a ticket touches its own
//! group (or, once gone from its cache, every group).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use visor_controllers::{GroupKey, plan_group};

use super::ControllerConfig;
use super::context::{Context, ReconcileError};
use crate::runtime::cache::Change;
use crate::runtime::runner::Action;
use crate::runtime::{ReconcileLoop, Touched};

/// How soon a group with unplaceable work is looked at again if no host
/// change queues it first.
const UNPLACEABLE_RETRY: Duration = Duration::from_secs(30);

/// How long changes that touch every group are gathered before the groups
/// are listed once for all of them: listing them reads every instance, so a
/// burst of changes must not list them once per change.
const ALL_GROUPS_GATHERING: Duration = Duration::from_millis(50);

/// The scale loop of one term.
pub fn reconcile_loop(
    ctx: &Arc<Context>,
    config: &ControllerConfig,
) -> ReconcileLoop<GroupKey, ReconcileError> {
    let caches = &ctx.caches;
    let every = |_: &Change| Touched::All;
    let (listed, scales, instances, tickets) = (
        caches.clone(),
        caches.clone(),
        caches.clone(),
        caches.clone(),
    );
    let reconciled = ctx.clone();
    ReconcileLoop::new(
        "scale",
        move || listed.groups(),
        move |group| reconcile(reconciled.clone(), group),
    )
    .concurrency(config.concurrency)
    .resync_every(config.resync)
    .gather_all_for(ALL_GROUPS_GATHERING)
    .watches(caches.apps.changes(), every)
    .watches(caches.procs.changes(), every)
    .watches(caches.revs.changes(), every)
    .watches(caches.hosts.changes(), every)
    .watches(caches.scales.changes(), move |change| {
        change
            .key()
            .and_then(|key| scales.group_of_scale(key))
            .into()
    })
    .watches(caches.instances.changes(), move |change| {
        let instance = change
            .key()
            .and_then(|key| instances.instances.get_shared(key));
        instance
            .map(|instance| GroupKey::of(&instance.value))
            .into()
    })
    .watches(caches.tickets.changes(), move |change| {
        // A finished stop ticket changes what counts as stopping.
        let ticket = change.key().and_then(|key| tickets.tickets.get_shared(key));
        ticket
            .map(|ticket| {
                let ticket = &ticket.value;
                GroupKey::new(ticket.app.clone(), ticket.rev.clone(), ticket.proc.clone())
            })
            .into()
    })
}

/// Brings one (app, rev, proc) group to its scale factor.
pub async fn reconcile(ctx: Arc<Context>, group: GroupKey) -> Result<Action, ReconcileError> {
    let _placing = ctx.placement.lock().await;
    ctx.caught_up().await?;
    let plan = plan_group(&group, &ctx.caches.group_snapshot(&group));
    let waiting: u32 = plan.unplaceable.iter().map(|u| u.count).sum();
    ctx.metrics
        .unplaceable
        .with_label_values(&[group.app.as_str(), group.rev.as_str(), group.proc.as_str()])
        .set(i64::from(waiting));
    if !plan.starts.is_empty() {
        let now = Utc::now();
        let instances = plan
            .starts
            .iter()
            .map(|start| start.instance(now))
            .collect();
        let mut started = 0;
        // Counted per transaction: if a later one fails, what was written is
        // still waited for and counted.
        let emitted = ctx
            .visor
            .emit_starts(instances, |ids, revision| {
                ctx.wrote_instances(revision);
                ctx.wrote_tickets(revision);
                ctx.metrics
                    .tickets
                    .with_label_values(&["start"])
                    .inc_by(ids.len() as u64);
                started += ids.len();
            })
            .await;
        tracing::info!(%group, started, planned = plan.starts.len(), "emitted start tickets");
        emitted?;
    }
    for removal in &plan.removals {
        let key = ctx.visor.registry().keys().instance(&removal.instance);
        if let Some(instance) = ctx.caches.instances.get(&key) {
            let revision = ctx.visor.unregister_instance(&instance).await?;
            ctx.wrote_instances(revision);
        }
    }
    if !plan.stops.is_empty() {
        let revision = ctx.visor.emit_stops(&plan.stops).await?;
        ctx.wrote_tickets(revision);
        ctx.metrics
            .tickets
            .with_label_values(&["stop"])
            .inc_by(plan.stops.len() as u64);
        tracing::info!(%group, stopped = plan.stops.len(), "emitted stop tickets");
    }
    // Waiting work is looked at again when hosts change; this is the fallback.
    Ok(match waiting {
        0 => Action::Done,
        _ => Action::RequeueAfter(UNPLACEABLE_RETRY),
    })
}
