//! The liveness loop: marks the instances of dead hosts lost and removes
//! the tickets addressed to them (`visor_controllers::plan_host_loss`).

use std::sync::Arc;

use visor_controllers::{
    Instance, ListedInstance, ListedTicket, LivenessSnapshot, Name, TicketRef, plan_host_loss,
};

use super::context::{Context, ReconcileError};
use crate::registry::{Error, Versioned};
use crate::runtime::read_your_writes;
use crate::runtime::runner::Action;

/// Marks the instances of dead hosts lost, and removes tickets addressed to them.
pub async fn reconcile(ctx: Arc<Context>) -> Result<Action, ReconcileError> {
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
    read_your_writes::reach(observed, ctx.caches.hosts.wait_for_revision(observed)).await?;
    let hosts_at = ctx.caches.hosts.revision();
    let instances: Vec<(Name, Versioned<Instance>)> = ctx
        .caches
        .instances_of_hosts_gone(&live)
        .into_iter()
        .filter_map(|i| Some((Name::parse("instance", i.name()).ok()?, i)))
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
            .filter_map(|t| {
                let mut parts = t.key.rsplit('/');
                let ticket = Name::parse("ticket", parts.next()?).ok()?;
                let host = Name::parse("host", parts.next()?).ok()?;
                Some(ListedTicket {
                    ticket: TicketRef { host, ticket },
                    mod_revision: t.mod_revision,
                })
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
