//! Rolling an app's proc type from its revisions to one: the next scale
//! factors of each revision, one step at a time, such that at every step
//!
//! - the instances that run and are ready, of any revision, never fall below
//!   `desired − max_unavailable` (once they were there), and
//! - the instances of all revisions together (stopping ones included) never
//!   exceed `desired + max_surge`,
//!
//! given that the scale loop starts an instance only for a factor above the
//! active count, and stops the least ready first (pending before running)
//! for a factor below it, whenever it gets to it: a step may be planned
//! before the scale loop has acted on the last. A step raises the target revision's factor as far
//! as the surge allows, and lowers the others' first by the slots no ready
//! instance fills, then by as many ready ones as the unavailability allows.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Deployment, OnFailure};
use crate::name::Name;
use crate::notifications::NotificationKind;

/// One revision of a proc type, as a step sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionCounts {
    /// The revision.
    pub rev: Name,
    /// Its scale factor now.
    pub scale: u32,
    /// Its instances not yet gone: pending, claimed, running or stopping.
    pub instances: u32,
    /// Those that run and are ready.
    pub ready: u32,
}

/// What a rollout of one proc type aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutGoal {
    /// Instances wanted, all of the target revision.
    pub desired: u32,
    /// Instances above `desired` allowed meanwhile.
    pub max_surge: u32,
    /// Ready instances below `desired` allowed meanwhile.
    pub max_unavailable: u32,
}

/// The next step of a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutStep {
    /// The scale factor every revision should have now (the target's
    /// included, even when it has none yet).
    pub scales: BTreeMap<Name, u32>,
    /// Whether the rollout is complete: the target runs `desired` ready
    /// instances and no other revision has a factor or an instance left.
    pub complete: bool,
}

/// The next scale factors for rolling `revisions` (oldest first: the older
/// are lowered first) to `target` under `goal`.
pub fn plan_rollout(goal: RolloutGoal, target: &Name, revisions: &[RevisionCounts]) -> RolloutStep {
    let desired = goal.desired;
    let none = RevisionCounts {
        rev: target.clone(),
        scale: 0,
        instances: 0,
        ready: 0,
    };
    let current = revisions.iter().find(|r| r.rev == *target).unwrap_or(&none);
    let others = || revisions.iter().filter(|r| r.rev != *target);

    // Up: as far as the surge allows, counting each revision's factor or its
    // instances, whichever is more (stopping instances still take room).
    let occupied: u32 = revisions
        .iter()
        .map(|r| r.scale.max(r.instances))
        .fold(0, u32::saturating_add);
    let room = desired
        .saturating_add(goal.max_surge)
        .saturating_sub(occupied);
    let up = current.scale.saturating_add(room).min(desired);

    // Down: slots no ready instance fills go freely; ready instances only
    // while the ready count stays at `desired − max_unavailable` or above.
    // Ready instances above their revision's factor do not count: the scale
    // loop is stopping them (it may not have got to it yet).
    let total_ready: u32 = revisions
        .iter()
        .map(|r| r.ready.min(r.scale))
        .fold(0, u32::saturating_add);
    let floor = desired.saturating_sub(goal.max_unavailable);
    let mut may_stop_ready = total_ready.saturating_sub(floor);
    let mut scales = BTreeMap::new();
    for old in others() {
        let unfilled = old.scale.saturating_sub(old.ready);
        let ready_stopped = (old.scale - unfilled).min(may_stop_ready);
        may_stop_ready -= ready_stopped;
        scales.insert(old.rev.clone(), old.scale - unfilled - ready_stopped);
    }
    // The target's own surplus (its factor above `desired`) goes the same way.
    let target_scale = match current.scale > desired {
        true => {
            let surplus = current.scale - desired;
            let unfilled = current.scale.saturating_sub(current.ready).min(surplus);
            let ready_stopped = (surplus - unfilled).min(may_stop_ready);
            current.scale - unfilled - ready_stopped
        }
        false => up,
    };
    scales.insert(target.clone(), target_scale);

    let complete = current.scale == desired
        && current.ready >= desired
        && others().all(|r| r.scale == 0 && r.instances == 0);
    RolloutStep { scales, complete }
}

/// `/rollouts/<app>`: where an app's rollout stands, kept by the rollout
/// loop so that a new leader goes on from it (and `visor rollout status`
/// shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// The deployment's revision this rollout is of.
    pub revision: Name,
    /// The last revision a rollout completed to (what a rollback goes back to).
    #[serde(default)]
    pub stable: Option<Name>,
    /// Where it stands.
    pub phase: RolloutPhase,
    /// When it began.
    pub started_at: DateTime<Utc>,
    /// Why it failed, once it has.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutPhase {
    /// Moving to the deployment's revision.
    Progressing,
    /// The deployment's revision runs as asked.
    Complete,
    /// Its deadline passed: moving back to the stable revision.
    RollingBack,
    /// Back on the stable revision, until the deployment's revision changes.
    RolledBack,
    /// Its deadline passed: standing where it is, until the deployment's
    /// revision changes.
    Paused,
}

impl RolloutPhase {
    /// The phase's name as stored, e.g. `rolling-back`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Progressing => "progressing",
            Self::Complete => "complete",
            Self::RollingBack => "rolling-back",
            Self::RolledBack => "rolled-back",
            Self::Paused => "paused",
        }
    }
}

impl RolloutStatus {
    /// The revision steps move to now; `None` while paused.
    pub fn aim(&self) -> Option<&Name> {
        match self.phase {
            RolloutPhase::Progressing | RolloutPhase::Complete => Some(&self.revision),
            RolloutPhase::RollingBack | RolloutPhase::RolledBack => {
                Some(self.stable.as_ref().unwrap_or(&self.revision))
            }
            RolloutPhase::Paused => None,
        }
    }
}

/// The status `deployment`'s rollout moves to, given the one kept
/// (`None`: none yet), whether the revision it aims at is complete, and the
/// time: a new rollout when the deployment's revision changed, complete once
/// its aim is, and past its deadline unfinished, rolling back (or paused).
pub fn next_status(
    kept: Option<&RolloutStatus>,
    deployment: &Deployment,
    aim_complete: bool,
    now: DateTime<Utc>,
) -> RolloutStatus {
    let Some(kept) = kept.filter(|kept| kept.revision == deployment.revision) else {
        // What ran before: the last complete revision, or this rollout's stable one.
        let stable = kept.and_then(|kept| match kept.phase {
            RolloutPhase::Complete => Some(kept.revision.clone()),
            _ => kept.stable.clone(),
        });
        let phase = match aim_complete && stable.is_none() {
            true => RolloutPhase::Complete,
            false => RolloutPhase::Progressing,
        };
        return RolloutStatus {
            revision: deployment.revision.clone(),
            stable,
            phase,
            started_at: now,
            reason: None,
        };
    };
    let mut status = kept.clone();
    let deadline = TimeDelta::seconds(i64::from(deployment.rollout.deadline_secs));
    match status.phase {
        RolloutPhase::Progressing if aim_complete => {
            status.phase = RolloutPhase::Complete;
        }
        RolloutPhase::Progressing if now - status.started_at > deadline => {
            status.reason = Some(format!(
                "revision {} did not become ready within {}s",
                status.revision, deployment.rollout.deadline_secs
            ));
            status.phase = match (deployment.rollout.on_failure, &status.stable) {
                (OnFailure::Rollback, Some(stable)) if *stable != status.revision => {
                    RolloutPhase::RollingBack
                }
                _ => RolloutPhase::Paused,
            };
        }
        RolloutPhase::RollingBack if aim_complete => {
            status.phase = RolloutPhase::RolledBack;
        }
        _ => {}
    }
    status
}

/// The notification a rollout's move from `was` to `now` posts, with its
/// reason: a missed deadline (`rollout-failed`, rolling back or paused) and
/// a rollback done (`rollout-rolled-back`), each once, when the phase
/// enters it.
pub fn rollout_notice(
    was: Option<&RolloutStatus>,
    now: &RolloutStatus,
) -> Option<(NotificationKind, String)> {
    let entered = |phase| now.phase == phase && was.is_none_or(|was| was.phase != phase);
    let why = now.reason.as_deref().unwrap_or("it missed its deadline");
    let stable = now.stable.as_ref().unwrap_or(&now.revision);
    if entered(RolloutPhase::RollingBack) {
        Some((
            NotificationKind::RolloutFailed,
            format!("{why}; rolling back to {stable}"),
        ))
    } else if entered(RolloutPhase::Paused) {
        Some((NotificationKind::RolloutFailed, format!("{why}; paused")))
    } else if entered(RolloutPhase::RolledBack) {
        Some((
            NotificationKind::RolloutRolledBack,
            format!("back on revision {stable} after {why}"),
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
