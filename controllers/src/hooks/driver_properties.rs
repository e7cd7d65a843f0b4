//! Properties of the relation driver as the controller uses it: one unit of
//! a relation, random membership changes, acknowledgements at random times,
//! controller restarts (a fresh driver), and an optional departure of the
//! unit itself — the registry being the only thing that survives a restart.

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
        match driver.step("u", self.view(in_relation)) {
            UnitAction::Hand { hook, enter } => {
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
            UnitAction::Enter => {
                prop_assert!(self.stored.is_none());
                self.stored = Some(State::new("rel"));
                Ok(true)
            }
            UnitAction::Withdraw => Err(TestCaseError::fail("withdrew a unit that can run hooks")),
            UnitAction::Idle => Ok(false),
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
                Op::Touch(i) => {
                    registry.version += 1;
                    registry.members.insert(REMOTES[i].to_owned(), registry.version);
                }
                Op::Leave(i) => {
                    registry.members.remove(REMOTES[i]);
                }
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
}
