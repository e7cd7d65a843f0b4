//! The garbage collection loop: deletes terminal instances older than the
//! retention (`visor_controllers::plan_gc`) and trims old notifications.
//!
//! One key covers everything collected. An instance becoming terminal
//! queues it; retention is measured in time, so it is looked at on a clock
//! too.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use visor_controllers::{Name, plan_gc};

use super::ControllerConfig;
use super::context::{Context, ReconcileError};
use crate::registry::Error;
use crate::runtime::runner::Action;
use crate::runtime::{ReconcileLoop, Touched};

/// Collection runs at most once a second, however short the retention.
const MIN_COLLECTION_PERIOD: Duration = Duration::from_secs(1);

/// The collection loop of one term.
pub fn reconcile_loop(
    ctx: &Arc<Context>,
    config: &ControllerConfig,
) -> ReconcileLoop<(), ReconcileError> {
    let caches = &ctx.caches;
    let instances = caches.clone();
    let reconciled = ctx.clone();
    ReconcileLoop::new("gc", || [()], move |()| reconcile(reconciled.clone()))
        .resync_every(collection_period(config))
        .watches(caches.instances.changes(), move |change| {
            let finished = change.key().is_none_or(|key| {
                let instance = instances.instances.get_shared(key);
                instance.is_some_and(|instance| instance.value.state.is_terminal())
            });
            Touched::only_if(finished, ())
        })
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

/// Deletes terminal instances older than the retention.
pub async fn reconcile(ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.caught_up().await?;
    let keys = ctx.caches.keys();
    let named: Vec<(Name, visor_controllers::Instance)> = ctx
        .caches
        .terminal_instances()
        .into_iter()
        .filter_map(|i| Some((keys.parse(&i.key).name()?.clone(), i.value)))
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
