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

use super::context::Context;
use super::slot::{self, Begin, Phase, StopReason};
use super::spec;
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
    let mut queues: HashMap<Name, (mpsc::UnboundedSender<Claimed>, usize)> = HashMap::new();
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
            // A start that runs as soon as it is claimed reads what it needs
            // beside the claim rather than after it.
            let instance = ticket.value.instance.clone();
            let runs_at_once = ticket.value.op == TicketOp::Start
                && !queues.contains_key(&instance)
                && ctx.slot(&instance).is_none();
            let Some(claimed) = claim(&ctx, ticket, runs_at_once).await else {
                continue;
            };
            in_flight.insert(claimed.ticket.key.clone());
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

/// A ticket this host holds, with what its start read beside the claim.
struct Claimed {
    ticket: Versioned<Ticket>,
    read: Option<ReadAhead>,
}

/// What a start reads, read beside its ticket's claim: the instance (a copy
/// the start tries its first write from) and the inputs of the app,
/// revision and proc the ticket names (`None` if the instance names others).
struct ReadAhead {
    instance: Versioned<Instance>,
    inputs: Option<Result<spec::Inputs, String>>,
}

/// Claims `ticket` for this host, or takes it back if this host claimed
/// it before, reading what its start needs at the same time when
/// `read_ahead` says so; `None` if it is not this host's to run now.
async fn claim(ctx: &Context, ticket: Versioned<Ticket>, read_ahead: bool) -> Option<Claimed> {
    if ticket.value.claimed_by.as_ref() == Some(&ctx.host) {
        return Some(Claimed { ticket, read: None });
    }
    let wanted = &ticket.value;
    // A failure here is left to the reads the start makes without these.
    let read = async {
        if !read_ahead {
            return None;
        }
        let (instance, inputs) = tokio::join!(
            ctx.visor.instance(wanted.instance.as_str()),
            spec::read_inputs(ctx, &wanted.app, &wanted.rev, &wanted.proc),
        );
        let instance = instance.ok()?;
        let named = &instance.value;
        let same =
            (&named.app, &named.rev, &named.proc) == (&wanted.app, &wanted.rev, &wanted.proc);
        Some(ReadAhead {
            instance,
            inputs: same.then_some(inputs),
        })
    };
    let (claimed, read) = tokio::join!(
        ctx.visor.claim_ticket_from(&ticket, ctx.host.as_str()),
        read
    );
    match claimed {
        Ok(ticket) => Some(Claimed { ticket, read }),
        // Changed or deleted meanwhile: the cache brings the new copy.
        Err(Error::Conflict { .. } | Error::NotFound(_)) => None,
        Err(error) => {
            tracing::warn!(ticket = ticket.name(), error = %Chain(&error), "cannot claim a ticket");
            None
        }
    }
}

/// Executes one instance's tickets in the order they come.
///
/// A start lasts until its instance runs, which includes its readiness
/// check; a stop that comes meanwhile (a rollout giving up on a revision
/// that never becomes ready) stops the instance at once, so that the start
/// ends and the stop follows, rather than both waiting for the check to
/// give up.
async fn execute_queue(
    ctx: Arc<Context>,
    mut tickets: mpsc::UnboundedReceiver<Claimed>,
    permits: Arc<Semaphore>,
    done: mpsc::UnboundedSender<(String, Name)>,
) {
    let mut next: Option<Claimed> = None;
    let mut closed = false;
    loop {
        let claimed = match next.take() {
            Some(claimed) => claimed,
            None if closed => return,
            None => match tickets.recv().await {
                Some(claimed) => claimed,
                None => return,
            },
        };
        let Ok(_permit) = permits.acquire().await else {
            return;
        };
        let starting = (claimed.ticket.value.op == TicketOp::Start)
            .then(|| claimed.ticket.value.instance.clone());
        let executing = execute(&ctx, claimed);
        tokio::pin!(executing);
        let ticket = loop {
            tokio::select! {
                ticket = &mut executing => break ticket,
                arrived = tickets.recv(), if next.is_none() && !closed => {
                    let Some(arrived) = arrived else {
                        closed = true;
                        continue;
                    };
                    let stops = arrived.ticket.value.op == TicketOp::Stop;
                    if let (true, Some(slot)) = (stops, starting.as_ref().and_then(|id| ctx.slot(id))) {
                        // Not awaited here: the start ends as the slot stops.
                        tokio::spawn(async move { slot.stop(StopReason::Ticket).await });
                    }
                    next = Some(arrived);
                }
            }
        };
        let _ = done.send((ticket.key, ticket.value.instance));
    }
}

/// Executes a claimed ticket and completes it; the ticket.
async fn execute(ctx: &Arc<Context>, claimed: Claimed) -> Versioned<Ticket> {
    let began = std::time::Instant::now();
    let Claimed { ticket, read } = claimed;
    let id = &ticket.value.instance;
    match ticket.value.op {
        TicketOp::Start => start(ctx, id, read).await,
        TicketOp::Stop => stop(ctx, id).await,
    }
    if ctx.shutdown.is_cancelled() {
        return ticket;
    }
    let (visor, host) = (&ctx.visor, ctx.host.as_str());
    match ctx
        .persist("ticket completion", || visor.complete_ticket(&ticket, host))
        .await
    {
        Ok(_) | Err(Error::NotFound(_)) => {
            ctx.metrics.ticket_done(ticket.value.op, began.elapsed())
        }
        Err(error) => {
            tracing::warn!(ticket = ticket.name(), error = %Chain(&error), "cannot complete a ticket")
        }
    }
    ticket
}

/// A start: the instance runs here once it returns, or it failed, or it
/// was not this host's to start. `read` is what was read beside the
/// ticket's claim, if anything.
async fn start(ctx: &Arc<Context>, id: &Name, read: Option<ReadAhead>) {
    if let Some(slot) = ctx.slot(id) {
        slot.started().await;
        return;
    }
    let (instance, inputs) = match read {
        Some(ReadAhead { instance, inputs }) => (instance, inputs),
        None => match read_instance(ctx, id, "start").await {
            Some(instance) => (instance, None),
            None => return,
        },
    };
    let spec = &instance.value;
    let mine = spec.host.as_ref() == Some(&ctx.host);
    let claim = match spec.state {
        // Claimed while it starts: the slot writes nothing of it before
        // the claim is in, and stops what it started if it is refused.
        InstanceState::Pending if mine || spec.host.is_none() => {
            let (ctx, id, pending) = (Arc::clone(ctx), id.clone(), instance.clone());
            Some(tokio::spawn(async move {
                ctx.move_instance_from(&id, Some(pending), InstanceState::Claimed, None, None)
                    .await
            }))
        }
        // Claimed before a restart, never started: start it now.
        InstanceState::Claimed if mine => None,
        // Running here by the registry, with no slot: the agent lost it.
        InstanceState::Running | InstanceState::Stopping if mine => {
            let reason = "its process is gone: the agent has no record of it".to_owned();
            let _ = ctx
                .move_instance(id, InstanceState::Failed, None, Some(reason))
                .await;
            return;
        }
        _ => return,
    };
    let inputs = match inputs {
        Some(inputs) => inputs,
        None => spec::read_inputs(ctx, &spec.app, &spec.rev, &spec.proc).await,
    };
    let begin = Begin::Fresh {
        instance,
        inputs: Box::new(inputs),
        claim,
    };
    let slot = slot::spawn(ctx, id.clone(), begin);
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
