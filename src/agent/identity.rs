//! The agent's claim on its data directory, and what it remembers there of
//! its host: the lease its host key is bound to and how many times an agent
//! started on it.
//!
//! Layout under the data directory:
//!
//! ```text
//! agent.lock     flock held for as long as the agent lives
//! host.json      {"host":"h1","lease":7587…,"incarnation":3}
//! ```
//!
//! Invariants: at most one agent holds a data directory (a second one is
//! refused at once, while a restart after a crash takes it, since the kernel
//! drops a dead holder's lock); `host.json` is replaced whole, and the
//! incarnation written is one more than the last one read, so every start
//! of an agent on this directory has its own.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use visor_controllers::Name;

use crate::durable::{Durability, replace_file};
use crate::provider::{Acquire, OwnerLock};

/// What went wrong with the data directory.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The directory cannot be created or locked.
    #[error("cannot use data dir {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another live agent holds the directory.
    #[error("data dir {0} is in use by another running agent")]
    InUse(PathBuf),
    /// The directory was last used for another host.
    #[error(
        "data dir {path} belongs to host {recorded}, not {asked}: give that --host or another --data-dir"
    )]
    OtherHost {
        /// The directory.
        path: PathBuf,
        /// The host it holds the state of.
        recorded: String,
        /// The host asked for.
        asked: String,
    },
    /// `host.json` cannot be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What `host.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct HostRecord {
    host: String,
    #[serde(default)]
    lease: Option<i64>,
    #[serde(default)]
    incarnation: u64,
}

/// A data directory held by this agent, for as long as it is not dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    record: HostRecord,
    _lock: OwnerLock,
}

impl DataDir {
    /// Takes `path` (created if needed) for host `host`, counting this start
    /// as a new incarnation. A `host.json` that does not read is reported
    /// and started afresh: the lease it held, if any, expires on its own.
    pub fn take(path: &Path, host: &Name) -> Result<Self, IdentityError> {
        let failed = |source| IdentityError::DataDir {
            path: path.to_owned(),
            source,
        };
        fs::create_dir_all(path).map_err(failed)?;
        let path = std::path::absolute(path).map_err(failed)?;
        let lock = match OwnerLock::try_acquire(&path.join("agent.lock")).map_err(failed)? {
            Acquire::Taken(lock) => lock,
            Acquire::Held => return Err(IdentityError::InUse(path)),
        };
        let file = path.join("host.json");
        let previous = match fs::read(&file) {
            Ok(bytes) => match serde_json::from_slice::<HostRecord>(&bytes) {
                Ok(record) => Some(record),
                Err(error) => {
                    tracing::warn!(file = %file.display(), %error, "host record does not read; registering afresh");
                    None
                }
            },
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(IdentityError::DataDir { path: file, source }),
        };
        if let Some(previous) = &previous
            && previous.host != host.as_str()
        {
            return Err(IdentityError::OtherHost {
                path,
                recorded: previous.host.clone(),
                asked: host.to_string(),
            });
        }
        let record = HostRecord {
            host: host.to_string(),
            lease: previous.as_ref().and_then(|p| p.lease),
            incarnation: previous.map_or(0, |p| p.incarnation) + 1,
        };
        let dir = Self {
            path,
            record,
            _lock: lock,
        };
        dir.write()?;
        Ok(dir)
    }

    /// The directory (absolute).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lease the host was last registered with, if any.
    pub fn lease(&self) -> Option<i64> {
        self.record.lease
    }

    /// This start's incarnation (1 for the first).
    pub fn incarnation(&self) -> u64 {
        self.record.incarnation
    }

    /// Records the lease the host key is bound to now (`None`: deregistered).
    pub fn set_lease(&mut self, lease: Option<i64>) -> Result<(), IdentityError> {
        if self.record.lease == lease {
            return Ok(());
        }
        self.record.lease = lease;
        self.write()
    }

    fn write(&self) -> Result<(), IdentityError> {
        let file = self.path.join("host.json");
        // Serializing a string and two integers cannot fail.
        let bytes = serde_json::to_vec(&self.record).unwrap_or_default();
        replace_file(&file, &bytes, Durability::Synced)
            .map_err(|source| IdentityError::Write { path: file, source })
    }
}

/// The machine's boot id: it changes when the machine reboots.
pub fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> Name {
        Name::parse("host", name).expect("a host name")
    }

    #[test]
    fn a_second_agent_is_refused_and_a_restart_resumes_the_lease() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let mut first = DataDir::take(root.path(), &host("h1")).expect("first agent");
        assert_eq!((first.incarnation(), first.lease()), (1, None));
        first.set_lease(Some(42)).expect("record the lease");
        match DataDir::take(root.path(), &host("h1")) {
            Err(IdentityError::InUse(_)) => {}
            other => panic!("a second agent must be refused, got {other:?}"),
        }
        drop(first);
        let restarted = DataDir::take(root.path(), &host("h1")).expect("restart");
        assert_eq!((restarted.incarnation(), restarted.lease()), (2, Some(42)));
        drop(restarted);
        match DataDir::take(root.path(), &host("h2")) {
            Err(error @ IdentityError::OtherHost { .. }) => {
                assert!(
                    error.to_string().contains("belongs to host h1, not h2"),
                    "{error}"
                )
            }
            other => panic!("another host must be refused, got {other:?}"),
        }
    }

    #[test]
    fn a_corrupt_host_record_starts_afresh() {
        let root = tempfile::tempdir().expect("a temporary directory");
        fs::write(root.path().join("host.json"), b"{not json").expect("corrupt it");
        let dir = DataDir::take(root.path(), &host("h1")).expect("taken despite the corrupt file");
        assert_eq!((dir.incarnation(), dir.lease()), (1, None));
    }
}
