//! The unit's endpoint in each relation, remembered beside the relation's
//! directory: the hooks of a relation removed since (its `departed` and
//! `broken`) run the unit's own hook files, but the relation that named the
//! endpoint is gone from the registry by then.
//!
//! `<root>/.<relation-id>.endpoint` holds `{"endpoint":"db:sql"}`; the
//! leading `.` keeps it from ever being read as a relation's directory.
//! Invariant: it is replaced whole, like a unit file.

use std::fs;
use std::io;

use serde::{Deserialize, Serialize};

use super::{
    Result, StateDirError, StateDirs, file_name, malformed, parent, replace_file, sync_dir,
};

#[derive(Debug, Serialize, Deserialize)]
struct EndpointRecord {
    endpoint: String,
}

impl StateDirs {
    /// The endpoint remembered for `relation_id`, if any.
    pub fn endpoint(&self, relation_id: &str) -> Result<Option<String>> {
        let path = self.root().join(record_name(relation_id)?);
        let text = match fs::read_to_string(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            other => other.map_err(|source| StateDirError::Read {
                path: path.clone(),
                source,
            })?,
        };
        let record: EndpointRecord = serde_json::from_str(&text)
            .map_err(|e| malformed(&path, format!("not an endpoint record: {e}")))?;
        Ok(Some(record.endpoint))
    }

    /// Remembers `endpoint` as the unit's in `relation_id` (creating the
    /// root if missing); a no-op if it is remembered already.
    pub fn remember_endpoint(&self, relation_id: &str, endpoint: &str) -> Result<()> {
        let name = record_name(relation_id)?;
        if self.endpoint(relation_id)?.as_deref() == Some(endpoint) {
            return Ok(());
        }
        let root = self.root();
        if !root.is_dir() {
            fs::create_dir_all(root).map_err(|source| StateDirError::CreateDir {
                path: root.to_owned(),
                source,
            })?;
            sync_dir(parent(root))?;
        }
        let record = EndpointRecord {
            endpoint: endpoint.to_owned(),
        };
        // Invariant: a struct of one string always serializes.
        let text =
            serde_json::to_string(&record).expect("invariant: an endpoint record serializes");
        replace_file(root, &name, &format!("{text}\n"))
    }

    /// Forgets the endpoint of `relation_id` (the unit left it for good).
    pub fn forget_endpoint(&self, relation_id: &str) -> Result<()> {
        let path = self.root().join(record_name(relation_id)?);
        match fs::remove_file(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(StateDirError::RemoveFile { path, source }),
            Ok(()) => {}
        }
        sync_dir(self.root())
    }
}

/// `.<relation-id>.endpoint`, for a relation id that can name a directory.
fn record_name(relation_id: &str) -> Result<String> {
    Ok(format!(".{}.endpoint", file_name(relation_id)?))
}
