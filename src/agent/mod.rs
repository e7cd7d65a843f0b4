//! The host agent's side of Visor: its local relation state, and the runner
//! of its units' relation hooks.
//!
//! The agent keeps, on local disk, the relation state it has acknowledged, so
//! that after a restart it knows which relation hooks already took effect.
//! [`RelationHooks`] runs the hooks the controller hands its units, and
//! serves their hook tools. Invariant: a state file on disk is only ever
//! replaced whole (see [`StateDir`]), so a crash leaves either the old or the
//! new state; and it is written only after the registry acknowledged the hook.

pub mod relation_hooks;
mod state_dir;

pub use relation_hooks::{RelationHooks, RelationHooksConfig, RelationHooksError, UnitContext};
pub use state_dir::{Result, StateDir, StateDirError, StateDirs};
