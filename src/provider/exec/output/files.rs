//! The files of one output stream, opened together: the rotated ones
//! (`<name>.N` … `<name>.1`, `.1` the newest) and the current one.
//!
//! A file is known by its device and inode, not its path: the supervisor
//! rotates by renaming the current file to `.1` (and `.1` to `.2`, ...) and
//! creating a new one, so a path names different files over time while an
//! open file stays the same. Invariant: a [`Snapshot`] holds each file once,
//! oldest first, as the paths were at one moment (it retries while a
//! rotation moves files under it).

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Rotated files looked for at most (the supervisor keeps far fewer).
const MAX_ROTATED: usize = 1000;
/// How often opening the files is tried again while rotations move them.
const SNAPSHOT_ATTEMPTS: usize = 5;

/// Which file a path or an open file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(metadata: &std::fs::Metadata) -> Self {
        Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
        }
    }

    /// The file at `path` now; `None` when there is none.
    pub(super) fn at(path: &Path) -> io::Result<Option<Self>> {
        match std::fs::metadata(path) {
            Ok(metadata) => Ok(Some(Self::of(&metadata))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// One open output file.
#[derive(Debug)]
pub(super) struct LogFile {
    file: File,
    id: FileId,
}

impl LogFile {
    /// Opens `path` for reading; `None` when there is no such file.
    pub(super) fn open(path: &Path) -> io::Result<Option<Self>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let id = FileId::of(&file.metadata()?);
        Ok(Some(Self { file, id }))
    }

    pub(super) fn id(&self) -> FileId {
        self.id
    }

    /// Its length now.
    pub(super) fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Reads at `offset` without moving any cursor; 0 at the end.
    pub(super) fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
}

/// `<current>.<n>`: the n-th rotated file, `.1` the newest.
pub(super) fn rotated_path(current: &Path, n: usize) -> PathBuf {
    let mut name = current.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The rotated files of `current`, newest first, up to the first missing one.
fn open_rotated(current: &Path) -> io::Result<Vec<LogFile>> {
    let mut rotated = Vec::new();
    for n in 1..=MAX_ROTATED {
        match LogFile::open(&rotated_path(current, n))? {
            Some(file) => rotated.push(file),
            None => break,
        }
    }
    Ok(rotated)
}

/// The rotated files that came after `old`, oldest first: those found
/// before `old` among `.1`, `.2`, ..., except `new` (the current file,
/// which may have been rotated too). Empty when `old` is no longer there:
/// then which files came after it cannot be told.
pub(super) fn rotated_after(current: &Path, old: FileId, new: FileId) -> io::Result<Vec<LogFile>> {
    let mut newer = Vec::new();
    for file in open_rotated(current)? {
        if file.id == old {
            newer.reverse();
            return Ok(newer);
        }
        if file.id != new {
            newer.push(file);
        }
    }
    Ok(Vec::new())
}

/// The files of a stream with their lengths at one moment, oldest first;
/// the current file, if there is one, last.
#[derive(Debug)]
pub(super) struct Snapshot {
    /// Every file and its length when opened.
    pub(super) files: Vec<(LogFile, u64)>,
    /// Whether the last of `files` is the current one.
    pub(super) has_current: bool,
}

impl Snapshot {
    /// Opens the current file at `current` and its rotated files.
    pub(super) fn open(current: &Path) -> io::Result<Self> {
        let mut attempt = 1;
        loop {
            let file = LogFile::open(current)?;
            let rotated = open_rotated(current)?;
            let opened = rotated.len() + usize::from(file.is_some());
            let ids: BTreeSet<FileId> = rotated.iter().chain(&file).map(|f| f.id).collect();
            let distinct = ids.len() == opened;
            // A file seen twice, or a current file that is no longer at its
            // path: a rotation happened while the files were opened.
            let settled = distinct && FileId::at(current)? == file.as_ref().map(|f| f.id);
            if settled || attempt == SNAPSHOT_ATTEMPTS {
                return Self::measure(rotated, file);
            }
            attempt += 1;
        }
    }

    fn measure(mut rotated: Vec<LogFile>, current: Option<LogFile>) -> io::Result<Self> {
        rotated.reverse();
        let has_current = current.is_some();
        let files = rotated
            .into_iter()
            .chain(current)
            .map(|file| file.len().map(|len| (file, len)))
            .collect::<io::Result<_>>()?;
        Ok(Self { files, has_current })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(file: &LogFile) -> String {
        let mut buf = vec![0; 64];
        let n = file.read_at(&mut buf, 0).expect("read");
        String::from_utf8(buf[..n].to_vec()).expect("UTF-8")
    }

    #[test]
    fn a_snapshot_holds_the_rotated_files_oldest_first_then_the_current_one() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let current = dir.path().join("stdout.log");
        std::fs::write(rotated_path(&current, 2), "oldest\n").expect("written");
        std::fs::write(rotated_path(&current, 1), "older\n").expect("written");
        std::fs::write(&current, "now\n").expect("written");
        // A gap ends the rotated files: .4 is not one of them.
        std::fs::write(rotated_path(&current, 4), "stray\n").expect("written");
        let snapshot = Snapshot::open(&current).expect("opened");
        let contents: Vec<_> = snapshot
            .files
            .iter()
            .map(|(file, len)| (text(file), *len))
            .collect();
        assert_eq!(
            contents,
            [
                ("oldest\n".into(), 7),
                ("older\n".into(), 6),
                ("now\n".into(), 4)
            ]
        );
        assert!(snapshot.has_current);
    }

    #[test]
    fn a_stream_without_files_is_an_empty_snapshot() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let snapshot = Snapshot::open(&dir.path().join("stderr.log")).expect("opened");
        assert!(snapshot.files.is_empty());
        assert!(!snapshot.has_current);
    }

    #[test]
    fn the_files_after_a_rotated_one_are_found_by_identity() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let current = dir.path().join("stdout.log");
        std::fs::write(&current, "a").expect("written");
        let old = LogFile::open(&current).expect("opened").expect("exists");
        // Two rotations: a -> .1 -> .2, b -> .1, c current.
        std::fs::rename(&current, rotated_path(&current, 2)).expect("renamed");
        std::fs::write(rotated_path(&current, 1), "b").expect("written");
        std::fs::write(&current, "c").expect("written");
        let new = FileId::at(&current).expect("stat").expect("exists");
        let after = rotated_after(&current, old.id(), new).expect("listed");
        let contents: Vec<_> = after.iter().map(text).collect();
        assert_eq!(contents, ["b"]);
        // An old file that is gone: nothing can be told.
        std::fs::remove_file(rotated_path(&current, 2)).expect("removed");
        assert!(
            rotated_after(&current, old.id(), new)
                .expect("listed")
                .is_empty()
        );
    }
}
