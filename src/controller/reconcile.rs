//! The reconcile functions: read the caches, ask the pure core what to do,
//! and apply its actions as fenced, batched writes.
//!
//! Invariants: every decision is made from caches that have caught up with
//! this leader's last write, including any whose outcome is unknown
//! (`UnknownOutcomes`); scale decisions are serialized, because groups
//! share host capacity; a write refused by the fence (`Deposed`) writes
//! nothing and fails the reconcile, while the term itself ends when the
//! election notices the lost leadership.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::Utc;
use tokio::sync::Mutex;
use visor_controllers::{
    GroupKey, Name, TicketRef, orphan_tickets, plan_gc, plan_group, plan_liveness,
};

use super::caches::Caches;
use super::metrics::ControllerMetrics;
use crate::registry::{Error, StopRequest, Visor};
use crate::runtime::UnknownOutcomes;
use crate::runtime::runner::Action;

/// What every reconcile of one leadership shares.
#[derive(Debug, Clone)]
pub struct Context {
    /// The fenced API: every write requires this leadership.
    pub visor: Visor,
    pub caches: Caches,
    pub metrics: ControllerMetrics,
    /// How long terminal instances are kept.
    pub retention: chrono::TimeDelta,
    /// How many notifications are kept, at most.
    pub notifications_kept: u64,
    /// How long notifications are kept, at most.
    pub notifications_max_age: chrono::TimeDelta,
    /// This leader's last writes (read-your-writes).
    pub written: Arc<Written>,
    /// Writes that failed with an unknown outcome, resolved before deciding.
    pub unknown: Arc<UnknownOutcomes>,
    /// Serializes placement: concurrent groups would otherwise fill one slot twice.
    pub placement: Arc<Mutex<()>>,
}

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The caches did not show our own last write in time.
    #[error("caches have not caught up with revision {0}")]
    Behind(i64),
    /// A registry write or read failed.
    #[error(transparent)]
    Registry(#[from] Error),
}

/// The revisions of this leader's last writes, per prefix it writes: a cache
/// only advances on events under its own prefix, so each is waited for by the
/// cache that will show it.
#[derive(Debug, Default)]
pub struct Written {
    instances: AtomicI64,
    tickets: AtomicI64,
}

impl Context {
    fn wrote_instances(&self, revision: i64) {
        self.written.instances.fetch_max(revision, Ordering::SeqCst);
    }

    fn wrote_tickets(&self, revision: i64) {
        self.written.tickets.fetch_max(revision, Ordering::SeqCst);
    }

    async fn caught_up(&self) -> Result<(), ReconcileError> {
        if let Some(barrier) = self.unknown.resolve(self.visor.registry()).await? {
            self.wrote_instances(barrier);
            self.wrote_tickets(barrier);
        }
        let instances = self.written.instances.load(Ordering::SeqCst);
        let tickets = self.written.tickets.load(Ordering::SeqCst);
        match self.caches.caught_up(instances, tickets).await {
            true => Ok(()),
            false => Err(ReconcileError::Behind(instances.max(tickets))),
        }
    }
}

/// Brings one (app, rev, proc) group to its scale factor.
pub async fn scale(ctx: Arc<Context>, group: GroupKey) -> Result<Action, ReconcileError> {
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
    let mut stops = Vec::new();
    for stop in &plan.stops {
        match &stop.host {
            Some(host) => stops.push(StopRequest {
                instance: stop.instance.clone(),
                host: host.clone(),
                app: group.app.clone(),
                rev: group.rev.clone(),
                proc: group.proc.clone(),
            }),
            // No host was ever assigned, so no agent can stop it: remove it.
            None => {
                if let Some(instance) = ctx
                    .caches
                    .instances
                    .get(&ctx.visor.registry().keys().instance(&stop.instance))
                {
                    let revision = ctx.visor.unregister_instance(&instance).await?;
                    ctx.wrote_instances(revision);
                }
            }
        }
    }
    if !stops.is_empty() {
        let revision = ctx.visor.emit_stops(&stops).await?;
        ctx.wrote_tickets(revision);
        ctx.metrics
            .tickets
            .with_label_values(&["stop"])
            .inc_by(stops.len() as u64);
        tracing::info!(%group, stopped = stops.len(), "emitted stop tickets");
    }
    // Waiting work is looked at again when hosts change; this is the fallback.
    Ok(match waiting {
        0 => Action::Done,
        _ => Action::RequeueAfter(std::time::Duration::from_secs(30)),
    })
}

/// Marks the instances of dead hosts lost, and removes tickets addressed to them.
pub async fn liveness(ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.caught_up().await?;
    let live = ctx.caches.live_hosts();
    ctx.metrics
        .hosts_alive
        .set(i64::try_from(live.len()).unwrap_or(i64::MAX));
    // A host is only known dead at the hosts cache's revision: an instance
    // written later may name a host this cache has not seen yet. So the
    // hosts cache is brought up to what the instance and ticket caches show.
    let observed = ctx
        .caches
        .instances
        .revision()
        .max(ctx.caches.tickets.revision());
    let hosts_caught_up = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        ctx.caches.hosts.wait_for_revision(observed),
    )
    .await;
    if !matches!(hosts_caught_up, Ok(true)) {
        return Err(ReconcileError::Behind(observed));
    }
    let hosts_at = ctx.caches.hosts.revision();
    let settled: Vec<(Name, visor_controllers::Instance)> = ctx
        .caches
        .instances_of_hosts_gone(&live)
        .into_iter()
        .filter(|i| i.mod_revision <= hosts_at)
        .filter_map(|i| Some((Name::parse("instance", i.name()).ok()?, i.value)))
        .collect();
    for lost in plan_liveness(settled.iter().map(|(id, i)| (id, i)), &live) {
        match ctx
            .visor
            .lose_instance(
                lost.instance.as_str(),
                format!("host {} is gone", lost.host),
            )
            .await
        {
            Ok(written) => {
                ctx.wrote_instances(written.mod_revision);
                ctx.metrics.lost.inc();
                tracing::warn!(instance = %lost.instance, host = %lost.host, "instance lost with its host");
            }
            // Moved or removed meanwhile: the next pass sees its new state.
            Err(Error::Conflict { .. } | Error::NotFound(_) | Error::InvalidTransition { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let tickets = ctx.caches.tickets_of_hosts_gone(&live);
    let refs: Vec<TicketRef> = tickets
        .iter()
        .filter(|t| t.mod_revision <= hosts_at)
        .filter_map(|t| {
            let mut parts = t.key.rsplit('/');
            let ticket = Name::parse("ticket", parts.next()?).ok()?;
            let host = Name::parse("host", parts.next()?).ok()?;
            Some(TicketRef { host, ticket })
        })
        .collect();
    for orphan in orphan_tickets(&refs, &live) {
        let key = ctx
            .visor
            .registry()
            .keys()
            .ticket(&orphan.host, &orphan.ticket);
        if let Some(ticket) = ctx.caches.tickets.get(&key) {
            match ctx.visor.remove_ticket(&ticket).await {
                Ok(revision) => ctx.wrote_tickets(revision),
                Err(Error::Conflict { .. } | Error::NotFound(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    Ok(Action::Done)
}

/// Deletes terminal instances older than the retention.
pub async fn collect(ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.caught_up().await?;
    let named: Vec<(Name, visor_controllers::Instance)> = ctx
        .caches
        .terminal_instances()
        .into_iter()
        .filter_map(|i| Some((Name::parse("instance", i.name()).ok()?, i.value)))
        .collect();
    for id in plan_gc(
        named.iter().map(|(id, i)| (id, i)),
        Utc::now(),
        ctx.retention,
    ) {
        let key = ctx.visor.registry().keys().instance(&id);
        let Some(instance) = ctx.caches.instances.get(&key) else {
            continue;
        };
        match ctx.visor.unregister_instance(&instance).await {
            Ok(revision) => {
                ctx.wrote_instances(revision);
                ctx.metrics.collected.inc();
            }
            Err(Error::Conflict { .. } | Error::NotFound(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let cutoff = Utc::now()
        .checked_sub_signed(ctx.notifications_max_age)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let trimmed = ctx
        .visor
        .trim_notifications(ctx.notifications_kept, cutoff)
        .await?;
    if trimmed > 0 {
        tracing::info!(trimmed, "old notifications removed");
    }
    Ok(Action::Done)
}
