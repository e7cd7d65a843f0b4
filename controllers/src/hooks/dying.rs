//! The hooks that wind a relation down once it is dying (or the unit is).
//!
//! Membership no longer matters: whoever is still a member departs. Invariant:
//! drained from any state the hooks rules allow, the list ends with exactly
//! one `broken`, last, and leaves the state broken with no members; a pending
//! `changed` is honoured first, so the joined-then-changed guarantee holds
//! even for a unit that joined just before the end.

use super::kind::HookInfo;
use super::list::ListSource;
use super::state::State;

/// The hooks that take `state` to broken: the owed `changed` if a `joined`
/// was just delivered, a `departed` for each member in name order, then
/// `broken`. Empty for a state that is broken already.
pub fn dying_source(state: &State) -> ListSource {
    if state.broken {
        return ListSource::default();
    }
    let relation = &state.relation_id;
    let pending = state.changed_pending.iter().map(|unit| {
        let version = state.members.get(unit).copied().unwrap_or_default();
        HookInfo::changed(relation.as_str(), unit.as_str(), version)
    });
    // `members` is a BTreeMap: departures come in unit-name order.
    let departures = state
        .members
        .iter()
        .map(|(unit, &version)| HookInfo::departed(relation.as_str(), unit.as_str(), version));
    ListSource::new(
        pending
            .chain(departures)
            .chain([HookInfo::broken(relation.as_str())]),
    )
}
