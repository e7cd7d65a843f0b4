//! The lock beside each socket, which tells a live owner from a dead one: the
//! owner holds an exclusive `flock` on it for as long as it serves, and the
//! kernel drops the lock when the owner dies, however it dies.
//!
//! `flock` (through rustix's safe wrapper; the crate forbids unsafe code) and
//! not POSIX record locks: a record lock is dropped when the process closes
//! *any* descriptor of the file, so a caller probing a lock in the provider's
//! own process would release it.
//!
//! Invariants: an [`OwnerLock`] is only handed out for the file at its path
//! (not one its previous owner already unlinked); probing never blocks.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;

/// What a socket's lock says of its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// Its owner holds the lock: it is serving.
    Live,
    /// The lock exists and nobody holds it: its owner died (a crash leaves
    /// both files behind). Not dialled.
    Stale,
    /// There is no lock to read (a provider that does not keep one, as
    /// acomm's do not): only dialling tells.
    Unlocked,
}

impl std::fmt::Display for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Liveness::Live => "live",
            Liveness::Stale => "stale",
            Liveness::Unlocked => "unlocked",
        })
    }
}

/// Reads a lock without taking it for longer than the probe; a lock that
/// cannot be read (missing, not permitted) is [`Liveness::Unlocked`].
pub fn probe(path: &Path) -> Liveness {
    let Ok(file) = File::open(path) else {
        return Liveness::Unlocked;
    };
    // A shared lock conflicts only with the owner's exclusive one; it is
    // released when `file` closes, at the end of this function.
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Liveness::Stale,
        Err(Errno::WOULDBLOCK) => Liveness::Live,
        Err(_) => Liveness::Unlocked,
    }
}

/// An exclusive lock on a socket's lock file, held while its socket serves.
#[derive(Debug)]
pub struct OwnerLock {
    /// Keeps the lock: the kernel drops it when this closes.
    file: File,
    path: PathBuf,
}

/// The outcome of trying to take a lock.
#[derive(Debug)]
pub enum Acquire {
    /// Taken: nobody else holds it.
    Taken(OwnerLock),
    /// Someone holds it: a live owner, or (for an instant) a prober.
    Held,
}

impl OwnerLock {
    /// Takes the lock at `path`, creating the file (mode 0660) if needed,
    /// without waiting.
    pub fn try_acquire(path: &Path) -> io::Result<Acquire> {
        // A previous owner unlinks its lock file on stop: a lock taken on the
        // unlinked file protects nothing, so it is taken again on the new one.
        // Each retry means another owner stopped in between; a few suffice.
        for _ in 0..8 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o660)
                .open(path)?;
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(Errno::WOULDBLOCK) => return Ok(Acquire::Held),
                Err(errno) => return Err(errno.into()),
            }
            let held = file.metadata()?;
            match fs::metadata(path) {
                Ok(on_disk) if on_disk.dev() == held.dev() && on_disk.ino() == held.ino() => {
                    return Ok(Acquire::Taken(OwnerLock {
                        file,
                        path: path.to_owned(),
                    }));
                }
                Ok(_) => continue,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            }
        }
        Ok(Acquire::Held)
    }

    /// Unlinks the lock file, then releases the lock (in that order, so that
    /// nobody takes the lock on a file about to vanish and believes it owns
    /// the path).
    pub fn release(self) -> io::Result<()> {
        let removed = match fs::remove_file(&self.path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        };
        drop(self.file);
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_live_a_released_one_gone_and_a_left_one_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("50-p.lock");
        assert_eq!(probe(&path), Liveness::Unlocked);

        let Acquire::Taken(lock) = OwnerLock::try_acquire(&path).expect("acquire") else {
            panic!("a fresh lock is free");
        };
        assert_eq!(probe(&path), Liveness::Live);
        assert!(matches!(
            OwnerLock::try_acquire(&path).expect("second acquire"),
            Acquire::Held
        ));
        lock.release().expect("release");
        assert!(!path.exists(), "release unlinks the lock file");

        // What a crash leaves: the file, and no holder.
        let Acquire::Taken(crashed) = OwnerLock::try_acquire(&path).expect("acquire") else {
            panic!("a released lock is free");
        };
        drop(crashed);
        assert_eq!(probe(&path), Liveness::Stale);
        assert!(matches!(
            OwnerLock::try_acquire(&path).expect("recover"),
            Acquire::Taken(_)
        ));
    }

    #[test]
    fn a_lock_file_is_created_0660() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("1-p.lock");
        let _lock = OwnerLock::try_acquire(&path).expect("acquire");
        let mode = fs::metadata(&path).expect("stat").mode() & 0o777;
        // The process umask may only take bits away.
        assert_eq!(mode & !0o660, 0, "{mode:o}");
    }
}
