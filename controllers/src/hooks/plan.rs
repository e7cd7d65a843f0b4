//! One relation's reconcile, decided: who takes part, which units are looked
//! at, and what is written for each.
//!
//! The participants of a relation are its units (running instances of its
//! apps on live hosts, see [`relation_units`]) and every unit that still
//! holds a state or a hook in it (leaving, or the relation gone). Each is
//! stepped through the relation's [`RelationHooks`], except a unit that is
//! waiting: a member, able to run hooks, with a hook outstanding. Nothing
//! is handed to it until it acknowledges, and a step not taken is a step
//! taken later (its source catches up on whatever changed at its next
//! step), so skipping it keeps a reconcile proportional to the units that
//! can move.
//!
//! Invariants: every write is for a participant; a unit with a hook
//! outstanding is never handed another; skipping the waiting units decides
//! exactly what stepping every participant would (the property tests hold
//! plans to both).

use std::collections::{BTreeMap, BTreeSet};

use super::driver::{RelationHooks, UnitAction, UnitView};
use super::kind::HookInfo;
use super::state::State;
use crate::model::Instance;
use crate::name::Name;
use crate::relation::{Members, Relation, relation_units};

/// What the registry shows of one relation, at one moment.
#[derive(Debug, Clone)]
pub struct RelationSnapshot<'a> {
    /// The relation as registered (and valid); `None` once it is removed.
    pub registered: Option<&'a Relation>,
    /// Instances by id: at least every one that could be a unit (the
    /// running instances of the relation's apps) and the instance of every
    /// unit holding a state or a hook in it. A unit whose instance is not
    /// here can run no more hooks.
    pub instances: BTreeMap<&'a Name, &'a Instance>,
    /// The live hosts.
    pub live_hosts: &'a BTreeSet<Name>,
    /// The settings version of each unit that published settings.
    pub versions: BTreeMap<Name, i64>,
    /// Each unit's acknowledged state in the relation.
    pub stored: BTreeMap<Name, &'a State>,
    /// Each unit's hook handed and not yet acknowledged.
    pub outstanding: BTreeMap<Name, HookInfo>,
}

impl RelationSnapshot<'_> {
    /// The relation's units, by side (none once it is removed).
    pub fn members(&self) -> Members {
        match self.registered {
            Some(relation) => relation_units(relation, self.instances_view(), self.live_hosts),
            None => Members::default(),
        }
    }

    /// Every unit to look at: the members, and every unit holding a state
    /// or a hook in the relation.
    pub fn participants(&self, members: &Members) -> BTreeSet<Name> {
        members
            .units()
            .chain(self.stored.keys())
            .chain(self.outstanding.keys())
            .cloned()
            .collect()
    }

    /// Whether `unit` can still run hooks: its instance exists and is not
    /// in a terminal state.
    pub fn can_run_hooks(&self, unit: &Name) -> bool {
        can_run_hooks(&self.instances, unit)
    }

    fn instances_view(&self) -> impl Iterator<Item = (&Name, &Instance)> {
        self.instances.iter().map(|(id, i)| (*id, *i))
    }
}

fn can_run_hooks(instances: &BTreeMap<&Name, &Instance>, unit: &Name) -> bool {
    instances.get(unit).is_some_and(|i| !i.state.is_terminal())
}

/// Whether a unit is waiting on its outstanding hook: stepping it could hand
/// nothing, and what it would learn it learns at its next step.
pub fn is_waiting(member: bool, can_run_hooks: bool, outstanding: bool) -> bool {
    member && can_run_hooks && outstanding
}

/// One unit's write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitWrite {
    /// The unit.
    pub unit: Name,
    /// What to write for it.
    pub action: UnitAction,
}

/// Everything the shell does for one relation, in order: the unit writes,
/// then, once nothing of the relation is left, dropping its sources and
/// clearing what units left under it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct RelationPlan {
    /// The writes, in unit order.
    pub writes: Vec<UnitWrite>,
    /// The relation is removed and no unit takes part any more: its
    /// [`RelationHooks`] can be dropped.
    pub finished: bool,
    /// Finished, and units' settings are left under it: remove them (and any
    /// states) once the writes are done.
    pub clear: bool,
}

impl RelationHooks {
    /// Decides what to write for every participant of the relation
    /// `snapshot` shows, stepping each that is not waiting; forgets the
    /// sources of units that no longer take part.
    pub fn plan(&mut self, snapshot: RelationSnapshot<'_>) -> RelationPlan {
        let members = snapshot.members();
        let participants = snapshot.participants(&members);
        let RelationSnapshot {
            registered,
            instances,
            versions,
            stored,
            mut outstanding,
            ..
        } = snapshot;
        let mut writes = Vec::new();
        for unit in &participants {
            let can_run_hooks = can_run_hooks(&instances, unit);
            let member = members.contains(unit);
            if is_waiting(member, can_run_hooks, outstanding.contains_key(unit)) {
                continue;
            }
            let view = UnitView {
                members: members.remotes(unit).map(|remotes| {
                    remotes
                        .map(|remote| {
                            let version = versions.get(remote).copied().unwrap_or(0);
                            (remote.to_string(), version)
                        })
                        .collect()
                }),
                can_run_hooks,
                stored: stored.get(unit).copied(),
                outstanding: outstanding.remove(unit),
            };
            if let Some(action) = self.step(unit.as_str(), view) {
                writes.push(UnitWrite {
                    unit: unit.clone(),
                    action,
                });
            }
        }
        self.retain(&participants);
        let finished = registered.is_none() && participants.is_empty();
        RelationPlan {
            writes,
            finished,
            clear: finished && !versions.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InstanceState::{self, *};
    use crate::relation::Endpoint;
    use crate::testing::{at, group, instance, name};

    fn web_db() -> Relation {
        let endpoints = vec![
            Endpoint::new(name("web"), None),
            Endpoint::new(name("db"), Some(name("sql"))),
        ];
        Relation::new(name("r1"), endpoints, at(0)).expect("valid")
    }

    fn doc(app: &str, proc: &str, state: InstanceState, host: Option<&str>) -> Instance {
        instance(&group(app, "v1", proc), state, host)
    }

    fn hand(hook: HookInfo, enter: bool) -> UnitAction {
        UnitAction::Hand { hook, enter }
    }

    fn write(unit: &str, action: UnitAction) -> UnitWrite {
        UnitWrite {
            unit: name(unit),
            action,
        }
    }

    #[test]
    fn a_unit_is_waiting_only_as_a_member_able_to_run_hooks_with_a_hook_outstanding() {
        for member in [false, true] {
            for can_run_hooks in [false, true] {
                for outstanding in [false, true] {
                    assert_eq!(
                        is_waiting(member, can_run_hooks, outstanding),
                        member && can_run_hooks && outstanding,
                        "member {member}, can run hooks {can_run_hooks}, outstanding {outstanding}"
                    );
                }
            }
        }
    }

    #[test]
    fn members_are_running_units_of_an_endpoint_on_live_hosts_and_holders_take_part_too() {
        let relation = web_db();
        let live = BTreeSet::from([name("h1")]);
        let documents = [
            ("w1", doc("web", "http", Running, Some("h1"))),
            ("w2", doc("web", "http", Running, Some("dead"))),
            ("w3", doc("web", "http", Stopping, Some("h1"))),
            ("w4", doc("web", "http", Running, None)),
            ("d1", doc("db", "sql", Running, Some("h1"))),
            ("d2", doc("db", "backup", Running, Some("h1"))),
            ("x1", doc("other", "http", Running, Some("h1"))),
        ];
        let ids: Vec<Name> = documents.iter().map(|(id, _)| name(id)).collect();
        let entered = State::new("r1");
        let snapshot = RelationSnapshot {
            registered: Some(&relation),
            instances: ids.iter().zip(documents.iter().map(|(_, i)| i)).collect(),
            live_hosts: &live,
            versions: BTreeMap::from([(name("d1"), 4)]),
            stored: BTreeMap::from([(name("w3"), &entered), (name("gone"), &entered)]),
            outstanding: BTreeMap::from([(name("d1"), HookInfo::joined("r1", "w1", 0))]),
        };
        let members = snapshot.members();
        let shown: Vec<&str> = members.units().map(Name::as_str).collect();
        assert_eq!(shown, ["d1", "w1"]);
        let participants: Vec<Name> = snapshot.participants(&members).into_iter().collect();
        assert_eq!(participants, ["d1", "gone", "w1", "w3"].map(name));
        assert!(
            snapshot.can_run_hooks(&name("w3")),
            "stopping still runs hooks"
        );
        assert!(!snapshot.can_run_hooks(&name("gone")), "no instance");

        let plan = RelationHooks::new("r1").plan(snapshot);
        assert_eq!(
            plan.writes,
            [
                // d1 waits on its outstanding hook: not looked at.
                write("gone", UnitAction::Withdraw),
                write("w1", hand(HookInfo::joined("r1", "d1", 4), true)),
                write("w3", hand(HookInfo::broken("r1"), false)),
            ]
        );
        assert!(!plan.finished && !plan.clear);
    }

    /// Relation r1 once removed: w1 runs, published settings if `settings`,
    /// and holds `stored`.
    fn removed<'a>(
        unit: &'a Name,
        running: &'a Instance,
        live: &'a BTreeSet<Name>,
        stored: Option<&'a State>,
        settings: bool,
    ) -> RelationSnapshot<'a> {
        RelationSnapshot {
            registered: None,
            instances: BTreeMap::from([(unit, running)]),
            live_hosts: live,
            versions: settings.then(|| (name("w1"), 2)).into_iter().collect(),
            stored: stored.map(|s| (name("w1"), s)).into_iter().collect(),
            outstanding: BTreeMap::new(),
        }
    }

    #[test]
    fn a_removed_relation_winds_its_units_down_then_is_finished_and_cleared() {
        let live = BTreeSet::from([name("h1")]);
        let running = doc("web", "http", Running, Some("h1"));
        let entered = State::new("r1");
        let mut hooks = RelationHooks::new("r1");
        let w1 = name("w1");
        let winding = hooks.plan(removed(&w1, &running, &live, Some(&entered), true));
        assert_eq!(
            winding.writes,
            [write("w1", hand(HookInfo::broken("r1"), false))]
        );
        assert!(!winding.finished, "w1 still holds a state");

        let done = hooks.plan(removed(&w1, &running, &live, None, true));
        let cleared = RelationPlan {
            writes: vec![],
            finished: true,
            clear: true,
        };
        assert_eq!(done, cleared);
        let nothing_left = hooks.plan(removed(&w1, &running, &live, None, false));
        assert!(nothing_left.finished && !nothing_left.clear);
    }
}
