//! The rollout loop: moves each app that has a deployment (`/deploys/<app>`,
//! written by `visor apply`) to its revision and scale, a step at a time
//! within its rollout's surge and unavailability
//! (`visor_controllers::plan_rollout`), by writing the revision scale
//! factors the scale loop acts on.
//!
//! Its key is the app. Its deployment and rollout status, its revisions and
//! proc types, and the scale factors and instances of its groups touch it:
//! an instance that becomes ready, or one that is gone, lets the next step
//! go; a rollout under way is also looked at again at its deadline.
//!
//! Where the rollout stands is kept in `/rollouts/<app>`
//! (`visor_controllers::next_status`): a new one begins when the
//! deployment's revision changes; one that misses its deadline rolls back
//! to the last revision a rollout completed to (or pauses, as its
//! deployment says), and stays there until the revision changes again. A
//! new leader goes on from what is kept.
//!
//! Invariant: a step is written only if every scale factor it changes is
//! still as the step read it (a change made since, by a person or an
//! earlier step, voids it and the app is looked at again), and like every
//! controller write it is fenced by this leadership.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use visor_controllers::{
    GroupKey, InstanceState, Name, RevisionCounts, RolloutGoal, RolloutPhase, RolloutStatus,
    next_status, plan_rollout, rollout_notice,
};

use super::ControllerConfig;
use super::caches::INSTANCES_BY_GROUP;
use super::context::{Context, ReconcileError};
use crate::registry::{Error, FactorAsRead, Posting, PostingSubject, Versioned};
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
    let (listed, deployments, rollouts, scales, instances) = (
        caches.clone(),
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
    .watches(caches.rollouts.changes(), move |change| {
        change
            .key()
            .and_then(|key| rollouts.keys().parse(key).name().cloned())
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

/// Takes the next step of `app`'s rollout, if it has a deployment, and
/// keeps its status.
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
    let kept = caches.rollouts.get(&keys.rollout(&app));
    let now = Utc::now();
    // First what the deployment and the clock say (a new rollout, a missed
    // deadline), then what the step toward its aim completes.
    let provisional = next_status(kept.as_ref().map(|k| &k.value), &deployment, false, now);
    let (writes, complete, ready) = match provisional.aim() {
        Some(aim) if revisions.contains(aim) => steps(&ctx, &app, &deployment, aim, &revisions),
        _ => (Vec::new(), false, 0),
    };
    let status = next_status(Some(&provisional), &deployment, complete, now);
    ctx.metrics.rollout(
        app.as_str(),
        status.phase,
        ready,
        deployment.scale.values().sum(),
    );
    if kept.as_ref().map(|k| &k.value) != Some(&status) {
        let was = kept.as_ref().map(|k| k.value.phase);
        match keep_status(&ctx, &app, kept.as_ref(), &status).await {
            Ok(()) => {}
            // Changed since read (by an earlier term, say): looked at again.
            Err(Error::Conflict { .. }) => return Ok(Action::Done),
            Err(error) => return Err(error.into()),
        }
        let ended = match status.phase {
            RolloutPhase::Complete => Some("complete"),
            RolloutPhase::RolledBack => Some("rolled-back"),
            RolloutPhase::Paused => Some("paused"),
            _ => None,
        };
        if let Some(result) = ended.filter(|_| was != Some(status.phase)) {
            ctx.metrics
                .rollouts_ended
                .with_label_values(&[result])
                .inc();
        }
        match status.phase {
            RolloutPhase::RollingBack | RolloutPhase::Paused => tracing::warn!(
                %app,
                revision = %status.revision,
                phase = status.phase.as_str(),
                reason = status.reason.as_deref().unwrap_or_default(),
                "rollout failed"
            ),
            phase if was != Some(phase) => tracing::info!(
                %app,
                revision = %status.revision,
                phase = phase.as_str(),
                "rollout"
            ),
            _ => {}
        }
    }
    if !writes.is_empty() {
        match ctx.visor.set_scales_as_read(&app, &writes).await {
            Ok(revision) => {
                ctx.wrote_scales(revision);
                tracing::debug!(%app, steps = ?writes.iter().map(|f| format!("{}/{}={}", f.rev, f.proc, f.replicas)).collect::<Vec<_>>(), "rollout step");
            }
            // A factor changed since it was read: the change touches the app again.
            Err(Error::Conflict { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    // A rollout under way is looked at again at its deadline, whatever happens.
    Ok(match status.phase {
        RolloutPhase::Progressing => {
            let deadline = status.started_at
                + chrono::TimeDelta::seconds(i64::from(deployment.rollout.deadline_secs));
            let left = (deadline - now).to_std().unwrap_or_default();
            Action::RequeueAfter(left + DEADLINE_MARGIN)
        }
        _ => Action::Done,
    })
}

/// Writes `app`'s rollout status over the one `kept`; a failure, or a
/// rollback done, is posted as a notification in the same transaction, so
/// it is posted exactly once whatever the retries and leaders.
async fn keep_status(
    ctx: &Context,
    app: &Name,
    kept: Option<&Versioned<RolloutStatus>>,
    status: &RolloutStatus,
) -> Result<(), Error> {
    let expected = kept.map(|k| k.mod_revision);
    let Some((kind, reason)) = rollout_notice(kept.map(|k| &k.value), status) else {
        ctx.visor
            .write_rollout_status(app, status.clone(), expected)
            .await?;
        return Ok(());
    };
    let posting = Posting {
        kind,
        subject: PostingSubject::Rollout {
            app: app.clone(),
            status: status.clone(),
            expected,
        },
        reason,
    };
    let (posted, _) = ctx.visor.post_notifications(&[posting]).await?;
    ctx.metrics.posted(&posted);
    Ok(())
}

/// What follows a rollout's deadline, so the look at it comes after it.
const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

/// The scale factors (rev, proc, replicas, as read) of `app`'s next step
/// toward `aim`, and whether every proc type is there already.
fn steps(
    ctx: &Context,
    app: &Name,
    deployment: &visor_controllers::Deployment,
    aim: &Name,
    revisions: &[Name],
) -> (Vec<FactorAsRead>, bool, u32) {
    let caches = &ctx.caches;
    let keys = caches.keys();
    let procs: Vec<Name> = caches.procs.list_map(|path, _| {
        let (of, proc) = path.clone().app_child()?;
        (of == *app).then_some(proc)
    });
    let mut writes = Vec::new();
    let mut complete = true;
    let mut ready_of_aim = 0;
    for proc in &procs {
        let goal = RolloutGoal {
            desired: deployment.scale.get(proc).copied().unwrap_or(0),
            max_surge: deployment.rollout.max_surge,
            max_unavailable: deployment.rollout.max_unavailable,
        };
        let mut read = Vec::new();
        let counts: Vec<RevisionCounts> = revisions
            .iter()
            .map(|rev| {
                let factor = caches.scales.get(&keys.scale(app, rev, proc));
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
        let step = plan_rollout(goal, aim, &counts);
        ready_of_aim += counts.iter().find(|c| c.rev == *aim).map_or(0, |c| c.ready);
        complete &= step.complete;
        for (rev, was) in revisions.iter().zip(read) {
            let now = step.scales.get(rev).copied().unwrap_or(0);
            let unchanged = match was {
                Some((replicas, _)) => replicas == now,
                None => now == 0,
            };
            if !unchanged {
                writes.push(FactorAsRead {
                    rev: rev.clone(),
                    proc: proc.clone(),
                    replicas: now,
                    expected: was.map(|(_, at)| at),
                });
            }
        }
    }
    (writes, complete, ready_of_aim)
}
