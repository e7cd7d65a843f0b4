//! Properties of the relation driver as the controller uses it: one unit of
//! a relation, random membership changes, acknowledgements at random times,
//! controller restarts (a fresh driver), and an optional departure of the
//! unit itself — the registry being the only thing that survives a restart.
//!
//! A new leader has nothing but the registry, so the driver's every decision
//! must follow from it: at every step, a driver built from scratch, and one
//! that took over at a random point of the run, decide exactly what the
//! driver that ran all along decides.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::driver::{RelationHooks, UnitAction, UnitView};
use super::kind::{HookInfo, HookKind};
use super::state::State;

const REMOTES: [&str; 4] = ["r0", "r1", "r2", "r3"];

#[derive(Debug, Clone)]
enum Op {
    /// A remote unit joins or writes settings (at the next version).
    Touch(usize),
    /// A remote unit leaves.
    Leave(usize),
    /// The controller steps the unit.
    Step,
    /// The agent acknowledges the outstanding hook, if any.
    Acknowledge,
    /// The controller restarts: every in-memory source is gone.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..REMOTES.len()).prop_map(Op::Touch),
        1 => (0..REMOTES.len()).prop_map(Op::Leave),
        4 => Just(Op::Step),
        3 => Just(Op::Acknowledge),
        1 => Just(Op::Restart),
    ]
}

/// What the registry holds for the unit: the only state that survives.
#[derive(Debug, Default)]
struct Registry {
    members: BTreeMap<String, i64>,
    stored: Option<State>,
    outstanding: Option<HookInfo>,
    version: i64,
    /// Every hook acknowledged, in order.
    acknowledged: Vec<HookInfo>,
}

impl Registry {
    fn view(&self, in_relation: bool) -> UnitView<'_> {
        UnitView {
            members: in_relation.then(|| self.members.clone()),
            can_run_hooks: true,
            stored: self.stored.as_ref(),
            outstanding: self.outstanding.clone(),
        }
    }

    fn step(
        &mut self,
        driver: &mut RelationHooks,
        in_relation: bool,
    ) -> Result<bool, TestCaseError> {
        let action = driver.step("u", self.view(in_relation));
        self.carry_out(action)
    }

    /// Steps every driver with what the registry shows, checks that each
    /// decides what a driver built from the registry alone decides, and
    /// carries that out.
    fn step_alike(
        &mut self,
        drivers: &mut [RelationHooks],
        in_relation: bool,
    ) -> Result<bool, TestCaseError> {
        let expected = RelationHooks::new("rel").step("u", self.view(in_relation));
        for (which, driver) in drivers.iter_mut().enumerate() {
            let action = driver.step("u", self.view(in_relation));
            prop_assert_eq!(
                &action,
                &expected,
                "driver {} vs one built from the registry ({:?}, members {:?})",
                which,
                self.stored,
                self.members
            );
        }
        self.carry_out(expected)
    }

    /// What the shell writes for `action`; whether it wrote anything.
    fn carry_out(&mut self, action: Option<UnitAction>) -> Result<bool, TestCaseError> {
        match action {
            Some(UnitAction::Hand { hook, enter }) => {
                prop_assert!(
                    self.outstanding.is_none(),
                    "handed {hook} over an outstanding hook"
                );
                prop_assert_eq!(enter, self.stored.is_none());
                if enter {
                    self.stored = Some(State::new("rel"));
                }
                self.outstanding = Some(hook);
                Ok(true)
            }
            Some(UnitAction::Enter) => {
                prop_assert!(self.stored.is_none());
                self.stored = Some(State::new("rel"));
                Ok(true)
            }
            Some(UnitAction::Withdraw) => {
                Err(TestCaseError::fail("withdrew a unit that can run hooks"))
            }
            None => Ok(false),
        }
    }

    /// What an agent's acknowledgement does: validate against the stored
    /// state, apply, remove the hook (and the state after broken).
    fn acknowledge(&mut self) -> Result<(), TestCaseError> {
        let Some(hook) = self.outstanding.take() else {
            return Ok(());
        };
        let mut state = self.stored.clone().unwrap_or_else(|| State::new("rel"));
        if let Err(error) = state.apply(&hook) {
            return Err(TestCaseError::fail(format!("{hook} refused: {error}")));
        }
        if let Some(last) = self.acknowledged.last()
            && last.kind == HookKind::Joined
        {
            prop_assert_eq!(hook.kind, HookKind::Changed, "after {}", last);
            prop_assert_eq!(&hook.remote_unit, &last.remote_unit);
        }
        self.stored = (hook.kind != HookKind::Broken).then_some(state);
        self.acknowledged.push(hook);
        Ok(())
    }

    /// Steps and acknowledges until nothing is owed; bounded, since every
    /// remote needs at most a few hooks.
    fn drain(
        &mut self,
        driver: &mut RelationHooks,
        in_relation: bool,
    ) -> Result<(), TestCaseError> {
        for _ in 0..4 * REMOTES.len() + 4 {
            self.acknowledge()?;
            if !self.step(driver, in_relation)? && self.outstanding.is_none() {
                return Ok(());
            }
        }
        Err(TestCaseError::fail("the driver never settled"))
    }

    /// `drain`, stepping every driver alike.
    fn drain_alike(
        &mut self,
        drivers: &mut [RelationHooks],
        in_relation: bool,
    ) -> Result<(), TestCaseError> {
        for _ in 0..4 * REMOTES.len() + 4 {
            self.acknowledge()?;
            if !self.step_alike(drivers, in_relation)? && self.outstanding.is_none() {
                return Ok(());
            }
        }
        Err(TestCaseError::fail("the drivers never settled"))
    }

    /// A remote unit's `Touch` or `Leave`; other ops change no membership.
    fn change_membership(&mut self, op: &Op) {
        match *op {
            Op::Touch(i) => {
                self.version += 1;
                self.members.insert(REMOTES[i].to_owned(), self.version);
            }
            Op::Leave(i) => {
                self.members.remove(REMOTES[i]);
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn every_hook_follows_from_the_last_and_the_unit_ends_where_membership_is(
        ops in proptest::collection::vec(op(), 1..60),
        leaves_at_the_end in any::<bool>(),
    ) {
        let mut registry = Registry::default();
        let mut driver = RelationHooks::new("rel");
        for op in ops {
            match op {
                Op::Touch(_) | Op::Leave(_) => registry.change_membership(&op),
                Op::Step => {
                    registry.step(&mut driver, true)?;
                }
                Op::Acknowledge => registry.acknowledge()?,
                Op::Restart => driver = RelationHooks::new("rel"),
            }
        }
        registry.drain(&mut driver, true)?;
        let stored = registry.stored.clone().unwrap_or_else(|| State::new("rel"));
        prop_assert_eq!(&stored.members, &registry.members, "acknowledged state is the membership");
        prop_assert_eq!(stored.changed_pending, None);

        if leaves_at_the_end {
            registry.drain(&mut driver, false)?;
            prop_assert_eq!(registry.stored.as_ref(), None, "broken removes the state");
            let last = registry.acknowledged.last().map(|h| h.kind);
            prop_assert_eq!(last, Some(HookKind::Broken));
        }
    }

    #[test]
    fn a_driver_built_from_the_registry_at_any_point_hands_out_what_the_running_one_would(
        ops in proptest::collection::vec(op(), 1..60),
        takes_over_at in 0usize..60,
        leaves_at_the_end in any::<bool>(),
    ) {
        let mut registry = Registry::default();
        // The driver that runs from the start, then (from `takes_over_at`)
        // a new leader's beside it, fed the same registry.
        let mut drivers = vec![RelationHooks::new("rel")];
        for (at, op) in ops.iter().enumerate() {
            if at == takes_over_at {
                drivers.push(RelationHooks::new("rel"));
            }
            match op {
                Op::Touch(_) | Op::Leave(_) => registry.change_membership(op),
                Op::Step => {
                    registry.step_alike(&mut drivers, true)?;
                }
                Op::Acknowledge => registry.acknowledge()?,
                // Restarts are what the new leader and the rebuilt driver stand for.
                Op::Restart => {}
            }
        }
        registry.drain_alike(&mut drivers, true)?;
        if leaves_at_the_end {
            registry.drain_alike(&mut drivers, false)?;
        }
    }
}
