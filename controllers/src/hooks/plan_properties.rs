//! Properties of relation plans over random registries: a peer relation, a
//! relation of two endpoints, or one removed; up to eight units of three
//! apps in every state, on live, dead or no hosts (or with no instance at
//! all); stored states and outstanding hooks on any of them. Two rounds:
//! the second after the first's writes were carried out and some hooks
//! acknowledged.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::driver::{RelationHooks, UnitAction, UnitView};
use super::kind::{HookInfo, HookKind};
use super::plan::{RelationPlan, RelationSnapshot, UnitWrite, is_waiting};
use super::state::State;
use crate::model::{Instance, InstanceState};
use crate::name::Name;
use crate::relation::{Endpoint, Relation};
use crate::testing::{at, group, instance, name};

const UNITS: [&str; 8] = ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"];
const APPS: [&str; 3] = ["web", "db", "other"];
const PROCS: [&str; 2] = ["sql", "http"];
const HOSTS: [&str; 3] = ["h1", "h2", "dead"];
const STATES: [InstanceState; 7] = InstanceState::ALL;

/// (app, proc, state, host or none).
type InstanceSpec = (usize, usize, usize, Option<usize>);

#[derive(Debug, Clone)]
struct UnitSpec {
    instance: Option<InstanceSpec>,
    /// Its stored state: none, entered alone, or joined to the remote unit.
    stored: Option<Option<usize>>,
    /// A hook outstanding for it (joined of this remote unit).
    outstanding: Option<usize>,
    version: Option<i64>,
    /// Round two: whether its outstanding hook is acknowledged, and whether
    /// its settings change.
    acknowledges: bool,
    touches: bool,
}

fn unit_spec() -> impl Strategy<Value = UnitSpec> {
    (
        prop::option::weighted(
            0.85,
            (
                0..APPS.len(),
                0..PROCS.len(),
                0..STATES.len(),
                prop::option::weighted(0.9, 0..HOSTS.len()),
            ),
        ),
        prop::option::weighted(0.4, prop::option::of(0..UNITS.len())),
        prop::option::weighted(0.3, 0..UNITS.len()),
        prop::option::of(0..5i64),
        any::<bool>(),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(instance, stored, outstanding, version, acknowledges, touches)| UnitSpec {
                instance,
                stored,
                outstanding,
                version,
                acknowledges,
                touches,
            },
        )
}

fn relation(kind: usize) -> Option<Relation> {
    let endpoints = match kind {
        0 => vec![Endpoint::new(name("db"), None)],
        1 => vec![
            Endpoint::new(name("web"), None),
            Endpoint::new(name("db"), Some(name("sql"))),
        ],
        _ => return None,
    };
    Some(Relation::new(name("r1"), endpoints, at(0)).expect("valid"))
}

/// What the registry holds, owned; a snapshot borrows it.
#[derive(Debug, Clone)]
struct Registry {
    relation: Option<Relation>,
    instances: BTreeMap<Name, Instance>,
    live_hosts: BTreeSet<Name>,
    versions: BTreeMap<Name, i64>,
    stored: BTreeMap<Name, State>,
    outstanding: BTreeMap<Name, HookInfo>,
}

impl Registry {
    fn new(kind: usize, units: &[UnitSpec]) -> Self {
        let mut registry = Self {
            relation: relation(kind),
            instances: BTreeMap::new(),
            live_hosts: BTreeSet::from([name("h1"), name("h2")]),
            versions: BTreeMap::new(),
            stored: BTreeMap::new(),
            outstanding: BTreeMap::new(),
        };
        for (unit, spec) in UNITS.iter().zip(units) {
            if let Some((app, proc, state, host)) = spec.instance {
                let key = group(APPS[app], "v1", PROCS[proc]);
                let document = instance(&key, STATES[state], host.map(|h| HOSTS[h]));
                registry.instances.insert(name(unit), document);
            }
            if let Some(joined) = spec.stored {
                let mut state = State::new("r1");
                if let Some(remote) = joined.filter(|&r| UNITS[r] != *unit) {
                    for hook in [
                        HookInfo::joined("r1", UNITS[remote], 0),
                        HookInfo::changed("r1", UNITS[remote], 0),
                    ] {
                        state.apply(&hook).expect("joined then changed is valid");
                    }
                }
                registry.stored.insert(name(unit), state);
            }
            if let Some(remote) = spec.outstanding {
                let hook = HookInfo::joined("r1", UNITS[remote], 0);
                registry.outstanding.insert(name(unit), hook);
            }
            if let Some(version) = spec.version {
                registry.versions.insert(name(unit), version);
            }
        }
        registry
    }

    fn snapshot(&self) -> RelationSnapshot<'_> {
        RelationSnapshot {
            registered: self.relation.as_ref(),
            instances: self.instances.iter().collect(),
            live_hosts: &self.live_hosts,
            versions: self.versions.clone(),
            stored: self.stored.iter().map(|(u, s)| (u.clone(), s)).collect(),
            outstanding: self.outstanding.clone(),
        }
    }

    /// What the registry API writes for `writes`.
    fn carry_out(&mut self, writes: &[UnitWrite]) {
        for write in writes {
            let unit = write.unit.clone();
            match &write.action {
                UnitAction::Hand { hook, enter } => {
                    if *enter {
                        self.stored.insert(unit.clone(), State::new("r1"));
                    }
                    self.outstanding.insert(unit, hook.clone());
                }
                UnitAction::Enter => {
                    self.stored.insert(unit, State::new("r1"));
                }
                UnitAction::Withdraw => {
                    self.stored.remove(&unit);
                    self.outstanding.remove(&unit);
                    self.versions.remove(&unit);
                }
            }
        }
    }

    /// Agents acknowledge the outstanding hooks of the units in `units`, as
    /// `complete_hook` does (a hook that does not follow is refused).
    fn acknowledge(&mut self, units: &BTreeSet<Name>) {
        for unit in units {
            let Some(hook) = self.outstanding.get(unit).cloned() else {
                continue;
            };
            let mut state = self
                .stored
                .get(unit)
                .cloned()
                .unwrap_or_else(|| State::new("r1"));
            if state.apply(&hook).is_err() {
                continue;
            }
            self.outstanding.remove(unit);
            match hook.kind {
                HookKind::Broken => self.stored.remove(unit),
                _ => self.stored.insert(unit.clone(), state),
            };
        }
    }
}

/// Whether `unit` is a unit of the relation by the rule itself.
fn is_member(registry: &Registry, unit: &Name) -> bool {
    let (Some(relation), Some(instance)) = (&registry.relation, registry.instances.get(unit))
    else {
        return false;
    };
    instance.state == InstanceState::Running
        && instance
            .host
            .as_ref()
            .is_some_and(|h| registry.live_hosts.contains(h))
        && relation.side_of(&instance.app, &instance.proc).is_some()
}

/// The writes of stepping every participant, waiting or not.
fn step_all(hooks: &mut RelationHooks, snapshot: &RelationSnapshot<'_>) -> Vec<UnitWrite> {
    let members = snapshot.members();
    let mut writes = Vec::new();
    for unit in snapshot.participants(&members) {
        let view = UnitView {
            members: members.remotes(&unit).map(|remotes| {
                remotes
                    .map(|r| {
                        let version = snapshot.versions.get(r).copied();
                        (r.to_string(), version.unwrap_or(0))
                    })
                    .collect()
            }),
            can_run_hooks: snapshot.can_run_hooks(&unit),
            stored: snapshot.stored.get(&unit).copied(),
            outstanding: snapshot.outstanding.get(&unit).cloned(),
        };
        if let Some(action) = hooks.step(unit.as_str(), view) {
            writes.push(UnitWrite { unit, action });
        }
    }
    writes
}

fn check_round(
    hooks: &mut RelationHooks,
    registry: &Registry,
) -> Result<RelationPlan, TestCaseError> {
    let snapshot = registry.snapshot();
    let members = snapshot.members();
    for unit in UNITS.map(name) {
        prop_assert_eq!(
            members.contains(&unit),
            is_member(registry, &unit),
            "{}",
            unit
        );
    }
    let participants = snapshot.participants(&members);
    let expected_participants: BTreeSet<Name> = members
        .units()
        .chain(registry.stored.keys())
        .chain(registry.outstanding.keys())
        .cloned()
        .collect();
    prop_assert_eq!(&participants, &expected_participants);

    let mut stepping_all = hooks.clone();
    let expected_writes = step_all(&mut stepping_all, &snapshot);
    let plan = hooks.plan(snapshot);
    prop_assert_eq!(
        &plan.writes,
        &expected_writes,
        "skipping changed a decision"
    );

    prop_assert!(plan.writes.windows(2).all(|w| w[0].unit < w[1].unit));
    for write in &plan.writes {
        let unit = &write.unit;
        prop_assert!(participants.contains(unit), "{} does not take part", unit);
        let outstanding = registry.outstanding.contains_key(unit);
        let can_run_hooks = registry
            .instances
            .get(&write.unit)
            .is_some_and(|i| !i.state.is_terminal());
        prop_assert!(
            !is_waiting(members.contains(&write.unit), can_run_hooks, outstanding),
            "{} is waiting",
            unit
        );
        if let UnitAction::Hand { hook, .. } = &write.action {
            prop_assert!(
                !outstanding,
                "{} handed {} over an outstanding hook",
                unit,
                hook
            );
        }
    }
    for unit in &participants {
        let can_run_hooks = registry
            .instances
            .get(unit)
            .is_some_and(|i| !i.state.is_terminal());
        let withdrawn = plan
            .writes
            .iter()
            .any(|w| &w.unit == unit && w.action == UnitAction::Withdraw);
        // Every participant holds a state or a hook, or is a member (and so
        // can run hooks): one that cannot is withdrawn, and only such a one.
        prop_assert_eq!(withdrawn, !can_run_hooks, "{}", unit);
    }
    prop_assert_eq!(
        plan.finished,
        registry.relation.is_none() && participants.is_empty()
    );
    prop_assert_eq!(plan.clear, plan.finished && !registry.versions.is_empty());
    let kept: BTreeSet<&str> = hooks.units().collect();
    prop_assert!(
        kept.iter()
            .all(|u| participants.iter().any(|p| p.as_str() == *u))
    );
    Ok(plan)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn plans_step_only_participants_that_can_move_and_decide_what_stepping_all_would(
        kind in 0..3usize,
        units in prop::collection::vec(unit_spec(), UNITS.len()),
    ) {
        let mut registry = Registry::new(kind, &units);
        let mut hooks = RelationHooks::new("r1");
        let first = check_round(&mut hooks, &registry)?;
        registry.carry_out(&first.writes);
        let acknowledging: BTreeSet<Name> = UNITS
            .iter()
            .zip(&units)
            .filter(|(_, spec)| spec.acknowledges)
            .map(|(unit, _)| name(unit))
            .collect();
        registry.acknowledge(&acknowledging);
        for (unit, spec) in UNITS.iter().zip(&units) {
            if spec.touches {
                *registry.versions.entry(name(unit)).or_default() += 1;
            }
        }
        let _second = check_round(&mut hooks, &registry)?;
    }
}
