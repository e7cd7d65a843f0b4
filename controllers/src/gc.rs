//! Garbage collection of finished instances.
//!
//! Terminal instances (exited, failed, lost) are kept for a retention period
//! after their last change, so an operator can still see why something stopped;
//! after that they are deleted.
//!
//! Invariants: an instance that can still change state is never collected, and
//! a terminal one only once its last change is strictly older than
//! `now - retention` (one changed exactly at the cutoff is kept).

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::Instance;
use crate::name::Name;

/// The ids of the terminal instances whose last change (`updated_at`, or
/// `created_at` if they never changed) is older than `now - retention`,
/// sorted and without duplicates.
///
/// A negative retention keeps nothing beyond `now`, as zero does; a retention
/// reaching before the earliest representable time collects nothing.
pub fn plan_gc<'a>(
    instances: impl IntoIterator<Item = (&'a Name, &'a Instance)>,
    now: DateTime<Utc>,
    retention: TimeDelta,
) -> Vec<Name> {
    let Some(cutoff) = now.checked_sub_signed(retention.max(TimeDelta::zero())) else {
        return Vec::new();
    };
    let mut expired: Vec<Name> = instances
        .into_iter()
        .filter(|(_, instance)| instance.state.is_terminal())
        .filter(|(_, instance)| last_change(instance) < cutoff)
        .map(|(id, _)| id.clone())
        .collect();
    expired.sort();
    expired.dedup();
    expired
}

fn last_change(instance: &Instance) -> DateTime<Utc> {
    instance.updated_at.unwrap_or(instance.created_at)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::InstanceState::{self, *};
    use crate::testing::{at, group, instance, name, names};

    /// Instances created at 0, last changed at the given second (`None`: never).
    fn instances(rows: &[(&str, InstanceState, Option<i64>)]) -> BTreeMap<Name, Instance> {
        let key = group("web", "v1", "http");
        rows.iter()
            .map(|&(id, state, updated)| {
                let mut i = instance(&key, state, Some("h1"));
                i.updated_at = updated.map(at);
                (name(id), i)
            })
            .collect()
    }

    #[test]
    fn terminal_instances_older_than_the_retention_are_collected() {
        let all = instances(&[
            ("exited-old", Exited, Some(10)),
            ("failed-old", Failed, Some(50)),
            ("lost-old", Lost, Some(99)),
            ("lost-at-cutoff", Lost, Some(100)),
            ("exited-recent", Exited, Some(150)),
            ("never-updated", Failed, None),
            ("running-old", Running, Some(10)),
            ("pending-old", Pending, None),
            ("stopping-old", Stopping, Some(10)),
        ]);
        let retention = TimeDelta::seconds(100);
        assert_eq!(
            plan_gc(&all, at(200), retention),
            names(&["exited-old", "failed-old", "lost-old", "never-updated"])
        );
    }

    #[test]
    fn the_cutoff_itself_is_kept_and_a_moment_later_collected() {
        let all = instances(&[("i", Exited, Some(100))]);
        let retention = TimeDelta::seconds(100);
        assert!(plan_gc(&all, at(200), retention).is_empty());
        let just_after = at(200) + TimeDelta::nanoseconds(1);
        assert_eq!(plan_gc(&all, just_after, retention), names(&["i"]));
    }

    #[test]
    fn updated_at_wins_over_created_at() {
        let all = instances(&[("i", Exited, Some(150))]);
        assert!(plan_gc(&all, at(200), TimeDelta::seconds(100)).is_empty());
    }

    #[test]
    fn zero_or_negative_retention_collects_everything_finished_before_now() {
        let all = instances(&[("past", Exited, Some(10)), ("now", Exited, Some(20))]);
        for retention in [TimeDelta::zero(), TimeDelta::seconds(-1000)] {
            assert_eq!(plan_gc(&all, at(20), retention), names(&["past"]));
        }
    }

    #[test]
    fn a_retention_beyond_the_calendar_collects_nothing() {
        let all = instances(&[("i", Exited, Some(10))]);
        assert!(plan_gc(&all, at(20), TimeDelta::MAX).is_empty());
    }
}
