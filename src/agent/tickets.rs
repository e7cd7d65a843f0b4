//! The host's tickets, taken in registry order (create revision), claimed,
//! executed, completed (docs/registry.md, "Ticket protocol").
//!
//! One dispatcher claims tickets one at a time in order and hands each to
//! its instance's queue; an instance's tickets run one after another (a
//! stop never overtakes the start before it), different instances' at once,
//! up to the configured concurrency.
//!
//! Invariants: a ticket is executed only once claimed by this host (a ticket
//! already claimed by it, from before a restart, is resumed without a second
//! claim); executing one twice has the effect of once, because each step
//! checks the instance's state (and the host's slots) first; a ticket is
//! deleted only after its effect is in the registry.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use visor_controllers::{Instance, InstanceState, Name, Ticket, TicketOp};

use super::context::{Context, Moved};
use super::slot::{self, Begin, Phase, StopReason};
use crate::registry::{Error, Kind, Versioned};
use crate::runtime::cache::{self, CacheMetrics, Indexes};
use crate::telemetry::Chain;

/// How often tickets are looked at again when nothing changed (a claim
/// that failed for a passing reason is retried then).
const RETRY_TICK: Duration = Duration::from_secs(1);

/// Runs the ticket dispatcher until `shutdown`.
pub async fn run(ctx: Arc<Context>, metrics: CacheMetrics, shutdown: CancellationToken) {
    let prefix = ctx.visor.registry().keys().tickets(Some(&ctx.host));
    let (tickets, mut changes) = cache::spawn::<Ticket>(
        ctx.visor.registry().clone(),
        Kind::Ticket,
        prefix,
        Indexes::new(),
        metrics,
        shutdown.clone(),
    );
    let permits = Arc::new(Semaphore::new(ctx.config.concurrency));
    let (done_tx, mut done) = mpsc::unbounded_channel::<(String, Name)>();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut queues: HashMap<Name, (mpsc::UnboundedSender<Versioned<Ticket>>, usize)> =
        HashMap::new();
    let mut tick = tokio::time::interval(RETRY_TICK);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            change = changes.recv() => {
                if change.is_none() {
                    return;
                }
                while changes.try_recv().is_ok() {}
            }
            Some((key, instance)) = done.recv() => {
                in_flight.remove(&key);
                if let Some((_, pending)) = queues.get_mut(&instance) {
                    *pending -= 1;
                    if *pending == 0 {
                        queues.remove(&instance);
                    }
                }
            }
            _ = tick.tick() => {}
        }
        if !tickets.is_synced() {
            continue;
        }
        let (_, mut listed) = tickets.list();
        listed.sort_by_key(|ticket| ticket.create_revision);
        for ticket in listed {
            if in_flight.contains(&ticket.key) {
                continue;
            }
            let Some(claimed) = claim(&ctx, ticket).await else {
                continue;
            };
            in_flight.insert(claimed.key.clone());
            let instance = claimed.value.instance.clone();
            let (queue, pending) = queues.entry(instance.clone()).or_insert_with(|| {
                let (queue, tickets) = mpsc::unbounded_channel();
                tokio::spawn(execute_queue(
                    Arc::clone(&ctx),
                    tickets,
                    Arc::clone(&permits),
                    done_tx.clone(),
                ));
                (queue, 0)
            });
            *pending += 1;
            // The queue's task ends only once its sender is dropped.
            let _ = queue.send(claimed);
        }
    }
}

/// Claims `ticket` for this host, or takes it back if this host claimed
/// it before; `None` if it is not this host's to run now.
async fn claim(ctx: &Context, ticket: Versioned<Ticket>) -> Option<Versioned<Ticket>> {
    if ticket.value.claimed_by.as_ref() == Some(&ctx.host) {
        return Some(ticket);
    }
    match ctx
        .visor
        .claim_ticket_from(&ticket, ctx.host.as_str())
        .await
    {
        Ok(claimed) => Some(claimed),
        // Changed or deleted meanwhile: the cache brings the new copy.
        Err(Error::Conflict { .. } | Error::NotFound(_)) => None,
        Err(error) => {
            tracing::warn!(ticket = ticket.name(), error = %Chain(&error), "cannot claim a ticket");
            None
        }
    }
}

/// Executes one instance's tickets in the order they come.
async fn execute_queue(
    ctx: Arc<Context>,
    mut tickets: mpsc::UnboundedReceiver<Versioned<Ticket>>,
    permits: Arc<Semaphore>,
    done: mpsc::UnboundedSender<(String, Name)>,
) {
    while let Some(ticket) = tickets.recv().await {
        let Ok(_permit) = permits.acquire().await else {
            return;
        };
        execute(&ctx, &ticket).await;
        let _ = done.send((ticket.key.clone(), ticket.value.instance.clone()));
    }
}

/// Executes a claimed ticket and completes it.
async fn execute(ctx: &Arc<Context>, ticket: &Versioned<Ticket>) {
    let began = std::time::Instant::now();
    let id = &ticket.value.instance;
    match ticket.value.op {
        TicketOp::Start => start(ctx, id).await,
        TicketOp::Stop => stop(ctx, id).await,
    }
    if ctx.shutdown.is_cancelled() {
        return;
    }
    let (visor, host) = (&ctx.visor, ctx.host.as_str());
    match ctx
        .persist("ticket completion", || visor.complete_ticket(ticket, host))
        .await
    {
        Ok(_) | Err(Error::NotFound(_)) => {
            ctx.metrics.ticket_done(ticket.value.op, began.elapsed())
        }
        Err(error) => {
            tracing::warn!(ticket = ticket.name(), error = %Chain(&error), "cannot complete a ticket")
        }
    }
}

/// A start: the instance runs here once it returns, or it failed, or it
/// was not this host's to start.
async fn start(ctx: &Arc<Context>, id: &Name) {
    if let Some(slot) = ctx.slot(id) {
        slot.started().await;
        return;
    }
    let Some(instance) = read_instance(ctx, id, "start").await else {
        return;
    };
    let mine = instance.value.host.as_ref() == Some(&ctx.host);
    let mut known = Some(instance.clone());
    match instance.value.state {
        InstanceState::Pending => {
            let claimed = ctx
                .move_instance_from(id, known.take(), InstanceState::Claimed, None, None)
                .await;
            match claimed {
                Ok((Moved::Done, written)) => known = written,
                Ok((Moved::Gone(why), _)) => {
                    tracing::info!(instance = %id, %why, "not starting");
                    return;
                }
                Err(error) => {
                    tracing::warn!(instance = %id, error = %Chain(&error), "cannot claim the instance");
                    return;
                }
            }
        }
        // Claimed before a restart, never started: start it now.
        InstanceState::Claimed if mine => {}
        // Running here by the registry, with no slot: the agent lost it.
        InstanceState::Running | InstanceState::Stopping if mine => {
            let reason = "its process is gone: the agent has no record of it".to_owned();
            let _ = ctx
                .move_instance(id, InstanceState::Failed, None, Some(reason))
                .await;
            return;
        }
        _ => return,
    }
    let claimed = match known {
        Some(claimed) if claimed.value.state == InstanceState::Claimed => claimed,
        _ => match ctx.visor.instance(id.as_str()).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(instance = %id, error = %Chain(&error), "cannot read the claimed instance");
                return;
            }
        },
    };
    let slot = slot::spawn(ctx, id.clone(), Begin::Fresh(claimed));
    if let Phase::Ended(reason) = slot.started().await {
        tracing::info!(instance = %id, %reason, "did not start");
    }
}

/// A stop: the instance no longer runs here once it returns.
async fn stop(ctx: &Arc<Context>, id: &Name) {
    if let Some(slot) = ctx.slot(id) {
        slot.stop(StopReason::Ticket).await;
        return;
    }
    let Some(instance) = read_instance(ctx, id, "stop").await else {
        return;
    };
    let mine = instance.value.host.as_ref() == Some(&ctx.host);
    let state = instance.value.state;
    // Nothing runs here for it: move it to its end in the registry.
    let reason = match state {
        InstanceState::Pending | InstanceState::Claimed => "stopped before it started",
        InstanceState::Running | InstanceState::Stopping => "stopped; its process was already gone",
        _ => return,
    };
    if !mine && state != InstanceState::Pending {
        return;
    }
    if state != InstanceState::Stopping {
        let _ = ctx
            .move_instance(id, InstanceState::Stopping, None, None)
            .await;
    }
    let _ = ctx
        .move_instance(id, InstanceState::Exited, None, Some(reason.to_owned()))
        .await;
}

/// The instance a ticket is about, read (retried while the registry is
/// unavailable); `None` if it is gone, or cannot be read (logged, naming
/// what it was read for).
async fn read_instance(ctx: &Context, id: &Name, what: &str) -> Option<Versioned<Instance>> {
    match ctx
        .persist("instance read", || ctx.visor.instance(id.as_str()))
        .await
    {
        Ok(instance) => Some(instance),
        Err(Error::NotFound(_)) => None,
        Err(error) => {
            tracing::warn!(instance = %id, error = %Chain(&error), "cannot read the instance to {what}");
            None
        }
    }
}
