//! The framework's errors: serving ([`ServeError`]), setting up a caller
//! ([`CallerError`]) and calling ([`CallError`], with each provider tried and
//! why it did not acknowledge, [`Attempt`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::config::ConfigError;
use super::layout::{Candidate, NameError};
use super::listener::BindError;
use super::tracker::DuplicateId;
use super::wire::WireError;

/// Why a provider could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is invalid.
    #[error("invalid provider configuration")]
    Config(#[source] ConfigError),
    /// A registered task's name cannot be a socket directory.
    #[error("cannot serve task {task:?}")]
    TaskName {
        /// The name registered.
        task: String,
        /// Why it is refused.
        #[source]
        source: NameError,
    },
    /// The same task was registered twice.
    #[error("task {task:?} is registered twice")]
    DuplicateTask {
        /// The task.
        task: String,
    },
    /// No task was registered.
    #[error("the provider has no tasks to serve")]
    NoTasks,
    /// A task's socket could not be set up.
    #[error("cannot serve task {task:?}")]
    Socket {
        /// The task.
        task: String,
        /// What failed.
        #[source]
        source: BindError,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
}

/// Why a caller could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    /// The caller's name cannot name its response socket.
    #[error("invalid caller name")]
    Name(#[source] NameError),
    /// The response directory could not be made absolute.
    #[error("socket_dir {}: cannot resolve against the working directory", path.display())]
    SocketDir {
        /// The directory given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The response socket could not be set up.
    #[error("cannot set up the response hook")]
    Socket(#[source] BindError),
}

/// Why a call got no response.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The task's name cannot name a socket directory.
    #[error("invalid task name")]
    TaskName(#[source] NameError),
    /// The request's id could not be tracked.
    #[error("cannot track the request")]
    Track(#[source] DuplicateId),
    /// The task's socket directory could not be read.
    #[error("cannot list the sockets of task {task:?} in {}", dir.display())]
    List {
        /// The task.
        task: String,
        /// Its directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No provider offers the task.
    #[error("no provider offers task {task:?} (no socket in {})", dir.display())]
    NoProvider {
        /// The task.
        task: String,
        /// The directory looked in.
        dir: PathBuf,
    },
    /// Every provider was tried and none acknowledged the request.
    #[error(
        "no provider of task {task:?} acknowledged the request: {}",
        Attempts(attempts)
    )]
    NotAcknowledged {
        /// The task.
        task: String,
        /// Each provider tried, in routing order, and why it did not acknowledge.
        attempts: Vec<Attempt>,
    },
}

/// A provider tried for a request that did not acknowledge it.
#[derive(Debug)]
pub struct Attempt {
    /// The socket tried.
    pub candidate: Candidate,
    /// Why it did not acknowledge.
    pub failure: AttemptFailure,
}

/// Why a provider did not acknowledge a request; in every case its handler
/// did not run (as far as the caller can know: see `docs/providers.md`).
#[derive(Debug, thiserror::Error)]
pub enum AttemptFailure {
    /// Its lock says its owner is dead: not dialled.
    #[error("stale socket (its owner is dead)")]
    Stale,
    /// Connecting failed (no listener, no permission).
    #[error("cannot connect")]
    Connect(#[source] std::io::Error),
    /// Connecting took longer than the ack timeout.
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    /// The request could not be sent.
    #[error("cannot send the request")]
    Send(#[source] WireError),
    /// No acknowledgement within the ack timeout.
    #[error("no acknowledgement within {0:?}")]
    AckTimeout(Duration),
    /// The connection closed without an acknowledgement.
    #[error("closed the connection without acknowledging")]
    Closed,
    /// What came back is not an acknowledgement.
    #[error("answered with something other than an acknowledgement")]
    BadAck(#[source] WireError),
    /// It acknowledged another request id.
    #[error("acknowledged request {got:?} instead of {sent:?}")]
    WrongId {
        /// The id sent.
        sent: String,
        /// The id acknowledged.
        got: String,
    },
    /// It refused the request.
    #[error("refused: {0}")]
    Refused(String),
}

struct Attempts<'a>(&'a [Attempt]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, attempt) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "{}: {}",
                attempt.candidate,
                crate::telemetry::Chain(&attempt.failure)
            )?;
        }
        Ok(())
    }
}
