//! The host agent's side of Visor; for now its local relation state.
//!
//! The agent keeps, on local disk, the relation state it has acknowledged, so
//! that after a restart it knows which relation hooks already took effect.
//! Invariant: a state file on disk is only ever replaced whole (see
//! [`StateDir`]), so a crash leaves either the old or the new state.

mod state_dir;

pub use state_dir::{Result, StateDir, StateDirError, StateDirs};
