//! Whether what was asked for runs yet: the judgement behind `visor apply
//! --wait` and `visor scale --wait`, and the words for what is missing.
//!
//! The CLI reads the registry, this decides, and the CLI reads again after
//! the next change: waiting stays a loop of pure judgements over snapshots,
//! so a wait that fails names exactly what the last snapshot lacked.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::desired::GroupKey;
use crate::name::Name;
use crate::rollout::{RolloutPhase, RolloutStatus};

/// One group as the registry shows it: what `visor status` lists (its
/// JSON: `app`, `rev`, `proc` and the counts) and what a wait judges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupProgress {
    /// The group.
    #[serde(flatten)]
    pub key: GroupKey,
    /// Its scale factor (0 when it has none).
    pub desired: u32,
    /// Its instances that count toward its scale: pending, claimed or
    /// running, on a live host or on none yet.
    pub active: u32,
    /// Its instances whose process runs (and passed its readiness check),
    /// on a live host.
    pub running: u32,
    /// Its instances being stopped: their processes still run.
    pub stopping: u32,
    /// Its instances no live host can take.
    pub unplaceable: u32,
}

impl GroupProgress {
    /// Whether it runs exactly its scale factor, with nothing more to
    /// start or stop, nor anything still stopping.
    fn settled(&self) -> bool {
        self.running == self.desired && self.active == self.desired && self.stopping == 0
    }
}

/// A group against what was asked of it.
struct Judged<'a> {
    group: &'a GroupProgress,
    /// The instances asked for: its scale factor, or what a deployment asks.
    asked: u32,
}

impl Judged<'_> {
    fn settled(&self) -> bool {
        self.group.desired == self.asked && self.group.settled()
    }

    /// What it lacks, in words; `None` once settled.
    fn missing(&self) -> Option<String> {
        if self.settled() {
            return None;
        }
        let group = self.group;
        let GroupKey { app, rev, proc } = &group.key;
        let mut words = format!(
            "{app} {rev}/{proc}: {} of {} running",
            group.running, self.asked
        );
        if group.desired != self.asked {
            words += &format!(", its scale factor still {}", group.desired);
        } else if group.active > group.desired {
            words += &format!(", {} more to stop", group.active - group.desired);
        }
        if group.stopping > 0 {
            words += &format!(", {} still stopping", group.stopping);
        }
        if group.unplaceable > 0 {
            words += &format!(", {} unplaceable", group.unplaceable);
        }
        Some(words)
    }
}

/// What a wait waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitGoal {
    /// These groups run their scale factors (`visor scale --wait`).
    Groups(Vec<GroupKey>),
    /// Every group of `app` runs its scale factor and, when it is deployed
    /// (`current`), its rollout to that revision is complete and that
    /// revision runs the scale asked for (`visor apply --wait`).
    App {
        /// The app.
        app: Name,
        /// Its deployment, if it has one.
        current: Option<Deployed>,
    },
}

/// What an app's deployment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    /// The revision it runs.
    pub revision: Name,
    /// How many instances of each proc type; a proc type not named runs none.
    pub scale: BTreeMap<Name, u32>,
}

impl Deployed {
    /// What the deployment asks of `group`: the rollout loop writes the
    /// scale factors, so until it has, the registry's are not yet what was
    /// asked for.
    fn asked(&self, group: &GroupProgress) -> u32 {
        if group.key.rev == self.revision {
            self.scale.get(&group.key.proc).copied().unwrap_or(0)
        } else {
            group.desired
        }
    }
}

/// How a wait stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitVerdict {
    /// Not there yet.
    Waiting,
    /// Everything asked for runs.
    Done,
    /// It will not get there by itself: a rollout rolling back, rolled back
    /// or paused.
    Failed(String),
}

/// A wait's progress: instances running of those asked for (of a deployed
/// app, those of the revision it rolls to), what is missing, and the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitProgress {
    /// Running instances, counted up to each group's scale factor.
    pub running: u32,
    /// Instances asked for, every group of the goals together.
    pub desired: u32,
    /// What is missing, one item per group or rollout, in goal order.
    pub missing: Vec<String>,
    /// Whether it is done, failed, or still to come.
    pub verdict: WaitVerdict,
}

/// Judges `goals` against the registry's `groups` and `rollouts` (by app).
///
/// A group the registry does not list has no scale factor and no
/// instances: it is settled at zero. A deployed app is done only once its
/// rollout to the deployed revision is complete, since until the rollout
/// loop has begun, the old revision still looks settled.
pub fn judge_wait(
    goals: &[WaitGoal],
    groups: &[GroupProgress],
    rollouts: &BTreeMap<Name, RolloutStatus>,
) -> WaitProgress {
    let mut progress = WaitProgress {
        running: 0,
        desired: 0,
        missing: Vec::new(),
        verdict: WaitVerdict::Waiting,
    };
    let mut failures = Vec::new();
    let count = |judged: Judged<'_>, progress: &mut WaitProgress| {
        progress.running += judged.group.running.min(judged.asked);
        progress.desired += judged.asked;
        progress.missing.extend(judged.missing());
    };
    let as_is = |group| Judged {
        group,
        asked: group.desired,
    };
    for goal in goals {
        match goal {
            WaitGoal::Groups(keys) => {
                for key in keys {
                    if let Some(group) = groups.iter().find(|g| g.key == *key) {
                        count(as_is(group), &mut progress);
                    }
                }
            }
            WaitGoal::App { app, current } => {
                let Some(deployed) = current else {
                    for group in groups.iter().filter(|g| g.key.app == *app) {
                        count(as_is(group), &mut progress);
                    }
                    continue;
                };
                match rollout_missing(app, &deployed.revision, rollouts.get(app)) {
                    RolloutStand::Done => {}
                    RolloutStand::Missing(words) => progress.missing.push(words),
                    RolloutStand::Failed(words) => failures.push(words),
                }
                for group in groups.iter().filter(|g| g.key.app == *app) {
                    let asked = deployed.asked(group);
                    let judged = Judged { group, asked };
                    if group.key.rev == deployed.revision {
                        count(judged, &mut progress);
                    } else {
                        // Other revisions are only waited for to be gone:
                        // the count is of the revision rolled to.
                        progress.missing.extend(judged.missing());
                    }
                }
                let listed = |proc: &Name| {
                    groups.iter().any(|g| {
                        g.key.app == *app && g.key.rev == deployed.revision && g.key.proc == *proc
                    })
                };
                for (proc, &asked) in &deployed.scale {
                    if asked > 0 && !listed(proc) {
                        let key = GroupKey {
                            app: app.clone(),
                            rev: deployed.revision.clone(),
                            proc: proc.clone(),
                        };
                        let unlisted = GroupProgress {
                            key,
                            desired: asked,
                            running: 0,
                            active: 0,
                            stopping: 0,
                            unplaceable: 0,
                        };
                        count(
                            Judged {
                                group: &unlisted,
                                asked,
                            },
                            &mut progress,
                        );
                    }
                }
            }
        }
    }
    progress.verdict = if !failures.is_empty() {
        WaitVerdict::Failed(failures.join("; "))
    } else if progress.missing.is_empty() {
        WaitVerdict::Done
    } else {
        WaitVerdict::Waiting
    };
    progress
}

/// How a deployed app's rollout stands for a wait.
enum RolloutStand {
    Done,
    Missing(String),
    Failed(String),
}

fn rollout_missing(app: &Name, current: &Name, rollout: Option<&RolloutStatus>) -> RolloutStand {
    let Some(rollout) = rollout.filter(|r| r.revision == *current) else {
        return RolloutStand::Missing(format!("{app}: the rollout to {current} has not begun"));
    };
    match rollout.phase {
        RolloutPhase::Complete => RolloutStand::Done,
        RolloutPhase::Progressing => {
            RolloutStand::Missing(format!("{app}: the rollout to {current} is progressing"))
        }
        // Rolling back is already the failure: the deployed revision will
        // not run. Rolling and rolled back read alike, so that what a wait
        // says does not depend on which of the two it saw first.
        RolloutPhase::RollingBack | RolloutPhase::RolledBack | RolloutPhase::Paused => {
            let reason = rollout.reason.as_deref().unwrap_or("no reason recorded");
            let then = match (rollout.phase, &rollout.stable) {
                (RolloutPhase::Paused, _) => "is paused".to_owned(),
                (_, Some(stable)) => format!("rolls back to {stable}"),
                (_, None) => "rolls back".to_owned(),
            };
            RolloutStand::Failed(format!(
                "{app}: the rollout to {current} failed and {then}: {reason}"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    use super::*;

    fn name(text: &str) -> Name {
        Name::parse("test", text).expect("test names are valid")
    }

    fn key(app: &str, rev: &str, proc: &str) -> GroupKey {
        GroupKey {
            app: name(app),
            rev: name(rev),
            proc: name(proc),
        }
    }

    fn group(rev: &str, desired: u32, running: u32, active: u32) -> GroupProgress {
        GroupProgress {
            key: key("web", rev, "http"),
            desired,
            running,
            active,
            stopping: 0,
            unplaceable: 0,
        }
    }

    fn rollout(revision: &str, phase: RolloutPhase) -> BTreeMap<Name, RolloutStatus> {
        let started_at = DateTime::<Utc>::UNIX_EPOCH;
        BTreeMap::from([(
            name("web"),
            RolloutStatus {
                revision: name(revision),
                stable: Some(name("v1")),
                phase,
                started_at,
                reason: Some("v2 not ready within 30s".into()),
            },
        )])
    }

    fn scale_goal(rev: &str) -> Vec<WaitGoal> {
        vec![WaitGoal::Groups(vec![key("web", rev, "http")])]
    }

    fn app_goal(current: Option<(&str, u32)>) -> Vec<WaitGoal> {
        vec![WaitGoal::App {
            app: name("web"),
            current: current.map(|(revision, http)| Deployed {
                revision: name(revision),
                scale: BTreeMap::from([(name("http"), http)]),
            }),
        }]
    }

    #[test]
    fn a_wait_is_done_only_when_every_group_runs_its_scale_and_no_more() {
        let none = BTreeMap::new();
        /// A case: its name, the groups, the verdict, what is missing, (running, desired).
        type Case = (
            &'static str,
            Vec<GroupProgress>,
            WaitVerdict,
            &'static [&'static str],
            (u32, u32),
        );
        let cases: &[Case] = &[
            (
                "running as asked",
                vec![group("v1", 3, 3, 3)],
                WaitVerdict::Done,
                &[],
                (3, 3),
            ),
            (
                "still starting",
                vec![group("v1", 3, 1, 3)],
                WaitVerdict::Waiting,
                &["web v1/http: 1 of 3 running"],
                (1, 3),
            ),
            (
                "scaled down, the surplus not yet stopping",
                vec![group("v1", 1, 3, 3)],
                WaitVerdict::Waiting,
                &["web v1/http: 3 of 1 running, 2 more to stop"],
                (1, 1),
            ),
            (
                "scaled to zero and gone",
                vec![group("v1", 0, 0, 0)],
                WaitVerdict::Done,
                &[],
                (0, 0),
            ),
            (
                "a group the registry does not list is settled at zero",
                vec![],
                WaitVerdict::Done,
                &[],
                (0, 0),
            ),
            (
                "another revision's group is not waited for",
                vec![group("v1", 3, 3, 3), group("v2", 2, 0, 2)],
                WaitVerdict::Done,
                &[],
                (3, 3),
            ),
        ];
        for (case, groups, verdict, missing, (running, desired)) in cases {
            let progress = judge_wait(&scale_goal("v1"), groups, &none);
            assert_eq!(progress.verdict, *verdict, "{case}");
            assert_eq!(progress.missing, *missing, "{case}");
            assert_eq!(
                (progress.running, progress.desired),
                (*running, *desired),
                "{case}"
            );
        }
    }

    #[test]
    fn a_scale_down_is_done_once_nothing_is_stopping_any_more() {
        let none = BTreeMap::new();
        let mut stopping = group("v1", 1, 1, 1);
        stopping.stopping = 2;
        let progress = judge_wait(&scale_goal("v1"), &[stopping.clone()], &none);
        assert_eq!(progress.verdict, WaitVerdict::Waiting);
        assert_eq!(
            progress.missing,
            ["web v1/http: 1 of 1 running, 2 still stopping"]
        );
        stopping.stopping = 0;
        let progress = judge_wait(&scale_goal("v1"), &[stopping], &none);
        assert_eq!(progress.verdict, WaitVerdict::Done);
    }

    #[test]
    fn unplaceable_instances_are_named_in_what_is_missing() {
        let mut stuck = group("v1", 4, 1, 4);
        stuck.unplaceable = 3;
        let progress = judge_wait(&scale_goal("v1"), &[stuck], &BTreeMap::new());
        assert_eq!(
            progress.missing,
            ["web v1/http: 1 of 4 running, 3 unplaceable"]
        );
    }

    #[test]
    fn a_deployed_app_waits_for_its_rollout_to_the_deployed_revision() {
        let settled_v2 = vec![group("v1", 0, 0, 0), group("v2", 3, 3, 3)];
        let cases = [
            (
                "no rollout yet: the old revision looks settled",
                BTreeMap::new(),
                WaitVerdict::Waiting,
                vec!["web: the rollout to v2 has not begun".to_owned()],
            ),
            (
                "a rollout of an earlier revision",
                rollout("v1", RolloutPhase::Complete),
                WaitVerdict::Waiting,
                vec!["web: the rollout to v2 has not begun".to_owned()],
            ),
            (
                "progressing",
                rollout("v2", RolloutPhase::Progressing),
                WaitVerdict::Waiting,
                vec!["web: the rollout to v2 is progressing".to_owned()],
            ),
            (
                "complete",
                rollout("v2", RolloutPhase::Complete),
                WaitVerdict::Done,
                vec![],
            ),
            (
                "rolling back",
                rollout("v2", RolloutPhase::RollingBack),
                WaitVerdict::Failed(
                    "web: the rollout to v2 failed and rolls back to v1: v2 not ready within 30s"
                        .into(),
                ),
                vec![],
            ),
            (
                "rolled back",
                rollout("v2", RolloutPhase::RolledBack),
                WaitVerdict::Failed(
                    "web: the rollout to v2 failed and rolls back to v1: v2 not ready within 30s"
                        .into(),
                ),
                vec![],
            ),
            (
                "paused",
                rollout("v2", RolloutPhase::Paused),
                WaitVerdict::Failed(
                    "web: the rollout to v2 failed and is paused: v2 not ready within 30s".into(),
                ),
                vec![],
            ),
        ];
        for (case, rollouts, verdict, missing) in cases {
            let progress = judge_wait(&app_goal(Some(("v2", 3))), &settled_v2, &rollouts);
            assert_eq!(progress.verdict, verdict, "{case}");
            assert_eq!(progress.missing, missing, "{case}");
        }
    }

    #[test]
    fn an_app_waits_for_every_group_of_it_even_with_its_rollout_complete() {
        let groups = vec![group("v1", 0, 1, 0), group("v2", 3, 3, 3)];
        let progress = judge_wait(
            &app_goal(Some(("v2", 3))),
            &groups,
            &rollout("v2", RolloutPhase::Complete),
        );
        assert_eq!(progress.verdict, WaitVerdict::Waiting);
        assert_eq!(progress.missing, ["web v1/http: 1 of 0 running"]);
        let undeployed = judge_wait(&app_goal(None), &groups[1..], &BTreeMap::new());
        assert_eq!(undeployed.verdict, WaitVerdict::Done);
    }

    #[test]
    fn a_deployed_revision_waits_for_the_scale_asked_for_not_the_one_written() {
        let complete = rollout("v2", RolloutPhase::Complete);
        let cases = [
            (
                "the rollout loop has not written the new factor yet",
                vec![group("v2", 2, 2, 2)],
                vec!["web v2/http: 2 of 3 running, its scale factor still 2"],
                (2, 3),
            ),
            (
                "the deployed revision has no group yet",
                vec![group("v1", 3, 3, 3)],
                vec!["web v2/http: 0 of 3 running"],
                (0, 3),
            ),
            ("there", vec![group("v2", 3, 3, 3)], vec![], (3, 3)),
        ];
        for (case, groups, missing, (running, desired)) in cases {
            let progress = judge_wait(&app_goal(Some(("v2", 3))), &groups, &complete);
            assert_eq!(progress.missing, missing, "{case}");
            assert_eq!(
                progress.verdict == WaitVerdict::Done,
                missing.is_empty(),
                "{case}"
            );
            assert_eq!(
                (progress.running, progress.desired),
                (running, desired),
                "{case}"
            );
        }
    }

    fn any_group() -> impl Strategy<Value = GroupProgress> {
        (0..3usize, 0..5u32, 0..5u32, 0..5u32, 0..2u32).prop_map(
            |(rev, desired, running, extra, stopping)| GroupProgress {
                key: key("web", ["v1", "v2", "v3"][rev], "http"),
                desired,
                running,
                active: running + extra,
                stopping,
                unplaceable: 0,
            },
        )
    }

    proptest! {
        /// Done exactly when nothing is missing, and then every group of the
        /// goal runs its scale factor: never done early, never waiting on nothing.
        #[test]
        fn done_means_nothing_is_missing_and_every_group_is_settled(
            groups in proptest::collection::vec(any_group(), 0..6),
        ) {
            let progress = judge_wait(&app_goal(None), &groups, &BTreeMap::new());
            let settled = groups.iter().all(GroupProgress::settled);
            prop_assert_eq!(progress.verdict == WaitVerdict::Done, settled);
            prop_assert_eq!(progress.missing.is_empty(), settled);
            prop_assert!(progress.running <= progress.desired);
        }
    }
}
