//! The one interface the controller drives every hook source through.
//!
//! Invariant: `next` only peeks; a hook counts as delivered when `pop` is
//! called, so a controller that crashes between the two delivers it again.

use super::kind::HookInfo;

/// An ordered supply of hooks for one (unit, relation).
pub trait HookSource {
    /// The hook to deliver next, without consuming it; `None` when nothing
    /// is due (for now, in the case of a live source).
    fn next(&self) -> Option<HookInfo>;

    /// Records that the hook `next` returns was delivered and acknowledged;
    /// does nothing when `next` returns `None`.
    fn pop(&mut self);

    /// Whether nothing is due.
    fn is_empty(&self) -> bool {
        self.next().is_none()
    }
}
