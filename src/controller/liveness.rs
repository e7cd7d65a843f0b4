//! The liveness loop: marks the instances of dead hosts lost and removes
//! the tickets addressed to them (`visor_controllers::plan_host_loss`).
//!
//! One key covers every host. It is queued only by what concerns it — a
//! host change, an unfinished instance or a ticket naming a host that is
//! not registered, a relisting — so that a large scale-up does not run it
//! once per instance; its resync is the fallback.

use std::sync::Arc;

use visor_controllers::{
    Instance, ListedInstance, ListedTicket, LivenessSnapshot, Name, TicketRef, plan_host_loss,
};

use super::ControllerConfig;
use super::context::{Context, ReconcileError};
use crate::registry::{Error, KeyPath, Versioned};
use crate::runtime::runner::Action;
use crate::runtime::{ReconcileLoop, Touched, read_your_writes};

/// The liveness loop of one term.
pub fn reconcile_loop(
    ctx: &Arc<Context>,
    config: &ControllerConfig,
) -> ReconcileLoop<(), ReconcileError> {
    let caches = &ctx.caches;
    let (instances, tickets) = (caches.clone(), caches.clone());
    let reconciled = ctx.clone();
    ReconcileLoop::new("liveness", || [()], move |()| reconcile(reconciled.clone()))
        .resync_every(config.resync)
        .watches(caches.hosts.changes(), |_| Touched::Key(()))
        .watches(caches.instances.changes(), move |change| {
            let orphaned = change.key().is_none_or(|key| {
                instances.instances.get_shared(key).is_some_and(|instance| {
                    let on = instance.value.host.as_ref();
                    !instance.value.state.is_terminal() && on.is_some_and(|h| !instances.is_live(h))
                })
            });
            Touched::only_if(orphaned, ())
        })
        .watches(caches.tickets.changes(), move |change| {
            // Tickets of hosts that are gone are liveness's to remove.
            let orphaned = change.key().is_none_or(|key| {
                let host = tickets.keys().parse(key).addressee().cloned();
                host.is_some_and(|host| !tickets.is_live(&host))
            });
            Touched::only_if(orphaned, ())
        })
}

/// Marks the instances of dead hosts lost, and removes tickets addressed to them.
pub async fn reconcile(ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.caught_up().await?;
    let keys = ctx.caches.keys();
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
    read_your_writes::reach(observed, ctx.caches.hosts.wait_for_revision(observed)).await?;
    let hosts_at = ctx.caches.hosts.revision();
    let instances: Vec<(Name, Versioned<Instance>)> = ctx
        .caches
        .instances_of_hosts_gone(&live)
        .into_iter()
        .filter_map(|i| Some((keys.parse(&i.key).name()?.clone(), i)))
        .collect();
    let tickets = ctx.caches.tickets_of_hosts_gone(&live);
    let snapshot = LivenessSnapshot {
        live_hosts: &live,
        hosts_at,
        instances: instances
            .iter()
            .map(|(id, i)| ListedInstance {
                id,
                mod_revision: i.mod_revision,
                instance: &i.value,
            })
            .collect(),
        tickets: tickets
            .iter()
            .filter_map(|t| match keys.parse(&t.key) {
                KeyPath::Ticket { host, ticket } => Some(ListedTicket {
                    ticket: TicketRef { host, ticket },
                    mod_revision: t.mod_revision,
                }),
                _ => None,
            })
            .collect(),
    };
    let plan = plan_host_loss(&snapshot);
    for lost in &plan.lost {
        match ctx
            .visor
            .lose_instance(lost.instance.as_str(), lost.reason())
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
    for orphan in &plan.orphans {
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
