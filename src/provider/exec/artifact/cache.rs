//! The artifact cache on disk, and the lock under which one fetch of a
//! revision does the work.
//!
//! ```text
//! <root>/<app>/<revision>/                 the unpacked revision
//! <root>/<app>/.<revision>.json            its record: {"url", "sha256"}
//! <root>/<app>/.<revision>.lock            locked (flock) by the fetch working on it
//! <root>/<app>/.<revision>.staging-<id>/   a fetch in progress, or one a crash left:
//!                                            archive (a download), tree/ (the unpacking)
//! ```
//!
//! Registry names never start with `.` ([`Name`]), so the cache's own
//! files never collide with a revision's directory.
//!
//! Invariants: a revision's directory appears only by one rename of a
//! complete tree, synced, after its record, so it is complete whenever it
//! exists and a crash never leaves half a revision that counts as done; and
//! staging directories are created and removed only by the holder of the
//! revision's lock (in this process a mutex, across processes the lock
//! file), so leftovers can be removed without racing a fetch in progress.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedMutexGuard;

use super::digest::Sha256;
use super::error::{ArtifactError, Result};
use visor_controllers::Name;

/// The paths of one revision in the cache.
#[derive(Debug, Clone)]
pub(crate) struct RevisionPaths {
    /// `<root>/<app>`.
    pub(crate) app_dir: PathBuf,
    /// `<root>/<app>/<revision>`.
    pub(crate) dir: PathBuf,
    record: PathBuf,
    lock: PathBuf,
    /// `.<revision>.staging-`: what every staging directory's name starts with.
    staging_prefix: String,
}

impl RevisionPaths {
    pub(crate) fn new(root: &Path, app: &Name, revision: &Name) -> Self {
        let app_dir = root.join(app.as_str());
        let hidden = |suffix: &str| app_dir.join(format!(".{revision}{suffix}"));
        Self {
            dir: app_dir.join(revision.as_str()),
            record: hidden(".json"),
            lock: hidden(".lock"),
            staging_prefix: format!(".{revision}.staging-"),
            app_dir,
        }
    }

    /// The revision's record, if its directory is there (the record is
    /// written before the directory appears, so it is there too).
    pub(crate) fn cached(&self) -> Result<Option<Record>> {
        match fs::symlink_metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ArtifactError::Open {
                    path: self.dir.clone(),
                    source,
                });
            }
        }
        let text = fs::read(&self.record).map_err(|source| ArtifactError::ReadRecord {
            path: self.record.clone(),
            source,
        })?;
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| ArtifactError::MalformedRecord {
                path: self.record.clone(),
                source,
            })
    }

    /// Removes what earlier fetches of this revision left staged, then
    /// creates a fresh staging directory. Only the lock holder calls this.
    pub(crate) fn stage(&self, _held: &RevisionLock) -> Result<Staging> {
        let listing = fs::read_dir(&self.app_dir).map_err(|source| ArtifactError::Open {
            path: self.app_dir.clone(),
            source,
        })?;
        for entry in listing.flatten() {
            let name = entry.file_name();
            if name
                .to_str()
                .is_some_and(|name| name.starts_with(&self.staging_prefix))
            {
                let path = entry.path();
                fs::remove_dir_all(&path)
                    .map_err(|source| ArtifactError::RemoveLeftover { path, source })?;
            }
        }
        let dir = self.app_dir.join(format!(
            "{}{}",
            self.staging_prefix,
            uuid::Uuid::now_v7().simple()
        ));
        fs::create_dir(&dir).map_err(|source| ArtifactError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        Ok(Staging { dir })
    }

    /// Moves a complete tree into place: syncs it, writes the record, renames
    /// the tree to the revision's directory and syncs that rename.
    pub(crate) fn promote(
        &self,
        staging: &Staging,
        record: &Record,
        _held: &RevisionLock,
    ) -> Result<()> {
        let tree = staging.tree();
        let sync_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ArtifactError::Sync { path, source }
        };
        // One syncfs makes every unpacked file durable, where an fsync per
        // file would cost a round trip to the disk each.
        let top = File::open(&tree).map_err(sync_error(&tree))?;
        rustix::fs::syncfs(&top)
            .map_err(io::Error::from)
            .map_err(sync_error(&tree))?;
        write_record(&self.record, record)?;
        fs::rename(&tree, &self.dir).map_err(|source| ArtifactError::Promote {
            from: tree.clone(),
            to: self.dir.clone(),
            source,
        })?;
        File::open(&self.app_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(sync_error(&self.app_dir))
    }
}

/// What the cache remembers of an unpacked revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The URL it was fetched from.
    pub(crate) url: String,
    /// The archive's digest; none for a directory source.
    pub(crate) sha256: Option<Sha256>,
}

/// Writes `record` whole: to a temporary file, synced, renamed over it.
fn write_record(path: &Path, record: &Record) -> Result<()> {
    let write_error = |source| ArtifactError::WriteRecord {
        path: path.to_path_buf(),
        source,
    };
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    // A record is two strings: serializing it cannot fail.
    let text = serde_json::to_vec(record)
        .map_err(io::Error::other)
        .map_err(write_error)?;
    let mut file = File::create(&temp).map_err(write_error)?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    fs::rename(&temp, path).map_err(write_error)
}

/// A fetch's own staging directory.
#[derive(Debug)]
pub(crate) struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// Where a download is written.
    pub(crate) fn archive(&self) -> PathBuf {
        self.dir.join("archive")
    }

    /// Where the revision is unpacked.
    pub(crate) fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// Removes the staging directory (after a failure, or once promoted).
    pub(crate) fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.dir).map_err(|source| ArtifactError::RemoveLeftover {
            path: self.dir,
            source,
        })
    }
}

/// The right to work on one revision: held from the check of the cache to
/// the rename into it.
#[derive(Debug)]
pub(crate) struct RevisionLock {
    _local: OwnedMutexGuard<()>,
    _file: File,
}

/// This process's locks, one per revision being fetched. A revision's lock
/// is taken here first, so that fetches in this process wait on a mutex
/// (cancellably) and only one at a time blocks a thread on the lock file.
#[derive(Debug, Default)]
pub(crate) struct Locks {
    held: Mutex<HashMap<PathBuf, Weak<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    /// Waits for the revision's lock, in this process and then on its lock
    /// file (which a crashed holder releases by dying).
    pub(crate) async fn lock(&self, paths: &RevisionPaths) -> Result<RevisionLock> {
        let local = self.local(&paths.lock).lock_owned().await;
        let app_dir = paths.app_dir.clone();
        let lock = paths.lock.clone();
        let file = super::blocking(move || {
            fs::create_dir_all(&app_dir).map_err(|source| ArtifactError::CreateDir {
                path: app_dir.clone(),
                source,
            })?;
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock)
                .and_then(|file| {
                    // flock, as the provider's socket locks: the kernel
                    // drops it when its holder dies, however it dies.
                    flock(&file, FlockOperation::LockExclusive)?;
                    Ok(file)
                })
                .map_err(|source| ArtifactError::Lock { path: lock, source })?;
            Ok(file)
        })
        .await?;
        Ok(RevisionLock {
            _local: local,
            _file: file,
        })
    }

    fn local(&self, key: &Path) -> Arc<tokio::sync::Mutex<()>> {
        // The map holds only weak references; a panic elsewhere while it was
        // locked cannot have left it inconsistent, so a poisoned map is used.
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.retain(|_, lock| lock.strong_count() > 0);
        if let Some(lock) = held.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        held.insert(key.to_path_buf(), Arc::downgrade(&lock));
        lock
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::RevisionPaths;
    use visor_controllers::Name;

    #[test]
    fn the_cache_layout_keeps_its_own_files_apart_from_revisions() {
        let name = |value| Name::parse("name", value).expect("valid");
        let paths =
            RevisionPaths::new(Path::new("/data/artifacts"), &name("web"), &name("v1.json"));
        assert_eq!(paths.dir, Path::new("/data/artifacts/web/v1.json"));
        assert_eq!(paths.record, Path::new("/data/artifacts/web/.v1.json.json"));
        assert_eq!(paths.lock, Path::new("/data/artifacts/web/.v1.json.lock"));
        assert_eq!(paths.staging_prefix, ".v1.json.staging-");
    }
}
