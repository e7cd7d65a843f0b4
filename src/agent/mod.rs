//! The host agent's side of Visor: its local relation state and its metrics.
//!
//! The agent keeps, on local disk, the relation state it has acknowledged, so
//! that after a restart it knows which relation hooks already took effect.
//! Invariant: a state file on disk is only ever replaced whole (see
//! [`StateDir`]), so a crash leaves either the old or the new state.
//! [`AgentMetrics`] is what it reports on `/metrics`, `/healthz` and
//! `/readyz` (served by [`crate::admin::AgentAdmin`]).

mod metrics;
mod state_dir;

pub use metrics::{AgentMetrics, InstancePhase, Outcome};
pub use state_dir::{Result, StateDir, StateDirError, StateDirs};
