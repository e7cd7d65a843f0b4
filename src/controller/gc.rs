//! The garbage collection loop: deletes terminal instances older than the
//! retention (`visor_controllers::plan_gc`) and trims old notifications.

use std::sync::Arc;

use chrono::Utc;
use visor_controllers::{Name, plan_gc};

use super::context::{Context, ReconcileError};
use crate::registry::Error;
use crate::runtime::runner::Action;

/// Deletes terminal instances older than the retention.
pub async fn reconcile(ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.caught_up().await?;
    let keys = ctx.caches.keys();
    let named: Vec<(Name, visor_controllers::Instance)> = ctx
        .caches
        .terminal_instances()
        .into_iter()
        .filter_map(|i| Some((keys.parse(&i.key).name()?, i.value)))
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
