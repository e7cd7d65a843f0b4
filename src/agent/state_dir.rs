//! The agent's local relation state: a directory per relation, a file per
//! remote unit, after Juju's uniter `relation.StateDir`.
//!
//! Layout under a root directory:
//!
//! ```text
//! <root>/<relation-id>/<unit>      one file per remote unit that has joined
//! <root>/<relation-id>/.<x>.tmp   a write in progress (or left by a crash)
//! ```
//!
//! A unit file holds one JSON object, e.g.
//! `{"change_version":7,"changed_pending":true}`: the remote unit's settings
//! version last delivered (a non-negative integer, required) and whether its
//! `joined` ran but its `changed` has not (optional, default `false`; at most
//! one unit of a relation may have it). Unknown fields are tolerated.
//!
//! Relation ids and unit names are registry names that do not start with `.`
//! (so neither can be `.`, `..` or a temporary file). Reading skips every
//! entry that is not such a name (temporary files, strays) but reports a
//! malformed unit file instead of dropping it.
//!
//! Invariants: a unit file is only ever replaced whole (written to a
//! temporary file, synced, renamed over it, the directory synced), so a crash
//! leaves the old or the new state, never a mix; and [`StateDir::write`] is
//! idempotent, so a hook whose effect is already on disk can be written again.
//! One [`StateDir`] at a time may write a relation's directory.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::durable::{self, Durability, parent};
use visor_controllers::{HookInfo, HookKind, InvalidName, Name, RelationState};

mod endpoint;
mod error;
mod replace;
#[cfg(test)]
mod tests;

pub use error::{Result, StateDirError};

/// Temporary files are `.<random>.tmp`: the leading `.` keeps them from ever
/// being read as a unit file.
const TEMP_SUFFIX: &str = ".tmp";

/// The content of a unit file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
struct UnitRecord {
    change_version: i64,
    #[serde(default)]
    changed_pending: bool,
}

impl UnitRecord {
    /// The file's text. Written by hand because it cannot fail, unlike
    /// `serde_json::to_string`; a test checks that it reads back.
    fn to_json(self) -> String {
        format!(
            "{{\"change_version\":{},\"changed_pending\":{}}}\n",
            self.change_version, self.changed_pending
        )
    }
}

/// The root of the local relation state: a directory of relation directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDirs {
    root: PathBuf,
}

impl StateDirs {
    /// The relation state kept under `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads every relation's directory, keyed by relation id. A missing root
    /// reads as no relations. Entries that are not directories named after a
    /// relation are skipped, as are strays inside them; a malformed unit file
    /// is an error naming it.
    pub fn read_all(&self) -> Result<BTreeMap<String, StateDir>> {
        let mut dirs = BTreeMap::new();
        let Some(entries) = list(&self.root)? else {
            return Ok(dirs);
        };
        for (name, is_dir) in entries {
            let relation_id = match name.as_deref().map(file_name) {
                Some(Ok(relation_id)) if is_dir => relation_id,
                _ => {
                    let root = self.root.display();
                    tracing::debug!(%root, entry = ?name, "skipping a stray entry");
                    continue;
                }
            };
            let path = self.root.join(relation_id.as_str());
            let state = read_state(&path, relation_id.as_str())?;
            dirs.insert(relation_id.to_string(), StateDir { path, state });
        }
        Ok(dirs)
    }

    /// The directory of `relation_id`, created if missing; see
    /// [`StateDir::ensure`].
    pub fn ensure(&self, relation_id: &str) -> Result<StateDir> {
        StateDir::ensure(&self.root, relation_id)
    }
}

/// The local state of one relation: `<root>/<relation-id>/`, and the
/// [`RelationState`] its unit files hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    path: PathBuf,
    state: RelationState,
}

impl StateDir {
    /// Opens the directory of `relation_id` under `root`, creating it (and
    /// `root`) if missing, and reads the state it holds.
    pub fn ensure(root: &Path, relation_id: &str) -> Result<Self> {
        let relation_id = file_name(relation_id)?;
        let path = root.join(relation_id.as_str());
        fs::create_dir_all(&path).map_err(|source| StateDirError::CreateDir {
            path: path.clone(),
            source,
        })?;
        // The new entry in `root` must survive a crash like any state change.
        sync_dir(parent(&path))?;
        let state = read_state(&path, relation_id.as_str())?;
        Ok(Self { path, state })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The relation id.
    pub fn relation_id(&self) -> &str {
        &self.state.relation_id
    }

    /// The relation state the unit files hold (`broken` once a `broken`
    /// hook was written and the directory removed).
    pub fn state(&self) -> RelationState {
        self.state.clone()
    }

    /// Records durably that `hook` ran: `joined` writes the unit's file with
    /// its version and a pending `changed`, `changed` writes its version and
    /// clears the pending flag, `departed` removes its file, `broken` removes
    /// the (then empty) directory.
    ///
    /// Idempotent: a hook whose effect the state already shows is a no-op, so
    /// the agent may write its last hook again after a crash. For `departed`
    /// that effect (no file for the unit) cannot be told apart from a unit
    /// that never joined, so such a `departed` is a no-op too, as in Juju.
    /// Any other hook [`RelationState::validate`] refuses is refused unchanged.
    pub fn write(&mut self, hook: &HookInfo) -> Result<()> {
        let unit = hook.remote_unit.as_deref().map(file_name).transpose()?;
        if self.took_effect(hook) {
            return Ok(());
        }
        self.state.validate(hook)?;
        match (hook.kind, unit) {
            (HookKind::Joined | HookKind::Changed, Some(unit)) => {
                if hook.change_version < 0 {
                    return Err(StateDirError::NegativeVersion { hook: hook.clone() });
                }
                let record = UnitRecord {
                    change_version: hook.change_version,
                    changed_pending: hook.kind == HookKind::Joined,
                };
                self.write_unit(&unit, record)?;
            }
            (HookKind::Departed, Some(unit)) => self.remove_unit(&unit)?,
            // Validation refuses a `broken` naming a unit and any other kind
            // naming none, so this is `broken`.
            _ => remove_empty_dir(&self.path)?,
        }
        // Cannot fail: validated above. Updating memory only after the disk
        // keeps a failed write retryable.
        self.state.apply(hook)?;
        Ok(())
    }

    /// Removes the directory; refused while anything but leftover temporary
    /// files remains in it.
    pub fn remove(self) -> Result<()> {
        remove_empty_dir(&self.path)
    }

    /// Whether the state already is what writing `hook` last would have made
    /// it, i.e. `hook` was written and nothing after it.
    fn took_effect(&self, hook: &HookInfo) -> bool {
        let state = &self.state;
        if hook.relation_id != state.relation_id {
            return false;
        }
        let version = Some(&hook.change_version);
        match (hook.kind, hook.remote_unit.as_deref()) {
            (HookKind::Broken, None) => state.broken,
            (HookKind::Broken, Some(_)) | (_, None) => false,
            // A unit's hook after `broken` is an error, not a replay.
            _ if state.broken => false,
            (HookKind::Joined, Some(unit)) => {
                state.members.get(unit) == version && state.changed_pending.as_deref() == Some(unit)
            }
            (HookKind::Changed, Some(unit)) => {
                state.members.get(unit) == version && state.changed_pending.is_none()
            }
            // A `departed` needs no pending `changed`, and leaves none.
            (HookKind::Departed, Some(unit)) => {
                !state.members.contains_key(unit) && state.changed_pending.is_none()
            }
        }
    }

    fn write_unit(&self, unit: &Name, record: UnitRecord) -> Result<()> {
        replace_file(&self.path, unit.as_str(), &record.to_json())
    }

    fn remove_unit(&self, unit: &Name) -> Result<()> {
        let path = self.path.join(unit.as_str());
        match fs::remove_file(&path) {
            // Already gone: a crash after the removal, before it was recorded.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StateDirError::RemoveFile { path, source }),
            Ok(()) => {}
        }
        sync_dir(&self.path)
    }
}

/// Replaces `dir/<name>` whole with `text` (`crate::durable`: a crash
/// leaves the old content or the new one).
fn replace_file(dir: &Path, name: &str, text: &str) -> Result<()> {
    let target = dir.join(name);
    durable::replace_file(&target, text.as_bytes(), Durability::Synced).map_err(|source| {
        StateDirError::Write {
            path: target,
            source,
        }
    })
}

/// Validates a relation id or unit name as a file name: a registry name,
/// which never starts with `.`, so never `.`, `..` or a temporary file.
fn file_name(value: &str) -> Result<Name, InvalidName> {
    Name::parse("relation state file", value)
}

fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// Directory entries: the name (if UTF-8) and whether it is a directory
/// (not following links).
type Entries = Vec<(Option<String>, bool)>;

/// The entries of `dir`, or `None` if `dir` does not exist.
fn list(dir: &Path) -> Result<Option<Entries>> {
    let read_dir_error = |source| StateDirError::ReadDir {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        other => other.map_err(read_dir_error)?,
    };
    let mut listed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_dir_error)?;
        let is_dir = entry.file_type().map_err(read_dir_error)?.is_dir();
        listed.push((entry.file_name().into_string().ok(), is_dir));
    }
    Ok(Some(listed))
}

/// Reads the state held by the directory `path` of `relation_id`; a missing
/// directory reads as an empty state.
fn read_state(path: &Path, relation_id: &str) -> Result<RelationState> {
    let mut state = RelationState::new(relation_id);
    let mut pending = Vec::new();
    for (name, is_dir) in list(path)?.unwrap_or_default() {
        let Some(unit) = name.filter(|name| file_name(name).is_ok()) else {
            continue;
        };
        let file = path.join(&unit);
        if is_dir {
            return Err(malformed(&file, "a directory where a unit file belongs"));
        }
        let record = read_unit(&file)?;
        if record.changed_pending {
            pending.push(unit.clone());
        }
        state.members.insert(unit, record.change_version);
    }
    if pending.len() > 1 {
        pending.sort();
        let reason = format!(
            "changed pending for {} units: {}",
            pending.len(),
            pending.join(", ")
        );
        return Err(malformed(path, reason));
    }
    state.changed_pending = pending.pop();
    Ok(state)
}

fn read_unit(path: &Path) -> Result<UnitRecord> {
    let text = fs::read_to_string(path).map_err(|source| StateDirError::Read {
        path: path.to_owned(),
        source,
    })?;
    let record: UnitRecord = serde_json::from_str(&text)
        .map_err(|e| malformed(path, format!("not a unit state document: {e}")))?;
    if record.change_version < 0 {
        let reason = format!("change_version {} is negative", record.change_version);
        return Err(malformed(path, reason));
    }
    Ok(record)
}

fn malformed(path: &Path, reason: impl Into<String>) -> StateDirError {
    StateDirError::Malformed {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Removes `dir` if nothing but leftover temporary files is in it (those go
/// first: a crash must not keep a relation from ever breaking). A missing
/// directory counts as removed.
fn remove_empty_dir(dir: &Path) -> Result<()> {
    let Some(entries) = list(dir)? else {
        return Ok(());
    };
    let mut left = Vec::new();
    for (name, _) in entries {
        match name {
            Some(name) if is_temp(&name) => {
                let path = dir.join(&name);
                fs::remove_file(&path)
                    .map_err(|source| StateDirError::RemoveFile { path, source })?;
            }
            Some(name) => left.push(name),
            None => left.push("<a name that is not UTF-8>".to_owned()),
        }
    }
    if !left.is_empty() {
        left.sort();
        return Err(StateDirError::NotEmpty {
            path: dir.to_owned(),
            entries: left,
        });
    }
    if let Err(source) = fs::remove_dir(dir)
        && source.kind() != io::ErrorKind::NotFound
    {
        return Err(StateDirError::RemoveDir {
            path: dir.to_owned(),
            source,
        });
    }
    sync_dir(parent(dir))
}

/// Makes renames and removals in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    durable::sync_dir(dir).map_err(|source| StateDirError::SyncDir {
        path: dir.to_owned(),
        source,
    })
}
