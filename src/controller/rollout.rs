//! The rollout loop: moves each app that has a deployment (`/deploys/<app>`,
//! written by `visor apply`) to its revision and scale, a step at a time
//! within its rollout's surge and unavailability
//! (`visor_controllers::plan_rollout`), by writing the revision scale
//! factors the scale loop acts on.
//!
//! Its key is the app. Its deployment, its revisions and proc types, and
//! the scale factors and instances of its groups touch it: an instance that
//! becomes ready, or one that is gone, lets the next step go.
//!
//! Invariant: a step is written only if every scale factor it changes is
//! still as the step read it (a change made since, by a person or an
//! earlier step, voids it and the app is looked at again), and like every
//! controller write it is fenced by this leadership.

use std::sync::Arc;

use visor_controllers::{GroupKey, InstanceState, Name, RevisionCounts, RolloutGoal, plan_rollout};

use super::ControllerConfig;
use super::caches::INSTANCES_BY_GROUP;
use super::context::{Context, ReconcileError};
use crate::registry::Error;
use crate::runtime::cache::Change;
use crate::runtime::runner::Action;
use crate::runtime::{ReconcileLoop, Touched};

/// The rollout loop of one term.
pub fn reconcile_loop(
    ctx: &Arc<Context>,
    config: &ControllerConfig,
) -> ReconcileLoop<Name, ReconcileError> {
    let caches = &ctx.caches;
    let every = |_: &Change| Touched::All;
    let (listed, deployments, scales, instances) = (
        caches.clone(),
        caches.clone(),
        caches.clone(),
        caches.clone(),
    );
    let reconciled = ctx.clone();
    ReconcileLoop::new(
        "rollout",
        move || listed.deployed_apps(),
        move |app| reconcile(reconciled.clone(), app),
    )
    .concurrency(config.concurrency)
    .resync_every(config.resync)
    .watches(caches.revs.changes(), every)
    .watches(caches.procs.changes(), every)
    .watches(caches.deployments.changes(), move |change| {
        change
            .key()
            .and_then(|key| deployments.keys().parse(key).name().cloned())
            .into()
    })
    .watches(caches.scales.changes(), move |change| {
        change
            .key()
            .and_then(|key| scales.group_of_scale(key))
            .map(|group| group.app)
            .into()
    })
    .watches(caches.instances.changes(), move |change| {
        let instance = change
            .key()
            .and_then(|key| instances.instances.get_shared(key));
        instance.map(|instance| instance.value.app.clone()).into()
    })
}

/// Takes the next step of `app`'s rollout, if it has a deployment.
pub async fn reconcile(ctx: Arc<Context>, app: Name) -> Result<Action, ReconcileError> {
    ctx.caught_up().await?;
    let caches = &ctx.caches;
    let keys = caches.keys();
    let Some(deployment) = caches.deployments.get(&keys.deployment(&app)) else {
        return Ok(Action::Done);
    };
    let deployment = deployment.value;
    // The app's revisions, oldest first: the older are lowered first.
    let mut revisions: Vec<(i64, Name)> = caches.revs.list_map(|path, rev| {
        let (of, name) = path.clone().app_child()?;
        (of == app).then_some((rev.create_revision, name))
    });
    revisions.sort();
    let revisions: Vec<Name> = revisions.into_iter().map(|(_, name)| name).collect();
    if !revisions.contains(&deployment.revision) {
        tracing::warn!(%app, revision = %deployment.revision, "the deployment's revision is not registered; waiting for it");
        return Ok(Action::Done);
    }
    let procs: Vec<Name> = caches.procs.list_map(|path, _| {
        let (of, proc) = path.clone().app_child()?;
        (of == app).then_some(proc)
    });
    let goal = |proc: &Name| RolloutGoal {
        desired: deployment.scale.get(proc).copied().unwrap_or(0),
        max_surge: deployment.rollout.max_surge,
        max_unavailable: deployment.rollout.max_unavailable,
    };
    let mut writes = Vec::new();
    let mut complete = true;
    for proc in &procs {
        let mut read = Vec::new();
        let counts: Vec<RevisionCounts> = revisions
            .iter()
            .map(|rev| {
                let factor = caches.scales.get(&keys.scale(&app, rev, proc));
                read.push(factor.as_ref().map(|f| (f.value.replicas, f.mod_revision)));
                let group = GroupKey::new(app.clone(), rev.clone(), proc.clone());
                let (instances, ready) = caches
                    .instances
                    .indexed_map(&INSTANCES_BY_GROUP, &group, |_, instance| {
                        Some(instance.value.state)
                    })
                    .into_iter()
                    .filter(|state| !state.is_terminal())
                    .fold((0, 0), |(all, ready), state| {
                        (all + 1, ready + u32::from(state == InstanceState::Running))
                    });
                RevisionCounts {
                    rev: rev.clone(),
                    scale: factor.map_or(0, |f| f.value.replicas),
                    instances,
                    ready,
                }
            })
            .collect();
        let step = plan_rollout(goal(proc), &deployment.revision, &counts);
        complete &= step.complete;
        for (rev, was) in revisions.iter().zip(read) {
            let now = step.scales.get(rev).copied().unwrap_or(0);
            let unchanged = match was {
                Some((replicas, _)) => replicas == now,
                None => now == 0,
            };
            if !unchanged {
                writes.push((rev.clone(), proc.clone(), now, was.map(|(_, at)| at)));
            }
        }
    }
    if writes.is_empty() {
        if complete {
            tracing::debug!(%app, revision = %deployment.revision, "rollout complete");
        }
        return Ok(Action::Done);
    }
    match ctx.visor.set_scales_as_read(&app, &writes).await {
        Ok(revision) => {
            ctx.wrote_scales(revision);
            tracing::info!(%app, revision = %deployment.revision, steps = ?writes.iter().map(|(rev, proc, n, _)| format!("{rev}/{proc}={n}")).collect::<Vec<_>>(), "rollout step");
            Ok(Action::Done)
        }
        // A factor changed since it was read: the change touches the app again.
        Err(Error::Conflict { .. }) => Ok(Action::Done),
        Err(error) => Err(error.into()),
    }
}
