//! Starting an instance's supervisor: `visor shim --dir <instance dir>`,
//! spawned by the provider, which reads one line from it saying whether the
//! workload runs.
//!
//! Invariants: the provider reaps every supervisor it spawned (a task waits
//! for each), so none is left a zombie while the provider lives; and the
//! supervisor's session is its own (it calls `setsid` first), so a provider
//! that dies, however it dies, leaves it and its workload running.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::instance_dir::InstanceDir;
use super::status::Status;

/// The one line a supervisor writes on its stdout once it started, or failed
/// to start, the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ready {
    /// The workload runs, as recorded.
    Started(Status),
    /// Nothing runs: why (the whole error chain).
    Failed(String),
}

/// Why a supervisor did not report a running workload.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The supervisor's log could not be opened.
    #[error("cannot open the supervisor's log {path}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The supervisor could not be spawned.
    #[error("cannot spawn the supervisor {program}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The supervisor reported that the workload could not start.
    #[error("the workload did not start: {0}")]
    Failed(String),
    /// The supervisor ended or wrote something else than its report; its log
    /// says why.
    #[error("the supervisor ended without a report (see {log})")]
    NoReport {
        /// The supervisor's log.
        log: PathBuf,
        /// The cause, when reading failed.
        #[source]
        source: Option<io::Error>,
    },
    /// The supervisor did not report within the time allowed; it may still.
    #[error("the supervisor did not report within {limit:?} (see {log})")]
    Timeout {
        /// The time allowed.
        limit: Duration,
        /// The supervisor's log.
        log: PathBuf,
    },
}

/// Spawns `program shim --dir <dir>` and returns the status it reports,
/// allowing it `limit`.
pub async fn launch(
    program: &Path,
    dir: &InstanceDir,
    limit: Duration,
) -> Result<Status, LaunchError> {
    let log = dir.shim_log();
    let stderr = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|source| LaunchError::Log {
            path: log.clone(),
            source,
        })?;
    let mut child = Command::new(program)
        .arg("shim")
        .arg("--dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|source| LaunchError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    let stdout = child.stdout.take();
    // Reaped whenever it ends, report or not.
    tokio::spawn(async move {
        if let Err(error) = child.wait().await {
            tracing::warn!(%error, "cannot reap an instance supervisor");
        }
    });
    let Some(stdout) = stdout else {
        return Err(LaunchError::NoReport { log, source: None });
    };
    let mut line = String::new();
    let mut stdout = BufReader::new(stdout);
    let read = stdout.read_line(&mut line);
    match tokio::time::timeout(limit, read).await {
        Err(_) => return Err(LaunchError::Timeout { limit, log }),
        Ok(Err(source)) => {
            return Err(LaunchError::NoReport {
                log,
                source: Some(source),
            });
        }
        Ok(Ok(_)) => {}
    }
    match serde_json::from_str(&line) {
        Ok(Ready::Started(status)) => Ok(status),
        Ok(Ready::Failed(reason)) => Err(LaunchError::Failed(reason)),
        Err(_) => Err(LaunchError::NoReport { log, source: None }),
    }
}
