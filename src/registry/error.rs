//! The registry's error type: one variant per way a registry operation fails.
//!
//! Callers match on these (a CLI maps them to exit messages, loops retry on
//! `Conflict` and `Unavailable`), so each carries the object or endpoint it is about.

use std::fmt;

use visor_controllers::{InstanceState, InvalidName, TransitionError};

use super::keys::Kind;

/// A `Result` whose error is the registry's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One object: its kind and its name (path-like for nested objects, e.g. `web/v1/http`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// What kind of object.
    pub kind: Kind,
    /// Its name, `/`-joined for nested objects.
    pub name: String,
}

impl ObjectRef {
    /// Refers to the object of `kind` named by the `/`-joined `parts`.
    pub fn new(kind: Kind, parts: &[&str]) -> Self {
        Self {
            kind,
            name: parts.join("/"),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.name)
    }
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A compare-and-set found the object changed since it was read; nothing was written.
    #[error(
        "{object} was changed since it was read at mod revision {expected}; nothing was written"
    )]
    Conflict {
        /// The object whose write lost.
        object: ObjectRef,
        /// The mod revision the write expected.
        expected: i64,
    },
    /// The object (or one it depends on) does not exist.
    #[error("{0} not found")]
    NotFound(ObjectRef),
    /// Registering an object that is already there.
    #[error("{0} already exists")]
    AlreadyExists(ObjectRef),
    /// A name failed validation.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// A life-cycle rule refused an instance state change.
    #[error("instance {id}: {reason}")]
    InvalidTransition {
        /// The instance.
        id: String,
        /// The rule broken.
        reason: TransitionError,
    },
    /// A hook cannot be acknowledged: it does not follow from the unit's
    /// acknowledged relation state.
    #[error("hook for unit {unit} in relation {relation} cannot be acknowledged: {reason}")]
    InvalidHook {
        /// The unit.
        unit: String,
        /// The relation.
        relation: String,
        /// The rule broken (boxed: it names units and relations, and would
        /// make every `Result` of the API as large).
        reason: Box<visor_controllers::HookError>,
    },
    /// A host tried to claim or complete a ticket addressed to another host.
    #[error("ticket {ticket} is addressed to host {addressee}, not to {claimant}")]
    NotAddressee {
        /// The ticket, as `<host>/<id>`.
        ticket: String,
        /// The host it is addressed to.
        addressee: String,
        /// The host that tried.
        claimant: String,
    },
    /// A ticket was claimed already (by `by`), or not claimed by the completing host.
    #[error("ticket {ticket} is claimed by {by}")]
    TicketClaimed {
        /// The ticket, as `<host>/<id>`.
        ticket: String,
        /// Who holds the claim, or `nobody`.
        by: String,
    },
    /// A request argument is out of range (not a name problem).
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A stored document could not be decoded; it was skipped.
    #[error("malformed {kind} at {key}: {reason}", kind = kind.as_str())]
    Malformed {
        /// What the key should hold.
        kind: Kind,
        /// The key.
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// The registry refused our credentials or permissions.
    #[error("registry refused access during {op}: {message}")]
    Unauthorized {
        /// The operation.
        op: &'static str,
        /// The registry's words.
        message: String,
    },
    /// No endpoint answered, or the request timed out.
    #[error("registry unavailable during {op} ({endpoints}): {detail}")]
    Unavailable {
        /// The operation.
        op: &'static str,
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// What went wrong, per endpoint where known.
        detail: String,
    },
    /// Any other failure reported by the registry.
    #[error("registry request {op} failed: {message}")]
    Request {
        /// The operation.
        op: &'static str,
        /// The registry's words.
        message: String,
    },
    /// A watch asked for history that compaction removed.
    #[error("history before revision {compacted} was compacted; cannot watch from {requested}")]
    Compacted {
        /// The first revision asked for.
        requested: i64,
        /// The registry's compaction revision.
        compacted: i64,
    },
    /// A leader's write found its fence broken: it is no longer the leader.
    #[error("no longer the leader ({fence} is gone); nothing was written")]
    Deposed {
        /// The fence that failed, as text.
        fence: String,
    },
    /// The registry was written by a newer Visor.
    #[error(
        "registry schema version {found} is newer than this build supports ({supported}); upgrade visor"
    )]
    SchemaTooNew {
        /// Version found under `/schema`.
        found: u32,
        /// Version this build knows.
        supported: u32,
    },
    /// The connection settings are unusable.
    #[error("invalid registry configuration: {0}")]
    Config(String),
    /// A file the connection settings name cannot be read.
    #[error("invalid registry configuration: cannot read {what} {}", path.display())]
    ReadFile {
        /// What the file should hold (`CA certificate`, `client key`).
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Refusal of an instance transition.
    pub(crate) fn transition(id: &str, reason: TransitionError) -> Self {
        Self::InvalidTransition {
            id: id.to_owned(),
            reason,
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Conflict { .. } | Self::Unavailable { .. })
    }

    /// Whether a write that failed with this error may still have committed
    /// (or commit later): the request reached no verdict the client saw — a
    /// timeout, a reset connection, or a failure it cannot classify. Refusals
    /// (conflicts, a broken fence, validation) wrote nothing.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Request { .. })
    }

    /// The states of a refused transition, if this is one.
    pub fn transition_states(&self) -> Option<(InstanceState, InstanceState)> {
        match self {
            Self::InvalidTransition { reason, .. } => match reason {
                TransitionError::Illegal { from, to }
                | TransitionError::NotPermitted { from, to, .. } => Some((*from, *to)),
                TransitionError::NotRestartable { state, .. } => Some((*state, *state)),
            },
            _ => None,
        }
    }
}
