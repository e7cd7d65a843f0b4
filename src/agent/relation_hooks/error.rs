//! Why the relation hooks runner could not start, and why serving one unit
//! failed (a failure of the agent, retried, as opposed to a hook failing,
//! which is recorded on the hook).

use std::path::PathBuf;

use visor_controllers::Name;

use crate::agent::StateDirError;
use crate::provider::{BindError, CallerError};

/// Why the relation hooks runner could not be set up or could not run.
#[derive(Debug, thiserror::Error)]
pub enum RelationHooksError {
    /// A configuration field is unusable.
    #[error("invalid relation hooks configuration: {field} {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The running executable, whose directory holds the hook tools, is unknown.
    #[error("cannot find the running executable (the hook tools' directory)")]
    ToolsDir(#[source] std::io::Error),
    /// The metrics could not be registered (already registered there?).
    #[error("registering the relation hooks' metrics")]
    Metrics(#[source] prometheus::Error),
    /// The hook tools' socket could not be bound.
    #[error("cannot serve the hook tools at {}", path.display())]
    ToolsSocket {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: BindError,
    },
    /// The response hook for `hook.run` could not be set up.
    #[error("cannot call hook.run")]
    Caller(#[source] CallerError),
    /// The loop serving units could not start.
    #[error("cannot run the relation hooks' loop")]
    Loop(#[source] crate::runtime::Error),
}

/// Why serving a unit's next hook failed before its outcome could be
/// recorded; the unit is tried again with backoff.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// Reading the hook to run from the registry failed.
    #[error("unit {unit}: reading its hook of relation {relation}")]
    Read {
        /// The unit.
        unit: Name,
        /// The relation.
        relation: Name,
        /// The registry's error.
        #[source]
        source: crate::registry::Error,
    },
    /// Recording an acknowledged hook in the local relation state failed.
    #[error("unit {unit}: recording its {hook} in the local relation state")]
    StateDir {
        /// The unit.
        unit: Name,
        /// The hook, acknowledged in the registry.
        hook: visor_controllers::HookInfo,
        /// Why.
        #[source]
        source: StateDirError,
    },
    /// The task running the attempt panicked.
    #[error("unit {unit}: running its hook panicked")]
    Panicked {
        /// The unit.
        unit: Name,
        /// The task's end.
        #[source]
        source: tokio::task::JoinError,
    },
}
