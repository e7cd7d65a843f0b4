//! Why an instance task failed: one variant per refusal or failed step, so a
//! caller can tell a wrong invocation from a dead supervisor.

use std::path::PathBuf;

use visor_controllers::InvalidName;

use super::control::ControlError;
use super::instance_dir::InstanceDirError;
use super::launch::LaunchError;

/// Why an instance task failed.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// An instance or invocation id is not a registry name.
    #[error(transparent)]
    InvalidId(#[from] InvalidName),
    /// An argument is out of its range.
    #[error("invalid {field}: {reason}")]
    InvalidArg {
        /// The argument.
        field: &'static str,
        /// The rule it broke.
        reason: String,
    },
    /// Nothing was ever started for the instance.
    #[error("instance {instance} is unknown")]
    NotFound {
        /// The instance id.
        instance: String,
    },
    /// The instance is another invocation than the caller's: it is refused,
    /// whatever else the caller presents.
    #[error("instance {instance} is invocation {actual}, not {presented}")]
    OtherInvocation {
        /// The instance id.
        instance: String,
        /// The invocation the caller presented.
        presented: String,
        /// The invocation the instance is.
        actual: String,
    },
    /// `instance.start` of a new invocation while another one runs.
    #[error("instance {instance} already runs invocation {running}")]
    AlreadyRunning {
        /// The instance id.
        instance: String,
        /// The invocation that runs.
        running: String,
    },
    /// The instance directory could not be used.
    #[error(transparent)]
    Dir(#[from] InstanceDirError),
    /// The supervisor could not be asked.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The supervisor did not start the workload.
    #[error("cannot start instance {instance}")]
    Launch {
        /// The instance id.
        instance: String,
        /// Why.
        #[source]
        source: LaunchError,
    },
    /// The program that supervises instances is not known.
    #[error("cannot find the supervisor program {path}")]
    Supervisor {
        /// The program.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The result of an instance task.
pub type Result<T, E = InstanceError> = std::result::Result<T, E>;
