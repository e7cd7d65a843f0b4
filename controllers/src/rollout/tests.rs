use proptest::prelude::*;

use super::*;

fn name(value: &str) -> Name {
    Name::parse("rev", value).expect("a valid name")
}

fn counts(rev: &str, scale: u32, instances: u32, ready: u32) -> RevisionCounts {
    RevisionCounts {
        rev: name(rev),
        scale,
        instances,
        ready,
    }
}

fn goal(desired: u32, max_surge: u32, max_unavailable: u32) -> RolloutGoal {
    RolloutGoal {
        desired,
        max_surge,
        max_unavailable,
    }
}

fn scales(step: &RolloutStep) -> Vec<(&str, u32)> {
    step.scales
        .iter()
        .map(|(rev, n)| (rev.as_str(), *n))
        .collect()
}

/// What a step is given and what it must answer: a description, the goal,
/// the revisions, the scale factors and whether it is complete.
type Case = (
    &'static str,
    RolloutGoal,
    Vec<RevisionCounts>,
    Vec<(&'static str, u32)>,
    bool,
);

#[test]
fn steps_in_a_table() {
    let cases: Vec<Case> = vec![
        (
            "a first deployment starts everything at once",
            goal(3, 1, 0),
            vec![],
            vec![("v2", 3)],
            false,
        ),
        (
            "surge 2, unavailable 0: two new, no old stopped yet",
            goal(10, 2, 0),
            vec![counts("v1", 10, 10, 10)],
            vec![("v1", 10), ("v2", 2)],
            false,
        ),
        (
            "two new ready: two old may go, and no more new until they have",
            goal(10, 2, 0),
            vec![counts("v1", 10, 10, 10), counts("v2", 2, 2, 2)],
            vec![("v1", 8), ("v2", 2)],
            false,
        ),
        (
            "new ones not ready yet: nothing old goes",
            goal(10, 2, 0),
            vec![counts("v1", 10, 10, 10), counts("v2", 2, 2, 0)],
            vec![("v1", 10), ("v2", 2)],
            false,
        ),
        (
            "stopping old instances still take room",
            goal(10, 2, 0),
            vec![counts("v1", 8, 10, 8), counts("v2", 2, 2, 2)],
            vec![("v1", 8), ("v2", 2)],
            false,
        ),
        (
            "once they are gone, two more new",
            goal(10, 2, 0),
            vec![counts("v1", 8, 8, 8), counts("v2", 2, 2, 2)],
            vec![("v1", 8), ("v2", 4)],
            false,
        ),
        (
            "no surge, one unavailable: one old goes first",
            goal(4, 0, 1),
            vec![counts("v1", 4, 4, 4)],
            vec![("v1", 3), ("v2", 0)],
            false,
        ),
        (
            "old slots no ready instance fills go freely",
            goal(4, 1, 0),
            vec![counts("v1", 4, 4, 2), counts("v2", 1, 1, 1)],
            vec![("v1", 2), ("v2", 1)],
            false,
        ),
        (
            "the oldest goes first",
            goal(4, 0, 2),
            vec![counts("v1", 2, 2, 2), counts("v2", 2, 2, 2)],
            vec![("v1", 0), ("v2", 2), ("v3", 0)],
            false,
        ),
        (
            "done: all new and ready, nothing old left",
            goal(3, 1, 0),
            vec![counts("v1", 0, 0, 0), counts("v2", 3, 3, 3)],
            vec![("v1", 0), ("v2", 3)],
            true,
        ),
        (
            "not done while an old instance is still stopping",
            goal(3, 1, 0),
            vec![counts("v1", 0, 1, 0), counts("v2", 3, 3, 3)],
            vec![("v1", 0), ("v2", 3)],
            false,
        ),
        (
            "desired lowered mid-way: the target's surplus goes within the floor",
            goal(2, 1, 0),
            vec![counts("v2", 4, 4, 4)],
            vec![("v2", 2)],
            false,
        ),
    ];
    for (what, goal, revisions, expected, complete) in cases {
        let target = match what {
            "the oldest goes first" => name("v3"),
            _ => name("v2"),
        };
        let step = plan_rollout(goal, &target, &revisions);
        assert_eq!(scales(&step), expected, "{what}");
        assert_eq!(step.complete, complete, "{what}");
    }
}

/// An instance in the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Pending,
    Ready,
    Stopping,
}

/// One revision's instances and factor in the simulation.
#[derive(Debug, Clone)]
struct Simulated {
    rev: Name,
    scale: u32,
    instances: Vec<Life>,
}

impl Simulated {
    fn active(&self) -> u32 {
        self.instances
            .iter()
            .filter(|l| **l != Life::Stopping)
            .count() as u32
    }

    fn counts(&self) -> RevisionCounts {
        RevisionCounts {
            rev: self.rev.clone(),
            scale: self.scale,
            instances: self.instances.len() as u32,
            ready: self.instances.iter().filter(|l| **l == Life::Ready).count() as u32,
        }
    }

    /// The scale loop: start up to the factor, stop down to it (pending first).
    fn reconcile(&mut self) {
        while self.active() < self.scale {
            self.instances.push(Life::Pending);
        }
        while self.active() > self.scale {
            let victim = self
                .instances
                .iter()
                .position(|l| *l == Life::Pending)
                .or_else(|| self.instances.iter().position(|l| *l == Life::Ready))
                .expect("an active instance");
            self.instances[victim] = Life::Stopping;
        }
    }

    /// The agents: some pending become ready, some stopping ones exit;
    /// all of them when `all` (agents get there in the end).
    fn progress(&mut self, luck: &mut impl Iterator<Item = bool>, all: bool) {
        for life in &mut self.instances {
            if *life == Life::Pending && (all || luck.next().unwrap_or(true)) {
                *life = Life::Ready;
            }
        }
        self.instances
            .retain(|life| *life != Life::Stopping || !(all || luck.next().unwrap_or(true)));
    }
}

fn total(revisions: &[Simulated]) -> u32 {
    revisions.iter().map(|r| r.instances.len() as u32).sum()
}

fn ready(revisions: &[Simulated]) -> u32 {
    revisions.iter().map(|r| r.counts().ready).sum()
}

proptest! {
    /// A rollout from a steady old revision, with the scale loop and the
    /// agents acting in any order and at any pace: the ready count never
    /// drops below desired − max_unavailable, the total never exceeds
    /// desired + max_surge, and it completes.
    #[test]
    fn a_rollout_keeps_its_bounds_and_completes(
        desired in 1u32..12,
        max_surge in 0u32..4,
        max_unavailable in 0u32..4,
        old_revisions in 1usize..3,
        luck in prop::collection::vec(any::<bool>(), 4000),
    ) {
        prop_assume!(max_surge > 0 || max_unavailable > 0);
        let goal = goal(desired, max_surge, max_unavailable);
        let target = name("new");
        // Steady before: the old revisions share `desired`, all ready.
        let mut revisions: Vec<Simulated> = (0..old_revisions)
            .map(|i| {
                let share = desired / old_revisions as u32
                    + u32::from((i as u32) < desired % old_revisions as u32);
                Simulated {
                    rev: name(&format!("old{i}")),
                    scale: share,
                    instances: vec![Life::Ready; share as usize],
                }
            })
            .collect();
        revisions.push(Simulated { rev: target.clone(), scale: 0, instances: Vec::new() });
        let floor = desired.saturating_sub(max_unavailable);
        let ceiling = desired + max_surge;
        let mut luck = luck.into_iter().cycle();
        let mut complete = false;
        for round in 0..400 {
            let counts: Vec<RevisionCounts> = revisions.iter().map(Simulated::counts).collect();
            let step = plan_rollout(goal, &target, &counts);
            if step.complete {
                complete = true;
                break;
            }
            for revision in &mut revisions {
                revision.scale = step.scales[&revision.rev];
            }
            // The scale loop reconciles one revision after another, in
            // either order, and may lag: a revision it has not reached yet
            // is planned again as it was. The bounds hold after each.
            let mut order: Vec<usize> = (0..revisions.len()).collect();
            if luck.next().unwrap_or(false) {
                order.reverse();
            }
            for i in order {
                if round % 4 != 3 && luck.next().unwrap_or(true) {
                    continue;
                }
                revisions[i].reconcile();
                prop_assert!(ready(&revisions) >= floor, "ready {} below {floor}: {revisions:?}", ready(&revisions));
                prop_assert!(total(&revisions) <= ceiling, "total {} above {ceiling}: {revisions:?}", total(&revisions));
            }
            for revision in &mut revisions {
                revision.progress(&mut luck, round % 4 == 3);
            }
        }
        prop_assert!(complete, "not complete after 400 steps: {revisions:?}");
        let new = revisions.iter().find(|r| r.rev == target).expect("target");
        prop_assert_eq!(new.counts().ready, desired);
        prop_assert_eq!(total(&revisions), desired);
    }
}

mod status {
    use chrono::{DateTime, TimeDelta, Utc};

    use super::name;
    use crate::model::{Deployment, OnFailure, Rollout};
    use crate::notifications::NotificationKind;
    use crate::rollout::{RolloutPhase, RolloutStatus, next_status, rollout_notice};

    fn deployment(revision: &str, on_failure: OnFailure) -> Deployment {
        Deployment {
            revision: name(revision),
            scale: Default::default(),
            rollout: Rollout {
                deadline_secs: 60,
                on_failure,
                ..Rollout::default()
            },
            created_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(secs)
    }

    #[test]
    fn a_rollout_goes_through_its_phases() {
        let v2 = deployment("v2", OnFailure::Rollback);
        // The first deployment has nothing to roll from.
        let first = next_status(None, &deployment("v1", OnFailure::Rollback), false, at(0));
        assert_eq!(first.phase, RolloutPhase::Progressing);
        let v1 = next_status(
            Some(&first),
            &deployment("v1", OnFailure::Rollback),
            true,
            at(5),
        );
        assert_eq!(v1.phase, RolloutPhase::Complete);

        // A new revision starts a rollout from the complete one.
        let rolling = next_status(Some(&v1), &v2, false, at(10));
        assert_eq!(
            (
                rolling.phase,
                rolling.stable.as_ref().map(|s| s.as_str()),
                rolling.started_at
            ),
            (RolloutPhase::Progressing, Some("v1"), at(10))
        );
        assert_eq!(rolling.aim().map(|a| a.as_str()), Some("v2"));
        // Within its deadline it goes on; complete, it is done.
        assert_eq!(
            next_status(Some(&rolling), &v2, false, at(70)).phase,
            RolloutPhase::Progressing
        );
        assert_eq!(
            next_status(Some(&rolling), &v2, true, at(70)).phase,
            RolloutPhase::Complete
        );

        // Past its deadline it rolls back to v1, then stays there.
        let failed = next_status(Some(&rolling), &v2, false, at(71));
        assert_eq!(failed.phase, RolloutPhase::RollingBack);
        assert_eq!(failed.aim().map(|a| a.as_str()), Some("v1"));
        assert!(
            failed
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("within 60s"))
        );
        let back = next_status(Some(&failed), &v2, true, at(80));
        assert_eq!(back.phase, RolloutPhase::RolledBack);
        assert_eq!(
            next_status(Some(&back), &v2, false, at(900)).phase,
            RolloutPhase::RolledBack
        );

        // A newer revision starts again, from v1 still.
        let v3 = next_status(
            Some(&back),
            &deployment("v3", OnFailure::Rollback),
            false,
            at(1000),
        );
        assert_eq!(
            (v3.phase, v3.stable.as_ref().map(|s| s.as_str())),
            (RolloutPhase::Progressing, Some("v1"))
        );
    }

    #[test]
    fn pause_stands_still_and_a_rollout_without_a_stable_revision_pauses() {
        let rolling = RolloutStatus {
            revision: name("v2"),
            stable: Some(name("v1")),
            phase: RolloutPhase::Progressing,
            started_at: at(0),
            reason: None,
        };
        let paused = next_status(
            Some(&rolling),
            &deployment("v2", OnFailure::Pause),
            false,
            at(61),
        );
        assert_eq!(paused.phase, RolloutPhase::Paused);
        assert_eq!(paused.aim(), None);
        let first = RolloutStatus {
            stable: None,
            ..rolling
        };
        let stuck = next_status(
            Some(&first),
            &deployment("v2", OnFailure::Rollback),
            false,
            at(61),
        );
        assert_eq!(stuck.phase, RolloutPhase::Paused, "nothing to roll back to");
    }

    #[test]
    fn a_failure_and_a_rollback_done_are_notified_once_each() {
        let status = |phase| RolloutStatus {
            revision: name("v3"),
            stable: Some(name("v2")),
            phase,
            started_at: at(0),
            reason: Some("revision v3 did not become ready within 60s".to_owned()),
        };
        use NotificationKind::{RolloutFailed, RolloutRolledBack};
        use RolloutPhase::{Complete, Paused, Progressing, RolledBack, RollingBack};
        type Row = (
            Option<RolloutPhase>,
            RolloutPhase,
            Option<(NotificationKind, &'static str)>,
        );
        let table: &[Row] = &[
            (None, Progressing, None),
            (Some(Progressing), Progressing, None),
            (Some(Progressing), Complete, None),
            (
                Some(Progressing),
                RollingBack,
                Some((
                    RolloutFailed,
                    "revision v3 did not become ready within 60s; rolling back to v2",
                )),
            ),
            (Some(RollingBack), RollingBack, None),
            (
                Some(RollingBack),
                RolledBack,
                Some((
                    RolloutRolledBack,
                    "back on revision v2 after revision v3 did not become ready within 60s",
                )),
            ),
            (Some(RolledBack), RolledBack, None),
            (
                Some(Progressing),
                Paused,
                Some((
                    RolloutFailed,
                    "revision v3 did not become ready within 60s; paused",
                )),
            ),
            (Some(Paused), Paused, None),
        ];
        for (was, now, expected) in table {
            let was = was.map(status);
            let notice = rollout_notice(was.as_ref(), &status(*now));
            assert_eq!(
                notice
                    .as_ref()
                    .map(|(kind, reason)| (*kind, reason.as_str())),
                *expected,
                "{was:?} -> {now:?}"
            );
        }
    }
}
