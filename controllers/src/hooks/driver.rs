//! The controller's side of one relation: for each unit, given what the
//! registry shows (its remote units, its acknowledged state, its outstanding
//! hook), what to do next.
//!
//! A unit in the relation follows a [`LiveSource`], kept between steps so
//! that a step costs only what changed since the last one. A unit leaving
//! (or the relation going) winds down with [`dying_source`], computed from
//! its acknowledged state — the dying hooks depend on nothing else. A unit
//! that can run no more hooks (its instance finished or vanished) is
//! withdrawn.
//!
//! Invariants: at most one hook per unit is handed out at a time (nothing is
//! handed while one is outstanding); a hook's acknowledgement is recognised
//! by the stored state being exactly the handed hook applied to the state
//! before it, and any other change of the stored state rebuilds the source
//! from it — so a source never drifts from what the unit acknowledged. What
//! a live source yields follows from the acknowledged state and the
//! membership alone, so a new leader starting from the registry hands out
//! exactly the hooks this driver would have (the property tests hold every
//! step of random runs to that).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use super::dying::dying_source;
use super::kind::HookInfo;
use super::live::{LiveSource, MembershipChange};
use super::source::HookSource;
use super::state::State;
use crate::name::Name;

/// What the registry shows of one unit of a relation. The acknowledged
/// state is borrowed: a step looks at it, and copies it only to start a
/// source from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitView<'a> {
    /// `Some` while the unit is in the relation: its remote units and their
    /// settings versions. `None` once it left, or the relation is gone.
    pub members: Option<BTreeMap<String, i64>>,
    /// Whether the unit can still run hooks (its instance exists and is not
    /// in a terminal state).
    pub can_run_hooks: bool,
    /// Its acknowledged state, if it entered the relation.
    pub stored: Option<&'a State>,
    /// The hook it was handed and has not acknowledged yet.
    pub outstanding: Option<HookInfo>,
}

/// What to do for one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitAction {
    /// Hand the unit this hook; with `enter`, also store its (empty) state,
    /// which records that it entered the relation.
    Hand {
        /// The hook.
        hook: HookInfo,
        /// Whether the unit's state must be created with it.
        enter: bool,
    },
    /// Store the unit's empty state: it entered the relation, alone so far.
    Enter,
    /// Remove the unit's hook and state: it can run no more hooks.
    Withdraw,
}

/// The live source of one unit and what was last fed to and taken from it.
#[derive(Debug, Clone)]
struct UnitSource {
    source: LiveSource,
    /// The remote units and versions fed at the last update: the next
    /// update feeds only what differs from it.
    fed: BTreeMap<String, i64>,
    /// The hook handed out and not yet seen acknowledged.
    handed: Option<HookInfo>,
}

/// The hook sources of one relation's units.
#[derive(Debug, Clone)]
pub struct RelationHooks {
    relation_id: String,
    units: BTreeMap<String, UnitSource>,
}

impl RelationHooks {
    /// No unit known yet, as at a controller's start.
    pub fn new(relation_id: impl Into<String>) -> Self {
        Self {
            relation_id: relation_id.into(),
            units: BTreeMap::new(),
        }
    }

    /// The units with a live source.
    pub fn units(&self) -> impl Iterator<Item = &str> {
        self.units.keys().map(String::as_str)
    }

    /// Decides what to do for `unit`, given what the registry shows now;
    /// `None` when nothing is to be done now (a hook is outstanding, or
    /// nothing is owed). A [`UnitAction::Hand`] is taken to be carried out:
    /// the next step expects to see that hook outstanding or acknowledged.
    pub fn step(&mut self, unit: &str, view: UnitView<'_>) -> Option<UnitAction> {
        if !view.can_run_hooks {
            self.units.remove(unit);
            return (view.stored.is_some() || view.outstanding.is_some())
                .then_some(UnitAction::Withdraw);
        }
        let entered = view.stored.is_some();
        // The state as this relation's: a stored one naming another
        // relation id (written around Visor) is taken as this one's.
        let stored = match view.stored {
            Some(stored) if stored.relation_id == self.relation_id => Cow::Borrowed(stored),
            Some(stored) => {
                let mut stored = stored.clone();
                stored.relation_id.clone_from(&self.relation_id);
                Cow::Owned(stored)
            }
            None => Cow::Owned(State::new(self.relation_id.as_str())),
        };
        let Some(members) = view.members else {
            // Leaving: the way out depends only on what was acknowledged.
            self.units.remove(unit);
            if view.outstanding.is_some() || !entered {
                return None;
            }
            return dying_source(&stored)
                .next()
                .map(|hook| UnitAction::Hand { hook, enter: false });
        };
        let entry = self.live(unit, &stored, &members, view.outstanding.as_ref());
        if view.outstanding.is_some() {
            return None;
        }
        match entry.source.next() {
            Some(hook) => {
                entry.handed = Some(hook.clone());
                Some(UnitAction::Hand {
                    hook,
                    enter: !entered,
                })
            }
            None => (!entered).then_some(UnitAction::Enter),
        }
    }

    /// Forgets every unit not in `keep` (units the relation no longer shows).
    pub fn retain(&mut self, keep: &BTreeSet<Name>) {
        self.units.retain(|unit, _| keep.contains(unit.as_str()));
    }

    /// The unit's live source, synced with its acknowledged state and fed
    /// the current membership.
    fn live(
        &mut self,
        unit: &str,
        stored: &State,
        members: &BTreeMap<String, i64>,
        outstanding: Option<&HookInfo>,
    ) -> &mut UnitSource {
        let in_sync = self.units.get_mut(unit).is_some_and(|entry| {
            if entry.source.state() == stored {
                return true;
            }
            // Acknowledged: the stored state is the handed hook's effect.
            let acknowledged = entry.handed.as_ref().is_some_and(|hook| {
                let mut after = entry.source.state().clone();
                after.apply(hook).is_ok() && after == *stored
            });
            if let (true, Some(hook)) = (acknowledged, entry.handed.take()) {
                return entry.source.acknowledge(&hook).is_ok();
            }
            false
        });
        if !in_sync {
            // New, or the stored state moved some other way: start from it,
            // as a new leader would.
            let mut source = LiveSource::new(stored.clone());
            source.update(MembershipChange {
                changed: members.clone(),
                departed: BTreeSet::new(),
            });
            let entry = UnitSource {
                source,
                fed: members.clone(),
                handed: None,
            };
            self.units.insert(unit.to_owned(), entry);
        }
        // Invariant: inserted just above when it was not there.
        let entry = self
            .units
            .get_mut(unit)
            .expect("invariant: the unit's source exists");
        if in_sync && entry.fed != *members {
            // Only the difference: the source's line already holds every
            // unit the unchanged part owes (each update and acknowledgement
            // re-files the units it touches), so feeding those again would
            // change nothing but the cost — O(members) per reconcile.
            let changed = members
                .iter()
                .filter(|&(remote, version)| entry.fed.get(remote) != Some(version))
                .map(|(remote, &version)| (remote.clone(), version))
                .collect();
            let departed = entry
                .fed
                .keys()
                .filter(|remote| !members.contains_key(*remote))
                .cloned()
                .collect();
            entry.source.update(MembershipChange { changed, departed });
            entry.fed.clone_from(members);
        }
        if let Some(hook) = outstanding {
            // Handed by us, or by a leader before us: its acknowledgement
            // is what the next step will look for.
            entry.handed = Some(hook.clone());
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::kind::HookKind;

    fn members(pairs: &[(&str, i64)]) -> Option<BTreeMap<String, i64>> {
        Some(pairs.iter().map(|&(u, v)| (u.to_owned(), v)).collect())
    }

    fn view<'a>(
        members: Option<BTreeMap<String, i64>>,
        stored: Option<&'a State>,
        outstanding: Option<&HookInfo>,
    ) -> UnitView<'a> {
        UnitView {
            members,
            can_run_hooks: true,
            stored,
            outstanding: outstanding.cloned(),
        }
    }

    fn handed(action: Option<UnitAction>) -> HookInfo {
        match action {
            Some(UnitAction::Hand { hook, .. }) => hook,
            other => panic!("expected a hook, got {other:?}"),
        }
    }

    /// Runs `unit` with `members` until nothing is owed, acknowledging every
    /// hook as an agent would; returns the hooks and the final state.
    fn drain(
        hooks: &mut RelationHooks,
        unit: &str,
        members: &Option<BTreeMap<String, i64>>,
        mut stored: Option<State>,
    ) -> (Vec<HookInfo>, Option<State>) {
        let mut delivered = Vec::new();
        loop {
            match hooks.step(unit, view(members.clone(), stored.as_ref(), None)) {
                Some(UnitAction::Hand { hook, enter }) => {
                    assert_eq!(enter, stored.is_none(), "enter exactly when not entered");
                    let mut state = stored.unwrap_or_else(|| State::new("r1"));
                    state.apply(&hook).expect("a handed hook is valid");
                    stored = (hook.kind != HookKind::Broken).then_some(state);
                    delivered.push(hook);
                }
                Some(UnitAction::Enter) => stored = Some(State::new("r1")),
                None => return (delivered, stored),
                Some(UnitAction::Withdraw) => panic!("withdrew a unit that can run hooks"),
            }
        }
    }

    #[test]
    fn a_new_unit_enters_and_gets_joined_then_changed_per_remote() {
        let mut hooks = RelationHooks::new("r1");
        let (delivered, stored) = drain(
            &mut hooks,
            "web-1",
            &members(&[("db-1", 5), ("db-2", 0)]),
            None,
        );
        let shown: Vec<String> = delivered.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "joined for db-2 at 0 in r1",
                "changed for db-2 at 0 in r1",
                "joined for db-1 at 5 in r1",
                "changed for db-1 at 5 in r1",
            ]
        );
        let state = stored.expect("entered");
        assert_eq!(state.members.len(), 2);
    }

    #[test]
    fn a_unit_alone_enters_without_a_hook() {
        let mut hooks = RelationHooks::new("r1");
        assert_eq!(
            hooks.step("web-1", view(members(&[]), None, None)),
            Some(UnitAction::Enter)
        );
    }

    #[test]
    fn nothing_is_handed_while_a_hook_is_outstanding() {
        let mut hooks = RelationHooks::new("r1");
        let first = handed(hooks.step("web-1", view(members(&[("db-1", 5)]), None, None)));
        let again = hooks.step("web-1", view(members(&[("db-1", 6)]), None, Some(&first)));
        assert_eq!(again, None);
    }

    #[test]
    fn an_acknowledgement_moves_on_and_a_foreign_state_rebuilds_the_source() {
        let mut hooks = RelationHooks::new("r1");
        let joined = handed(hooks.step("web-1", view(members(&[("db-1", 5)]), None, None)));
        let mut state = State::new("r1");
        state.apply(&joined).expect("valid");
        let changed =
            handed(hooks.step("web-1", view(members(&[("db-1", 7)]), Some(&state), None)));
        assert_eq!(
            changed,
            HookInfo::changed("r1", "db-1", 7),
            "latest version"
        );

        // Someone else wrote a state in which db-1 never joined: start over from it.
        let foreign = State::new("r1");
        let rebuilt =
            handed(hooks.step("web-1", view(members(&[("db-1", 7)]), Some(&foreign), None)));
        assert_eq!(rebuilt, HookInfo::joined("r1", "db-1", 7));
    }

    #[test]
    fn a_leaving_unit_departs_from_every_member_then_breaks_and_a_gone_one_is_withdrawn() {
        let mut hooks = RelationHooks::new("r1");
        let (_, stored) = drain(
            &mut hooks,
            "web-1",
            &members(&[("db-2", 1), ("db-1", 1)]),
            None,
        );
        let (dying, stored) = drain(&mut hooks, "web-1", &None, stored);
        let shown: Vec<String> = dying.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "departed for db-1 at 1 in r1",
                "departed for db-2 at 1 in r1",
                "broken of r1"
            ]
        );
        assert_eq!(stored, None, "broken removes the state");

        let entered = State::new("r1");
        let gone = UnitView {
            can_run_hooks: false,
            stored: Some(&entered),
            ..UnitView::default()
        };
        assert_eq!(hooks.step("web-2", gone), Some(UnitAction::Withdraw));
        let never_entered = UnitView::default();
        assert_eq!(hooks.step("web-3", never_entered), None);
    }

    #[test]
    fn a_new_leader_hands_out_what_the_old_one_would_have() {
        let mut old = RelationHooks::new("r1");
        let membership = members(&[("db-1", 3), ("db-2", 4)]);
        let joined = handed(old.step("web-1", view(membership.clone(), None, None)));
        let mut state = State::new("r1");
        state.apply(&joined).expect("valid");
        let expected = handed(old.step("web-1", view(membership.clone(), Some(&state), None)));

        let mut new = RelationHooks::new("r1");
        let adopted = new.step(
            "web-1",
            view(membership.clone(), Some(&state), Some(&expected)),
        );
        assert_eq!(adopted, None, "the old leader's hook is still outstanding");
        let mut after = state.clone();
        after.apply(&expected).expect("valid");
        let next = handed(new.step("web-1", view(membership, Some(&after), None)));
        assert_eq!(next, HookInfo::joined("r1", "db-2", 4));
    }

    #[test]
    fn after_a_pending_changed_the_running_driver_and_a_new_leader_both_depart_first() {
        let membership = members(&[("b", 0)]);
        let mut stored = State::new("r1");
        stored
            .apply(&HookInfo::joined("r1", "a", 0))
            .expect("valid");
        let mut old = RelationHooks::new("r1");
        let pending = handed(old.step("web-1", view(membership.clone(), Some(&stored), None)));
        assert_eq!(pending, HookInfo::changed("r1", "a", 0));
        stored.apply(&pending).expect("valid");

        let mut new = RelationHooks::new("r1");
        let by_new = handed(new.step("web-1", view(membership.clone(), Some(&stored), None)));
        let by_old = handed(old.step("web-1", view(membership, Some(&stored), None)));
        assert_eq!(by_old, HookInfo::departed("r1", "a", 0));
        assert_eq!(by_new, by_old);
    }
}
