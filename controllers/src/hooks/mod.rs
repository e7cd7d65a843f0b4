//! Relation hooks: which hook each (unit, relation) runs next.
//!
//! A unit runs `joined`, `changed`, `departed` and `broken` hooks to follow
//! the remote units of a relation. The controller keeps at most one hook per
//! (unit, relation) outstanding; the unit acknowledges it by writing the new
//! [`State`] and removing the hook together. Sources decide what comes next:
//! a [`LiveSource`] while the relation lives, a [`dying_source`] once it (or
//! the unit) is dying, a [`ListSource`] for a fixed list. A
//! [`RelationPlan`] says what one relation's reconcile writes. A
//! [`HandedHook`] is the stored hook with its agent's failed attempts.
//!
//! Invariant: every hook a source yields validates against the state the
//! previous hooks produced, so Juju's ordering guarantees hold across
//! coalescing, restarts and the end of a relation.

mod driver;
#[cfg(test)]
mod driver_properties;
mod dying;
mod handed;
mod kind;
mod list;
mod live;
mod plan;
#[cfg(test)]
mod plan_properties;
mod source;
mod state;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

pub use driver::{RelationHooks, UnitAction, UnitView};
pub use dying::dying_source;
pub use handed::{HandedHook, HookFailure, MAX_FAILURE_REASON};
pub use kind::{HookInfo, HookKind};
pub use list::ListSource;
pub use live::{LiveSource, MembershipChange};
pub use plan::{RelationPlan, RelationSnapshot, UnitWrite, is_waiting};
pub use source::HookSource;
pub use state::{HookError, State};
