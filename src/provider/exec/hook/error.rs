//! Why a hook could not be run: a variant per failed step, naming the path
//! it was about. A hook that ran and failed is not an error: its exit code
//! or signal is the result.

use std::io;
use std::path::PathBuf;

use visor_controllers::Name;

/// A `Result` whose error is a [`HookError`].
pub type Result<T, E = HookError> = std::result::Result<T, E>;

/// Why a hook could not be run.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The revision is not in the cache (`artifact.fetch` comes first).
    #[error("revision {revision} of app {app} is not fetched")]
    NotFetched {
        /// The app.
        app: Name,
        /// The revision.
        revision: Name,
    },
    /// A path in the revision could not be inspected or resolved.
    #[error("inspecting {}", path.display())]
    Inspect {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A path in the revision resolves, through a symlink, outside it.
    #[error("{} resolves to {}, outside the revision's directory", path.display(), resolved.display())]
    Escapes {
        /// The path.
        path: PathBuf,
        /// Where it resolves to.
        resolved: PathBuf,
    },
    /// The hook is not a regular file.
    #[error("hook {} is not a regular file", path.display())]
    NotAFile {
        /// The hook.
        path: PathBuf,
    },
    /// The hook is not executable.
    #[error("hook {} is not executable", path.display())]
    NotExecutable {
        /// The hook.
        path: PathBuf,
    },
    /// The working directory is not a directory.
    #[error("working directory {} is not a directory", path.display())]
    NotADir {
        /// The working directory.
        path: PathBuf,
    },
    /// Starting the hook failed.
    #[error("starting hook {}", path.display())]
    Spawn {
        /// The hook.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Waiting for the hook to end failed.
    #[error("waiting for hook {}", path.display())]
    Wait {
        /// The hook.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}
