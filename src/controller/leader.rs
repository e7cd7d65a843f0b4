//! One term of leadership: start the caches, wait until they are synced,
//! feed their changes to the work queues, and run the reconcile loops until
//! leadership is lost or given up.
//!
//! Invariant: nothing of a term outlives it — caches, feeders, queues and
//! runners all stop when its token is cancelled.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use visor_controllers::{GroupKey, InstanceState, Name};

use super::ControllerConfig;
use super::caches::{self, Caches, ChangeStreams};
use super::context::Context;
use super::metrics::ControllerMetrics;
use super::relations::{self, RelationContext};
use super::services::{self, ServicesContext};
use super::{gc, liveness, scale};
use crate::registry::{Keys, Visor};
use crate::runtime::cache::{CacheMetrics, Change};
use crate::runtime::queue::WorkQueue;
use crate::runtime::{resync, runner};

/// Why a term ended early.
#[derive(Debug, thiserror::Error)]
pub enum TermError {
    /// A work queue or runner could not be set up (metrics registration).
    #[error("cannot start the reconcile loops")]
    Runtime(#[from] crate::runtime::Error),
}

/// Runs the controller's loops with the fenced `visor` until `term` is cancelled.
pub async fn run_term(
    visor: Visor,
    config: &ControllerConfig,
    prometheus: &prometheus::Registry,
    cache_metrics: &CacheMetrics,
    metrics: &ControllerMetrics,
    ready: &watch::Sender<bool>,
    term: CancellationToken,
) -> Result<(), TermError> {
    // Stop everything of this term however it ends.
    let _stop = term.clone().drop_guard();
    let (caches, streams) = Caches::spawn(visor.registry(), cache_metrics, &term);
    tokio::select! {
        () = caches::wait_synced(&caches) => {}
        () = term.cancelled() => return Ok(()),
    }
    ready.send_replace(true);
    tracing::info!("caches synced; reconciling");

    let ctx = Arc::new(Context {
        visor,
        caches: caches.clone(),
        metrics: metrics.clone(),
        retention: chrono::TimeDelta::from_std(config.retention).unwrap_or(chrono::TimeDelta::MAX),
        notifications_kept: config.notifications_kept,
        notifications_max_age: chrono::TimeDelta::from_std(config.notifications_max_age)
            .unwrap_or(chrono::TimeDelta::MAX),
        written: Arc::default(),
        placement: Arc::new(Mutex::new(())),
    });
    let relation_ctx = Arc::new(RelationContext::new(
        ctx.visor.clone(),
        caches.clone(),
        metrics.clone(),
    ));
    let scale = WorkQueue::<GroupKey>::new("scale", prometheus)?;
    let liveness = WorkQueue::<()>::new("liveness", prometheus)?;
    let collect = WorkQueue::<()>::new("gc", prometheus)?;
    let relation = WorkQueue::<Name>::new("relation", prometheus)?;
    let services = WorkQueue::<()>::new("services", prometheus)?;
    let services_ctx = Arc::new(ServicesContext::new(
        ctx.visor.clone(),
        caches.clone(),
        metrics.clone(),
        config.tombstone_grace,
    ));
    scale.add_all(caches.groups());
    liveness.add(());
    collect.add(());
    relation.add_all(relations::all_relations(&caches));
    services.add(());

    let mut tasks = JoinSet::new();
    tasks.spawn(feed(
        streams,
        caches.clone(),
        Queues {
            scale: scale.clone(),
            liveness: liveness.clone(),
            collect: collect.clone(),
            relation: relation.clone(),
            services: services.clone(),
        },
        metrics.clone(),
        term.clone(),
    ));
    let resync_period = config.resync;
    {
        let caches = caches.clone();
        tasks.spawn(resync::resync(
            scale.clone(),
            resync_period,
            move || caches.groups(),
            term.clone(),
        ));
    }
    tasks.spawn(resync::resync(
        liveness.clone(),
        resync_period,
        || [()],
        term.clone(),
    ));
    tasks.spawn(resync::resync(
        services.clone(),
        resync_period,
        || [()],
        term.clone(),
    ));
    {
        let caches = caches.clone();
        tasks.spawn(resync::resync(
            relation.clone(),
            resync_period,
            move || relations::all_relations(&caches),
            term.clone(),
        ));
    }
    // Retention is measured in time, so collection is looked at on a clock too.
    tasks.spawn(resync::resync(
        collect.clone(),
        collection_period(config),
        || [()],
        term.clone(),
    ));

    let concurrency = config.concurrency;
    let mut runners = JoinSet::new();
    {
        let ctx = ctx.clone();
        runners.spawn(runner::run(
            scale,
            concurrency,
            move |key| scale::reconcile(ctx.clone(), key),
            term.clone(),
        ));
    }
    {
        let ctx = ctx.clone();
        runners.spawn(runner::run(
            liveness,
            1,
            move |()| liveness::reconcile(ctx.clone()),
            term.clone(),
        ));
    }
    {
        let ctx = ctx.clone();
        runners.spawn(runner::run(
            collect,
            1,
            move |()| gc::reconcile(ctx.clone()),
            term.clone(),
        ));
    }
    runners.spawn(runner::run(
        services,
        1,
        move |()| services::reconcile(services_ctx.clone()),
        term.clone(),
    ));
    runners.spawn(runner::run(
        relation,
        concurrency,
        move |key| relations::reconcile(relation_ctx.clone(), key),
        term.clone(),
    ));
    let mut outcome = Ok(());
    while let Some(finished) = runners.join_next().await {
        if let Ok(Err(error)) = finished {
            outcome = Err(error.into());
            term.cancel();
        }
    }
    ready.send_replace(false);
    tasks.shutdown().await;
    // What this term observed is not this replica's to report once it is over.
    metrics.clear_observations();
    outcome
}

/// The work queues of one term, one per reconcile loop.
struct Queues {
    scale: WorkQueue<GroupKey>,
    liveness: WorkQueue<()>,
    collect: WorkQueue<()>,
    relation: WorkQueue<Name>,
    services: WorkQueue<()>,
}

/// How often old terminal instances are looked for: at the resync period, but
/// at least as often as the retention, and never more than once a second.
fn collection_period(config: &ControllerConfig) -> Duration {
    let period = match config.resync.is_zero() {
        true => config.retention,
        false => config.resync.min(config.retention),
    };
    period.max(MIN_COLLECTION_PERIOD)
}

/// Collection runs at most once a second, however short the retention.
const MIN_COLLECTION_PERIOD: Duration = Duration::from_secs(1);

/// How long changes that touch every group are gathered before the groups
/// are listed once for all of them: listing them reads every instance, so a
/// burst of changes must not list them once per change.
const ALL_GROUPS_DEBOUNCE: Duration = Duration::from_millis(50);

/// Turns cache changes into keys: app, proc type, revision and host changes
/// can touch every group; a scale factor, instance or ticket change touches
/// its own group (or, for an instance or ticket gone from the cache, every
/// group).
///
/// Liveness and collection are only queued by what concerns them — a host
/// change, work naming a host that is not registered, an instance that
/// became terminal — so that a large scale-up does not run them once per
/// instance; their resyncs are the fallback.
async fn feed(
    streams: ChangeStreams,
    caches: Caches,
    queues: Queues,
    metrics: ControllerMetrics,
    term: CancellationToken,
) {
    use futures::StreamExt;
    let ChangeStreams {
        desired,
        mut scales,
        mut hosts,
        mut instances,
        mut tickets,
        relations: relation_streams,
        services: service_streams,
    } = streams;
    let Queues {
        scale,
        liveness,
        collect,
        relation,
        services,
    } = queues;
    let mut desired = futures::stream::select_all(desired.into_iter().map(change_stream));
    let mut relation_changes =
        futures::stream::select_all(relation_streams.into_iter().map(change_stream));
    let mut service_changes =
        futures::stream::select_all(service_streams.into_iter().map(change_stream));
    // When set, every group is queued once this deadline passes.
    let mut all_groups_at: Option<tokio::time::Instant> = None;
    loop {
        let all_groups_due = async {
            match all_groups_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = term.cancelled() => return,
            () = all_groups_due => {
                all_groups_at = None;
                scale.add_all(caches.groups());
            }
            Some(_) = desired.next() => touch_all(&mut all_groups_at),
            Some(change) = scales.recv() => {
                match change.key().and_then(|key| caches.group_of_scale(key)) {
                    Some(group) => scale.add(group),
                    None => touch_all(&mut all_groups_at),
                }
            }
            Some(_) = hosts.recv() => {
                touch_all(&mut all_groups_at);
                liveness.add(());
                relation.add_all(relations::all_relations(&caches));
                // A host's death is its endpoints' death.
                services.add(());
            }
            Some(_) = service_changes.next() => services.add(()),
            Some(change) = relation_changes.next() => {
                match relations::relation_of_change(&caches, &change) {
                    Some(key) => relation.add(key),
                    None => relation.add_all(relations::all_relations(&caches)),
                }
            }
            Some(change) = instances.recv() => {
                // Membership follows running instances; units hold state.
                match change.key().and_then(|key| relations::relations_of_instance(&caches, key)) {
                    Some(touched) => relation.add_all(touched),
                    None => relation.add_all(relations::all_relations(&caches)),
                }
                match change.key().and_then(|key| caches.instances.get(key)) {
                    Some(instance) => {
                        let instance = instance.value;
                        scale.add(GroupKey::of(&instance));
                        if instance.state == InstanceState::Lost {
                            services.add(());
                        }
                        if instance.state.is_terminal() {
                            collect.add(());
                        } else if instance.host.as_ref().is_some_and(|host| !caches.is_live(host)) {
                            liveness.add(());
                        }
                    }
                    None => touch_all(&mut all_groups_at),
                }
                if matches!(change, Change::Relisted) {
                    liveness.add(());
                    collect.add(());
                }
                metrics.count_instances(&caches.instance_counts());
            }
            Some(change) = tickets.recv() => {
                // A finished stop ticket changes what counts as stopping.
                match change.key().and_then(|key| caches.tickets.get(key)) {
                    Some(ticket) => {
                        let ticket = ticket.value;
                        scale.add(GroupKey::new(ticket.app, ticket.rev, ticket.proc));
                    }
                    None => touch_all(&mut all_groups_at),
                }
                // Tickets of hosts that are gone are liveness's to remove.
                if matches!(change, Change::Relisted) || addressee(caches.keys(), &change).is_some_and(|host| !caches.is_live(&host)) {
                    liveness.add(());
                }
            }
            else => return,
        }
    }
}

/// The host a ticket change is addressed to.
fn addressee(keys: &Keys, change: &Change) -> Option<Name> {
    keys.parse(change.key()?).addressee()
}

/// Schedules every group to be queued soon, unless that is already scheduled.
fn touch_all(at: &mut Option<tokio::time::Instant>) {
    at.get_or_insert_with(|| tokio::time::Instant::now() + ALL_GROUPS_DEBOUNCE);
}

fn change_stream(
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<Change>,
) -> impl futures::Stream<Item = Change> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
