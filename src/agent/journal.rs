//! The agent's write-ahead record of each instance it runs, one file per
//! instance under `<data_dir>/instances/<id>.json`, so that an agent that
//! restarts (after a crash, a SIGKILL, an upgrade) knows what it had started
//! and re-attaches to it instead of starting it again.
//!
//! Invariants: a record's step is written *before* the action it names is
//! taken (`starting` with the invocation id before a process is spawned,
//! `stopping` before it is stopped) and the outcome after it, each file
//! replaced whole; a record that does not read is reported and set aside as
//! `<id>.json.corrupt` (never fatal, never silently lost).
//!
//! Records are replaced atomically but not synced: they describe processes,
//! and the crash a sync would guard against (of the machine) ends every one
//! of them. After it, a record that survived finds its process gone, and an
//! instance whose record did not is reported gone when the agent reconciles
//! with the registry: either way the instance is handled as one whose
//! process died, which it is. Every start is spared an fsync.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use visor_controllers::Name;

use crate::durable::{Durability, remove_file, replace_file};

/// What went wrong with a record.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The directory cannot be read or created.
    #[error("cannot use the instance records in {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A record cannot be written or removed.
    #[error("cannot write the instance record {path}")]
    Write {
        /// The record.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Where an instance's process is, as this agent last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// The invocation is about to be started, or is starting.
    Starting,
    /// The invocation runs.
    Running,
    /// The invocation is being stopped.
    Stopping,
}

/// One instance's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The instance id.
    pub instance: Name,
    /// Its app.
    pub app: Name,
    /// Its revision.
    pub rev: Name,
    /// Its proc type.
    pub proc: Name,
    /// The port it was given.
    pub port: Option<u16>,
    /// The invocation the step is about.
    pub invocation: String,
    /// Where that invocation is.
    pub step: Step,
    /// When it was restarted, within the restart window.
    #[serde(default)]
    pub restarts: Vec<DateTime<Utc>>,
    /// How often it was restarted in all.
    #[serde(default)]
    pub restart_count: u32,
    /// The uuid of its service endpoint, kept across agent restarts so that
    /// a re-registration is the same endpoint (no death, no birth).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// When the record was last written.
    pub updated_at: DateTime<Utc>,
}

/// The records under one directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// The records under `dir`, created if needed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, JournalError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| JournalError::Dir {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// Every record that reads, by instance. One that does not is logged
    /// and moved aside (`<file>.corrupt`), and its instance returned in
    /// the second list, so the agent can report it.
    pub fn read_all(&self) -> Result<(BTreeMap<Name, Record>, Vec<String>), JournalError> {
        let dir_error = |source| JournalError::Dir {
            path: self.dir.clone(),
            source,
        };
        let mut records = BTreeMap::new();
        let mut corrupt = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(dir_error)? {
            let path = entry.map_err(dir_error)?.path();
            let Some(id) = record_id(&path) else { continue };
            let reason = match read(&path) {
                Ok(record) if record.instance.as_str() == id => {
                    records.insert(record.instance.clone(), record);
                    continue;
                }
                Ok(_) => "it names another instance".to_owned(),
                Err(reason) => reason,
            };
            tracing::warn!(file = %path.display(), %reason, "instance record does not read; set aside");
            let aside = path.with_extension("json.corrupt");
            if let Err(error) = fs::rename(&path, &aside) {
                tracing::warn!(file = %path.display(), %error, "cannot set the record aside");
            }
            corrupt.push(id.to_owned());
        }
        Ok((records, corrupt))
    }

    /// Writes `record`, replacing the instance's whole (not synced: see the
    /// module's doc).
    pub fn write(&self, record: &Record) -> Result<(), JournalError> {
        let path = self.path(&record.instance);
        // A record of names, strings, integers and timestamps always serializes.
        let bytes = serde_json::to_vec(record).unwrap_or_default();
        replace_file(&path, &bytes, Durability::Atomic)
            .map_err(|source| JournalError::Write { path, source })
    }

    /// Removes `instance`'s record: the agent is done with it.
    pub fn remove(&self, instance: &Name) -> Result<(), JournalError> {
        let path = self.path(instance);
        remove_file(&path).map_err(|source| JournalError::Write { path, source })
    }

    fn path(&self, instance: &Name) -> PathBuf {
        self.dir.join(format!("{instance}.json"))
    }
}

/// The instance id of a record file, `<id>.json`.
fn record_id(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    let id = name.strip_suffix(".json")?;
    Name::parse("instance", id).ok().map(|_| id)
}

fn read(path: &Path) -> Result<Record, String> {
    let bytes = fs::read(path).map_err(|error| error.to_string())?;
    serde_json::from_slice(&bytes).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::parse("name", text).expect("a name")
    }

    fn record(id: &str) -> Record {
        Record {
            instance: name(id),
            app: name("web"),
            rev: name("v1"),
            proc: name("http"),
            port: Some(20000),
            invocation: "a1".into(),
            step: Step::Starting,
            restarts: vec![],
            restart_count: 0,
            endpoint: None,
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn records_round_trip_and_corrupt_ones_are_set_aside() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let journal = Journal::open(root.path().join("instances")).expect("open");
        let mut one = record("i-1");
        journal.write(&one).expect("write");
        one.step = Step::Running;
        journal.write(&one).expect("rewrite");
        journal.write(&record("i-2")).expect("write");
        fs::write(root.path().join("instances/i-3.json"), b"{\"instance\":").expect("corrupt");
        fs::write(root.path().join("instances/.i-4.json.tmp"), b"partial")
            .expect("a crash's leftover");
        let (records, corrupt) = journal.read_all().expect("read");
        assert_eq!(records.len(), 2);
        assert_eq!(records[&name("i-1")].step, Step::Running);
        assert_eq!(corrupt, ["i-3"]);
        assert!(root.path().join("instances/i-3.json.corrupt").exists());
        journal.remove(&name("i-1")).expect("remove");
        journal
            .remove(&name("i-1"))
            .expect("removing twice is fine");
        assert_eq!(journal.read_all().expect("read").0.len(), 1);
    }
}
