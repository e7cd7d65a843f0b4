//! Files replaced whole: written to a temporary file beside the target,
//! synced, renamed over it, and the directory synced, so that a crash at any
//! point leaves the old content or the new, never a mix (the write-ahead
//! state of the agent, an instance's spec and status).
//!
//! Invariant: a reader never sees a partly written file at `path`; a
//! temporary file left by a crash has a name starting with `.` and ending in
//! `.tmp`, which no reader of these directories takes for a document.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Whether a replacement must survive a power loss once it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Synced to disk before and after the rename.
    Synced,
    /// Atomic, not synced: survives a process crash, not a power loss.
    Atomic,
}

/// Replaces the file at `path` with `contents`.
pub fn replace_file(path: &Path, contents: &[u8], durability: Durability) -> io::Result<()> {
    let dir = parent(path);
    let mut file = tempfile::Builder::new()
        .prefix(".")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    file.write_all(contents)?;
    if durability == Durability::Synced {
        file.as_file().sync_all()?;
    }
    file.persist(path).map_err(|error| error.error)?;
    if durability == Durability::Synced {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes the file at `path` durably; a file already gone is no error.
pub fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
        Ok(()) => sync_dir(parent(path)),
    }
}

/// Makes a file replaced with [`Durability::Atomic`] durable after all: its
/// content, and its name in its directory.
pub fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()?;
    sync_dir(parent(path))
}

/// Makes renames and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path`; `.` for a relative path of one component.
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("state.json");
        replace_file(&path, b"{\"a\":1}", Durability::Synced).expect("first write");
        replace_file(&path, b"{\"a\":2}", Durability::Atomic).expect("second write");
        assert_eq!(fs::read(&path).expect("read"), b"{\"a\":2}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        remove_file(&path).expect("remove");
        remove_file(&path).expect("removing a missing file is no error");
        assert!(!path.exists());
    }
}
