//! Reading an instance's output as the supervisor leaves it: the rotated
//! files of its stdout or stderr under `<data_dir>/instances/<instance>/logs/`,
//! the last N lines across rotations, and then, when following, what is
//! written next, through further rotations.
//!
//! Nothing here writes: the supervisor owns the files ([`shim`](super::shim)
//! writes and rotates them). Invariant: an instance is found only by its
//! validated id (a registry name), so a caller's id never reaches outside
//! the instances directory.

mod files;
mod reader;
mod tail;

use std::io;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;
use visor_controllers::Name;

use super::instance_dir::InstanceDir;
use files::Snapshot;
use tail::Position;

pub use reader::OutputReader;

/// One of an instance's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// The workload's standard output.
    Stdout,
    /// The workload's standard error.
    Stderr,
}

impl OutputStream {
    /// Its name: `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// How much of a stream to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Only the last N lines of what is kept; all of it when `None`.
    pub tail: Option<u64>,
    /// Go on with what is written next.
    pub follow: bool,
}

/// Why an instance's output could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// No instance of that id has a directory on this host.
    #[error("no instance {instance} on this host")]
    NoInstance {
        /// The instance id.
        instance: Name,
    },
    /// The instance's directory could not be looked at.
    #[error("cannot read {}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The stream's files could not be opened or read.
    #[error("cannot read the {stream} files at {}", path.display())]
    Files {
        /// The stream.
        stream: &'static str,
        /// Its current file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The output of one instance on this host.
#[derive(Debug, Clone)]
pub struct InstanceOutput {
    dir: InstanceDir,
}

impl InstanceOutput {
    /// The output of `instance` under `instances_dir` (the exec provider's
    /// `<data_dir>/instances`); [`OutputError::NoInstance`] when the
    /// instance has no directory there.
    pub fn find(instances_dir: &Path, instance: &Name) -> Result<Self, OutputError> {
        let dir = InstanceDir::at(instances_dir.join(instance.as_str()));
        match std::fs::metadata(dir.path()) {
            Ok(metadata) if metadata.is_dir() => Ok(Self { dir }),
            Ok(_) => Err(OutputError::NoInstance {
                instance: instance.clone(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(OutputError::NoInstance {
                instance: instance.clone(),
            }),
            Err(source) => Err(OutputError::Dir {
                path: dir.path().to_owned(),
                source,
            }),
        }
    }

    /// The current file of `stream`.
    pub fn current_file(&self, stream: OutputStream) -> PathBuf {
        match stream {
            OutputStream::Stdout => self.dir.stdout_log(),
            OutputStream::Stderr => self.dir.stderr_log(),
        }
    }

    /// Opens `stream` now and reads it as `options` say; a follower ends
    /// when `stop` is cancelled. A stream without files yet reads empty
    /// (and, when following, starts with its first file).
    pub async fn read(
        &self,
        stream: OutputStream,
        options: ReadOptions,
        stop: CancellationToken,
    ) -> Result<OutputReader, OutputError> {
        let path = self.current_file(stream);
        let error = |path: &Path| {
            let path = path.to_owned();
            move |source| OutputError::Files {
                stream: stream.as_str(),
                path,
                source,
            }
        };
        let opened = {
            let path = path.clone();
            // Opening and the backward scan for the tail read files: off the
            // runtime's threads, since a long tail reads much.
            tokio::task::spawn_blocking(move || -> io::Result<_> {
                let snapshot = Snapshot::open(&path)?;
                let start = match options.tail {
                    Some(lines) => tail::start_of_last_lines(&snapshot.files, lines)?,
                    None => Position::START,
                };
                Ok((snapshot, start))
            })
            .await
            .map_err(io::Error::other)
            .and_then(|opened| opened)
        };
        let (snapshot, start) = opened.map_err(error(&path))?;
        let follow = options.follow.then_some(path);
        Ok(OutputReader::new(snapshot, start, follow, stop))
    }
}

#[cfg(test)]
mod tests;
