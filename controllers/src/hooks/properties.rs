//! Properties of hook delivery over random histories: four remote units that
//! join, change settings, re-report the same settings and leave, in random
//! batches, interleaved with hooks taken and acknowledged (at once, or later
//! with membership changes in between) and controller restarts that rebuild
//! the live source from the acknowledged state and the whole membership.
//!
//! Every hook is checked against Juju's guarantees when it is taken; after a
//! final drain, the acknowledged state must be the membership. A twin source
//! told the whole membership at every change (departures included) must
//! offer the same hook at every point: feeding a source only what changed,
//! as the controller does, loses nothing. So must a source rebuilt from the
//! acknowledged state and the membership alone, as a new leader's is.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const REL: &str = "r1";
const UNITS: [&str; 4] = ["db-0", "db-1", "db-2", "db-3"];

/// One thing that happens to a remote unit within a membership change.
#[derive(Debug, Clone)]
enum Event {
    /// Joins, or writes its settings: a new, higher version.
    Set(usize),
    /// Is reported again at the version it has (if it is in the relation).
    Touch(usize),
    /// Leaves the relation.
    Leave(usize),
}

/// One step of a history.
#[derive(Debug, Clone)]
enum Op {
    /// Events that reach the source as one membership change.
    Update(Vec<Event>),
    /// Take the next hook, acknowledge it and pop it in one go.
    Deliver,
    /// Take the next hook and leave it outstanding.
    Take,
    /// Acknowledge the outstanding hook.
    Ack,
    /// Rebuild the source from the acknowledged state; an outstanding hook
    /// is withdrawn unrun.
    Restart,
}

fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
    let event = prop_oneof![
        3 => (0..UNITS.len()).prop_map(Event::Set),
        1 => (0..UNITS.len()).prop_map(Event::Touch),
        2 => (0..UNITS.len()).prop_map(Event::Leave),
    ];
    let op = prop_oneof![
        4 => prop::collection::vec(event, 1..4).prop_map(Op::Update),
        4 => Just(Op::Deliver),
        2 => Just(Op::Take),
        2 => Just(Op::Ack),
        1 => Just(Op::Restart),
    ];
    prop::collection::vec(op, 0..80)
}

/// The registry, the controller's source and the agent's acknowledged state.
struct World {
    /// Remote units in the relation → settings version, as in the registry.
    membership: BTreeMap<String, i64>,
    /// The registry's revision counter; every write takes the next one.
    revision: i64,
    source: LiveSource,
    /// The twin fed the whole membership at every change.
    whole: LiveSource,
    /// What the agent wrote when acknowledging.
    acknowledged: State,
    outstanding: Option<HookInfo>,
    /// Every hook acknowledged, in order.
    delivered: Vec<HookInfo>,
}

impl World {
    fn new() -> Self {
        let mut source = LiveSource::new(State::new(REL));
        source.update(MembershipChange::default());
        Self {
            membership: BTreeMap::new(),
            revision: 0,
            whole: source.clone(),
            source,
            acknowledged: State::new(REL),
            outstanding: None,
            delivered: Vec::new(),
        }
    }

    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Update(events) => self.update(events),
            Op::Deliver if self.outstanding.is_some() => self.ack()?,
            Op::Deliver => {
                if let Some(hook) = self.source.next() {
                    self.check_taken(&hook)?;
                    self.source.pop();
                    self.whole.pop();
                    self.record(hook)?;
                }
            }
            Op::Take if self.outstanding.is_some() => {}
            Op::Take => {
                if let Some(hook) = self.source.next() {
                    self.check_taken(&hook)?;
                    self.outstanding = Some(hook);
                }
            }
            Op::Ack => self.ack()?,
            Op::Restart => self.restart(),
        }
        prop_assert_eq!(self.source.state(), &self.acknowledged);
        prop_assert_eq!(self.whole.state(), &self.acknowledged);
        prop_assert_eq!(
            self.whole.next(),
            self.source.next(),
            "fed whole vs fed changes"
        );
        let mut rebuilt = LiveSource::new(self.acknowledged.clone());
        rebuilt.update(MembershipChange {
            changed: self.membership.clone(),
            ..MembershipChange::default()
        });
        prop_assert_eq!(rebuilt.next(), self.source.next(), "rebuilt vs running");
        Ok(())
    }

    fn update(&mut self, events: &[Event]) {
        let before = self.membership.clone();
        let mut touched = std::collections::BTreeSet::new();
        for event in events {
            match *event {
                Event::Set(unit) => {
                    self.revision += 1;
                    self.membership
                        .insert(UNITS[unit].to_owned(), self.revision);
                }
                Event::Touch(_) => {}
                Event::Leave(unit) => {
                    self.membership.remove(UNITS[unit]);
                }
            }
            let (Event::Set(unit) | Event::Touch(unit) | Event::Leave(unit)) = *event;
            touched.insert(UNITS[unit]);
        }
        // A watch reports where each touched unit ended up, not how it got there.
        let mut change = MembershipChange::default();
        for unit in touched {
            match self.membership.get(unit) {
                Some(&version) => change = change.change(unit, version),
                None if before.contains_key(unit) => change = change.depart(unit),
                None => {}
            }
        }
        self.source.update(change);
        self.whole.update(MembershipChange {
            changed: self.membership.clone(),
            departed: before
                .into_keys()
                .filter(|unit| !self.membership.contains_key(unit))
                .collect(),
        });
    }

    fn ack(&mut self) -> Result<(), TestCaseError> {
        if let Some(hook) = self.outstanding.take() {
            self.source
                .acknowledge(&hook)
                .map_err(|error| TestCaseError::fail(error.to_string()))?;
            self.whole
                .acknowledge(&hook)
                .map_err(|error| TestCaseError::fail(error.to_string()))?;
            self.record(hook)?;
        }
        Ok(())
    }

    fn record(&mut self, hook: HookInfo) -> Result<(), TestCaseError> {
        self.acknowledged
            .apply(&hook)
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        self.delivered.push(hook);
        Ok(())
    }

    fn restart(&mut self) {
        self.outstanding = None;
        self.source = LiveSource::new(self.acknowledged.clone());
        self.source.update(MembershipChange {
            changed: self.membership.clone(),
            ..MembershipChange::default()
        });
        self.whole = self.source.clone();
    }

    /// Juju's guarantees, for a hook about to be handed to the unit.
    fn check_taken(&self, hook: &HookInfo) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.acknowledged.validate(hook), Ok(()), "{}", hook);
        let Some(unit) = hook.remote_unit.as_deref() else {
            return Err(TestCaseError::fail("a live source never breaks"));
        };
        let last = self.delivered.last();
        if let Some(last) = last.filter(|last| last.kind == HookKind::Joined) {
            prop_assert_eq!(hook.kind, HookKind::Changed, "after {}", last);
            prop_assert_eq!(&hook.remote_unit, &last.remote_unit, "after {}", last);
        }
        // What the registry shows: a source rebuilt from it knows no more.
        let shown = self
            .membership
            .get(unit)
            .or_else(|| self.acknowledged.members.get(unit));
        prop_assert_eq!(
            Some(&hook.change_version),
            shown,
            "{} carries the membership's version, or the acknowledged one if gone",
            hook
        );
        let present = self.membership.get(unit);
        let delivered = self.acknowledged.members.get(unit).copied();
        let automatic = self.acknowledged.changed_pending.as_deref() == Some(unit);
        match hook.kind {
            HookKind::Joined => prop_assert_eq!(present, Some(&hook.change_version)),
            HookKind::Changed if automatic => {
                prop_assert!(delivered.is_some_and(|seen| hook.change_version >= seen));
            }
            HookKind::Changed => {
                prop_assert_eq!(present, Some(&hook.change_version), "{}", hook);
                prop_assert!(
                    delivered.is_some_and(|seen| hook.change_version > seen),
                    "{} repeats a delivered version",
                    hook
                );
            }
            HookKind::Departed => {
                prop_assert!(present.is_none(), "{} for a unit still there", hook);
                prop_assert!(delivered.is_some(), "{} before joined", hook);
            }
            HookKind::Broken => unreachable!("a broken hook names no unit"),
        }
        Ok(())
    }

    /// Delivers everything due; the number of hooks it took.
    fn drain(&mut self) -> Result<usize, TestCaseError> {
        self.ack()?;
        let mut count = 0;
        while !self.source.is_empty() {
            prop_assert!(count <= 2 * UNITS.len(), "a drain that does not end");
            self.run(&Op::Deliver)?;
            count += 1;
        }
        Ok(count)
    }
}

proptest! {
    #[test]
    fn live_delivery_keeps_every_guarantee_and_converges_to_the_membership(ops in arb_ops()) {
        let mut world = World::new();
        for op in &ops {
            world.run(op)?;
        }
        let drained = world.drain()?;
        // Coalesced: at most joined + changed, or a pending changed and one
        // more, per unit.
        prop_assert!(drained <= 2 * UNITS.len(), "{} hooks to drain", drained);
        prop_assert_eq!(&world.acknowledged.members, &world.membership);
        prop_assert_eq!(&world.acknowledged.changed_pending, &None);
        prop_assert!(!world.acknowledged.broken);
    }

    #[test]
    fn a_restart_at_any_point_converges_to_the_same_state(ops in arb_ops()) {
        let mut world = World::new();
        for op in &ops {
            world.run(op)?;
        }
        world.run(&Op::Restart)?;
        world.drain()?;
        prop_assert_eq!(&world.acknowledged.members, &world.membership);
        prop_assert_eq!(&world.acknowledged.changed_pending, &None);
    }

    #[test]
    fn dying_from_any_reachable_state_ends_broken_last_and_empty(ops in arb_ops()) {
        let mut world = World::new();
        for op in &ops {
            world.run(op)?;
        }
        let start = world.acknowledged.clone();
        let mut acknowledged = start.clone();
        let mut source = dying_source(&start);
        let mut hooks = Vec::new();
        while let Some(hook) = source.next() {
            prop_assert_eq!(acknowledged.validate(&hook), Ok(()), "{}", hook);
            acknowledged.apply(&hook).map_err(|error| TestCaseError::fail(error.to_string()))?;
            source.pop();
            hooks.push(hook);
        }
        let brokens = hooks.iter().filter(|hook| hook.kind == HookKind::Broken).count();
        prop_assert_eq!(brokens, 1);
        prop_assert_eq!(hooks.last().map(|hook| hook.kind), Some(HookKind::Broken));
        let pending = usize::from(start.changed_pending.is_some());
        prop_assert_eq!(hooks.len(), pending + start.members.len() + 1);
        prop_assert!(acknowledged.broken && acknowledged.members.is_empty());
        prop_assert_eq!(acknowledged.changed_pending, None);
    }
}
