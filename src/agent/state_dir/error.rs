//! Why reading or writing the local relation state failed: a variant per
//! failed operation; those on the file system name the path they were about.

use std::io;
use std::path::PathBuf;

use visor_controllers::{HookError, HookInfo, InvalidName};

/// A `Result` whose error is a [`StateDirError`].
pub type Result<T, E = StateDirError> = std::result::Result<T, E>;

/// Why reading or writing the local relation state failed.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    /// A relation id or unit name cannot name a state file.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// The hook may not follow the recorded state; nothing was written.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// A `joined` or `changed` hook carries a negative settings version.
    #[error("{hook}: a settings version is never negative")]
    NegativeVersion {
        /// The refused hook.
        hook: HookInfo,
    },
    /// Creating a relation's directory failed.
    #[error("creating relation state directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Listing a directory failed.
    #[error("listing relation state directory {}", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading a unit file failed.
    #[error("reading relation state file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Replacing a unit file (writing, syncing, renaming its temporary
    /// file) failed.
    #[error("writing relation state file {}", path.display())]
    Write {
        /// The unit file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Removing a unit file (or a leftover temporary file) failed.
    #[error("removing relation state file {}", path.display())]
    RemoveFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Removing a relation's directory failed.
    #[error("removing relation state directory {}", path.display())]
    RemoveDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Syncing a directory (making a rename or removal durable) failed.
    #[error("syncing directory {}", path.display())]
    SyncDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A unit file (or a relation's directory as a whole) does not hold a
    /// valid state.
    #[error("malformed relation state {}: {reason}", path.display())]
    Malformed {
        /// The file, or the directory when the files disagree.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A state cannot be written over a relation's directory.
    #[error("cannot write relation state of {relation}: {reason}")]
    InvalidState {
        /// The relation the state names.
        relation: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A relation's directory cannot be removed: entries are left in it.
    #[error(
        "relation state directory {} is not empty: {}",
        path.display(),
        entries.join(", ")
    )]
    NotEmpty {
        /// The directory.
        path: PathBuf,
        /// The names of what is left in it (unit files or strays), sorted.
        entries: Vec<String>,
    },
}
