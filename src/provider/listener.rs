//! A unix socket owned for as long as it listens: a task's socket for a
//! provider, a response hook for a caller, set up one way for both.
//!
//! Binding takes the lock beside the socket first; holding it proves any
//! socket file already at the path is stale (its owner died without removing
//! it), so it is replaced. Directories are created 0750 and sockets set to
//! 0660: the owner's group may call, nobody else.
//!
//! Invariants: an [`OwnedSocket`] holds its lock while it exists; dropping it
//! removes the socket file, then the lock file, then releases the lock.

use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

use super::layout::{MAX_SOCKET_PATH, SocketPaths};
use super::lock::{Acquire, OwnerLock};

/// Mode of the directories the framework creates.
const DIR_MODE: u32 = 0o750;
/// Mode of the sockets it binds.
const SOCKET_MODE: u32 = 0o660;
/// How often a held lock is tried again before its holder is taken for a
/// live owner: a caller probing a lock holds it for microseconds, a live
/// owner for good. Tries are 1, 2, 4, … ms apart (255 ms in all).
const LOCK_TRIES: u32 = 8;

/// A listening socket and the lock that makes it this process's.
#[derive(Debug)]
pub struct OwnedSocket {
    listener: UnixListener,
    paths: SocketPaths,
    lock: Option<OwnerLock>,
}

impl OwnedSocket {
    /// Takes the lock at `paths.lock`, replaces a stale socket, binds
    /// `paths.socket` (0660) and listens; creates the directory (0750) if
    /// needed. Also says whether a stale socket was replaced.
    pub async fn bind(paths: SocketPaths) -> Result<(Self, bool), BindError> {
        if paths.socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(BindError::TooLong {
                path: paths.socket,
                max: MAX_SOCKET_PATH,
            });
        }
        if let Some(dir) = paths.socket.parent() {
            create_dir(dir)?;
        }
        let lock = take_lock(&paths).await?;
        let stale = match fs::remove_file(&paths.socket) {
            Ok(()) => true,
            Err(error) if error.kind() == io::ErrorKind::NotFound => false,
            Err(source) => {
                return Err(BindError::RemoveStale {
                    path: paths.socket,
                    source,
                });
            }
        };
        let listener = UnixListener::bind(&paths.socket).map_err(|source| BindError::Bind {
            path: paths.socket.clone(),
            source,
        })?;
        // From here on, dropping `socket` cleans up whatever fails next.
        let socket = OwnedSocket {
            listener,
            paths,
            lock: Some(lock),
        };
        fs::set_permissions(&socket.paths.socket, Permissions::from_mode(SOCKET_MODE)).map_err(
            |source| BindError::Permissions {
                path: socket.paths.socket.clone(),
                source,
            },
        )?;
        Ok((socket, stale))
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.paths.socket
    }

    /// The next connection.
    pub async fn accept(&self) -> io::Result<UnixStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }
}

impl Drop for OwnedSocket {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_file(&self.paths.socket)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(socket = %self.paths.socket.display(), %error, "cannot remove socket");
        }
        if let Some(lock) = self.lock.take()
            && let Err(error) = lock.release()
        {
            tracing::warn!(lock = %self.paths.lock.display(), %error, "cannot remove lock file");
        }
    }
}

async fn take_lock(paths: &SocketPaths) -> Result<OwnerLock, BindError> {
    let mut delay = Duration::from_millis(1);
    for _ in 0..LOCK_TRIES {
        match OwnerLock::try_acquire(&paths.lock) {
            Ok(Acquire::Taken(lock)) => return Ok(lock),
            Ok(Acquire::Held) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(source) => {
                return Err(BindError::Lock {
                    path: paths.lock.clone(),
                    source,
                });
            }
        }
    }
    Err(BindError::Held {
        socket: paths.socket.clone(),
    })
}

/// Creates `dir` and its missing ancestors, each 0750 whatever the umask;
/// directories that exist keep their mode.
pub fn create_dir(dir: &Path) -> Result<(), BindError> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let failed = |path: &Path, source| BindError::CreateDir {
        path: path.to_owned(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| failed(dir, source))?;
    for created in missing {
        fs::set_permissions(created, Permissions::from_mode(DIR_MODE))
            .map_err(|source| failed(created, source))?;
    }
    Ok(())
}

/// Why a socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The path is longer than a unix socket address holds.
    #[error("socket path {} is longer than {max} bytes: choose a shorter socket_dir", path.display())]
    TooLong {
        /// The path.
        path: PathBuf,
        /// The longest path allowed.
        max: usize,
    },
    /// A directory could not be created.
    #[error("cannot create directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The lock could not be taken for a reason other than its holder.
    #[error("cannot lock {}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A live owner holds the lock: the socket is served already.
    #[error("{} is served by a live owner (its lock is held)", socket.display())]
    Held {
        /// The socket.
        socket: PathBuf,
    },
    /// A stale socket could not be removed.
    #[error("cannot remove stale socket {}", path.display())]
    RemoveStale {
        /// The socket.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The socket could not be bound.
    #[error("cannot listen on {}", path.display())]
    Bind {
        /// The socket.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The socket's mode could not be set.
    #[error("cannot set the permissions of {}", path.display())]
    Permissions {
        /// The socket.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::layout::Layout;
    use crate::provider::lock::{Liveness, probe};
    use std::os::unix::fs::MetadataExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").mode() & 0o777
    }

    #[tokio::test]
    async fn a_socket_is_bound_0660_in_directories_created_0750_and_removed_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path().join("a/providers"));
        let paths = layout.socket("instance.start", 50, "exec");
        let (socket, stale) = OwnedSocket::bind(paths.clone()).await.expect("bind");
        assert!(!stale);
        assert_eq!(mode(&paths.socket), SOCKET_MODE);
        for created in [
            dir.path().join("a"),
            layout.root().into(),
            layout.task_dir("instance.start"),
        ] {
            assert_eq!(mode(&created), DIR_MODE, "{}", created.display());
        }
        assert_eq!(probe(&paths.lock), Liveness::Live);
        let second = OwnedSocket::bind(paths.clone())
            .await
            .expect_err("served already");
        assert!(matches!(second, BindError::Held { .. }), "{second:?}");
        drop(socket);
        assert!(!paths.socket.exists() && !paths.lock.exists());
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = Layout::new(dir.path()).socket("t", 1, "p");
        create_dir(paths.socket.parent().expect("task dir")).expect("dir");
        // What a crashed owner leaves: a socket nobody listens on, an unheld lock.
        drop(std::os::unix::net::UnixListener::bind(&paths.socket).expect("bind"));
        drop(OwnerLock::try_acquire(&paths.lock).expect("lock"));
        assert_eq!(probe(&paths.lock), Liveness::Stale);
        let (socket, stale) = OwnedSocket::bind(paths.clone()).await.expect("recover");
        assert!(stale);
        assert_eq!(probe(&paths.lock), Liveness::Live);
        UnixStream::connect(socket.path())
            .await
            .expect("the new socket listens");
    }

    #[tokio::test]
    async fn a_path_too_long_for_a_socket_address_is_refused() {
        let paths = Layout::new(format!("/tmp/{}", "x".repeat(100))).socket("t", 1, "p");
        let error = OwnedSocket::bind(paths).await.expect_err("too long");
        assert!(matches!(error, BindError::TooLong { .. }), "{error:?}");
    }
}
