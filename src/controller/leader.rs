//! One term of leadership: start the caches, wait until they are synced,
//! and run the reconcile loops until leadership is lost or given up. Each
//! loop declares its own keys and triggers in its module; a term only
//! registers them.
//!
//! Invariant: nothing of a term outlives it — caches, feeds, queues and
//! runners all stop when its token is cancelled.

use std::sync::Arc;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::ControllerConfig;
use super::caches::{self, Caches};
use super::context::Context;
use super::metrics::ControllerMetrics;
use super::{gc, liveness, relations, rollout, scale, services};
use crate::registry::Visor;
use crate::runtime::cache::CacheMetrics;

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
    let caches = Caches::spawn(visor.registry(), cache_metrics, &term);
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
    let mut loops = JoinSet::new();
    loops.spawn(scale::reconcile_loop(&ctx, config).run(prometheus.clone(), term.clone()));
    loops.spawn(rollout::reconcile_loop(&ctx, config).run(prometheus.clone(), term.clone()));
    loops.spawn(liveness::reconcile_loop(&ctx, config).run(prometheus.clone(), term.clone()));
    loops.spawn(gc::reconcile_loop(&ctx, config).run(prometheus.clone(), term.clone()));
    loops.spawn(relations::reconcile_loop(&ctx, config).run(prometheus.clone(), term.clone()));
    loops.spawn(services::reconcile_loop(&ctx, config).run(prometheus.clone(), term.clone()));
    let counting = tokio::spawn(count_instances(caches, metrics.clone(), term.clone()));

    let mut outcome = Ok(());
    while let Some(finished) = loops.join_next().await {
        if let Ok(Err(error)) = finished {
            outcome = Err(error.into());
            term.cancel();
        }
    }
    ready.send_replace(false);
    counting.abort();
    // What this term observed is not this replica's to report once it is over.
    metrics.clear_observations();
    outcome
}

/// Keeps the instance counts by state current as instances change.
async fn count_instances(caches: Caches, metrics: ControllerMetrics, term: CancellationToken) {
    let mut changes = caches.instances.changes();
    metrics.count_instances(&caches.instance_counts());
    loop {
        tokio::select! {
            () = term.cancelled() => return,
            change = changes.recv() => match change {
                Some(_) => metrics.count_instances(&caches.instance_counts()),
                None => return,
            },
        }
    }
}
