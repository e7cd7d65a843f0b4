//! An instance's directory: what the exec provider writes for the
//! supervisor, and what the supervisor keeps there.
//!
//! ```text
//! <data_dir>/instances/<instance>/
//!     spec.json       what to run (the provider writes it before the supervisor starts)
//!     status.json     the last recorded Status (the supervisor replaces it whole)
//!     control.sock    the supervisor's control socket, while it lives
//!     shim.log        the supervisor's own log
//!     logs/stdout.log, logs/stdout.log.1, ...   the workload's rotated output
//!     logs/stderr.log, logs/stderr.log.1, ...
//! ```
//!
//! Invariants: an instance or invocation id is a registry name not starting
//! with `.`, so it is one safe path component; and `spec.json` and
//! `status.json` are only ever replaced whole (temporary file, rename), so a
//! reader sees the old or the new document, never a mix; `status.json`
//! durably so (synced before the rename, directory synced after).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::durable::{Durability, replace_file};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use visor_controllers::Name;

use super::status::Status;

/// The longest path a unix socket address holds (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// What a supervisor runs: the provider's instructions, written once per
/// invocation before the supervisor starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The instance id.
    pub instance: String,
    /// The invocation id.
    pub invocation: String,
    /// The program.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its whole environment.
    pub env: BTreeMap<String, String>,
    /// Its working directory; the supervisor's (`/`) when absent.
    pub working_dir: Option<PathBuf>,
    /// How long a stop waits after SIGTERM before SIGKILL, in milliseconds.
    pub kill_timeout_ms: u64,
    /// Log rotation.
    pub logs: LogLimits,
}

impl Spec {
    /// The time a stop grants the workload between SIGTERM and SIGKILL.
    pub fn kill_timeout(&self) -> Duration {
        Duration::from_millis(self.kill_timeout_ms)
    }
}

/// When the workload's output files rotate and how many are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLimits {
    /// A file is rotated once it holds this many bytes (at least 1).
    pub max_bytes: usize,
    /// Rotated files kept beside the current one.
    pub keep: usize,
}

impl Default for LogLimits {
    /// 10 MiB per file, five rotated files kept.
    fn default() -> Self {
        Self {
            max_bytes: 10 << 20,
            keep: 5,
        }
    }
}

/// Why an instance directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum InstanceDirError {
    /// A directory could not be created.
    #[error("cannot create {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A document could not be written in place.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A document could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A document is not what the supervisor writes.
    #[error("{path} is malformed")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A stale entry could not be removed.
    #[error("cannot remove {path}")]
    Remove {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The control socket's path is longer than a unix socket address holds.
    #[error(
        "{path} is too long for a unix socket ({len} bytes, at most {MAX_SOCKET_PATH}): use a shorter data dir"
    )]
    SocketPathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
}

/// One instance's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceDir {
    path: PathBuf,
}

impl InstanceDir {
    /// The directory of `instance` under `data_dir`.
    pub fn new(data_dir: &Path, instance: &Name) -> Self {
        Self {
            path: data_dir.join("instances").join(instance.as_str()),
        }
    }

    /// The directory a supervisor was given.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `spec.json`.
    pub fn spec_path(&self) -> PathBuf {
        self.path.join("spec.json")
    }

    /// `status.json`.
    pub fn status_path(&self) -> PathBuf {
        self.path.join("status.json")
    }

    /// `control.sock`.
    pub fn control_socket(&self) -> PathBuf {
        self.path.join("control.sock")
    }

    /// `shim.log`.
    pub fn shim_log(&self) -> PathBuf {
        self.path.join("shim.log")
    }

    /// `logs/`.
    pub fn logs(&self) -> PathBuf {
        self.path.join("logs")
    }

    /// `logs/stdout.log`, the current file of the workload's stdout.
    pub fn stdout_log(&self) -> PathBuf {
        self.logs().join("stdout.log")
    }

    /// `logs/stderr.log`, the current file of the workload's stderr.
    pub fn stderr_log(&self) -> PathBuf {
        self.logs().join("stderr.log")
    }

    /// Creates the directory and `logs/` (0750), and checks that the control
    /// socket's path fits a unix socket address.
    pub fn create(&self) -> Result<(), InstanceDirError> {
        let socket = self.control_socket();
        let len = socket.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(InstanceDirError::SocketPathTooLong { path: socket, len });
        }
        let logs = self.logs();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&logs)
            .map_err(|source| InstanceDirError::CreateDir { path: logs, source })
    }

    /// Replaces `spec.json`. Atomic but not synced: only the supervisor
    /// started right after reads it, and after a crash of the host no
    /// supervisor of it is left to read it again.
    pub fn write_spec(&self, spec: &Spec) -> Result<(), InstanceDirError> {
        write_whole(&self.spec_path(), spec, Sync::No)
    }

    /// Reads `spec.json`.
    pub fn read_spec(&self) -> Result<Spec, InstanceDirError> {
        let path = self.spec_path();
        read(&path)?.ok_or_else(|| InstanceDirError::Read {
            source: io::ErrorKind::NotFound.into(),
            path,
        })
    }

    /// Replaces `status.json`, durably: after a crash of the host it tells
    /// a `running` instance (now `lost`) from an `exited` one.
    pub fn write_status(&self, status: &Status) -> Result<(), InstanceDirError> {
        write_whole(&self.status_path(), status, Sync::Yes)
    }

    /// Replaces `status.json` with the first record of an invocation, at
    /// once but not yet durably: [`sync_status`](Self::sync_status) makes
    /// it durable, after the start is reported, so that no start waits for
    /// an fsync.
    pub fn write_start_status(&self, status: &Status) -> Result<(), InstanceDirError> {
        write_whole(&self.status_path(), status, Sync::No)
    }

    /// Makes `status.json` durable, as [`write_status`](Self::write_status)
    /// would have.
    pub fn sync_status(&self) -> Result<(), InstanceDirError> {
        let path = self.status_path();
        crate::durable::sync_file(&path).map_err(|source| InstanceDirError::Write { path, source })
    }

    /// Reads `status.json`; `None` when there is none.
    pub fn read_status(&self) -> Result<Option<Status>, InstanceDirError> {
        read(&self.status_path())
    }

    /// Removes what an earlier invocation left that a new one must not
    /// read as its own: its status and its (stale) control socket.
    pub fn clear_invocation(&self) -> Result<(), InstanceDirError> {
        for path in [self.status_path(), self.control_socket()] {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(InstanceDirError::Remove { path, source: e });
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether a replaced document must survive a crash of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    Yes,
    No,
}

/// Writes `value` as JSON to a temporary file beside `path` and renames it
/// over `path`; with [`Sync::Yes`], syncs the file before the rename and the
/// directory after it.
fn write_whole(path: &Path, value: &impl Serialize, sync: Sync) -> Result<(), InstanceDirError> {
    let error = |source| InstanceDirError::Write {
        path: path.to_owned(),
        source,
    };
    // Serializing these documents cannot fail: string keys, no floats.
    let text = serde_json::to_vec(value).map_err(|e| error(e.into()))?;
    let durability = match sync {
        Sync::Yes => Durability::Synced,
        Sync::No => Durability::Atomic,
    };
    replace_file(path, &text, durability).map_err(error)
}

fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, InstanceDirError> {
    let text = match fs::read(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(InstanceDirError::Read {
                path: path.to_owned(),
                source,
            });
        }
        Ok(text) => text,
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| InstanceDirError::Malformed {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_single_safe_path_components() {
        for good in ["0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "web-1", "a.b"] {
            assert!(Name::parse("instance", good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "A", &"x".repeat(64)] {
            assert!(Name::parse("instance", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn documents_are_replaced_whole_and_read_back() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let id = Name::parse("instance", "i-1").expect("valid");
        let dir = InstanceDir::new(root.path(), &id);
        dir.create().expect("created");
        assert_eq!(dir.read_status().expect("readable"), None);
        let now = chrono::Utc::now();
        let first = Status::running("i-1", "a", 1, now);
        dir.write_status(&first).expect("written");
        let second = Status::running("i-1", "b", 2, now);
        dir.write_status(&second).expect("written");
        assert_eq!(dir.read_status().expect("readable"), Some(second));
        // Only the document is left: no temporary file beside it.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("listable")
            .map(|e| e.expect("an entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        dir.clear_invocation().expect("cleared");
        dir.clear_invocation().expect("clearing twice is fine");
        assert_eq!(dir.read_status().expect("readable"), None);
    }

    #[test]
    fn a_socket_path_too_long_is_refused_up_front() {
        let long = PathBuf::from(format!("/tmp/{}", "d".repeat(100)));
        let id = Name::parse("instance", "i-1").expect("valid");
        let error = InstanceDir::new(&long, &id).create().expect_err("too long");
        assert!(
            matches!(error, InstanceDirError::SocketPathTooLong { .. }),
            "{error}"
        );
    }
}
