//! `visor shim`: the supervisor of one instance, after Nomad's executor.
//!
//! The exec provider spawns it with an instance directory holding the
//! spec. It detaches into a session of its own, binds the control socket,
//! spawns the workload in a process group of its own, records `running`,
//! reports one line to the provider ([`Ready`](super::launch::Ready)), moves
//! the workload into a cgroup v2 of its own where the machine allows, then
//! serves the control socket until the workload ends: by itself, by a `stop` request, or by a
//! SIGTERM/SIGINT to the supervisor (which stops it). It records the exit
//! in the status file, answers who waited, removes its socket and exits.
//!
//! Invariants: the status file is written before any answer tells what it
//! says; the supervisor outlives its workload (it is the workload's parent,
//! so the workload's PID cannot be reused while it signals it); and no
//! process of the workload's group outlives the supervisor's record of the
//! exit.

mod logs;
mod server;
mod stop;
mod workload;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::instance_dir::{InstanceDir, InstanceDirError, Spec};
use super::launch::Ready;
use super::status::{Event, IllegalTransition, Status};
use crate::shutdown::Shutdown;
use crate::telemetry::Chain;
use stop::{Signalled, StopSignal};
use workload::Workload;

/// How long answers in flight may take once the exit is recorded.
const ANSWER_LIMIT: Duration = Duration::from_secs(2);

/// Why a supervisor failed.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// It could not start a session of its own.
    #[error("cannot detach into a session of its own")]
    Detach(#[source] std::io::Error),
    /// The instance directory could not be read or written.
    #[error(transparent)]
    Dir(#[from] InstanceDirError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// The control socket could not be bound.
    #[error("cannot bind the control socket {path}")]
    Bind {
        /// The socket's path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The workload could not be spawned.
    #[error("cannot spawn {command}")]
    Spawn {
        /// The program.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The workload's end could not be waited for.
    #[error("cannot wait for the workload")]
    Wait(#[source] std::io::Error),
    /// A change of status the state machine refuses (a bug).
    #[error(transparent)]
    Transition(#[from] IllegalTransition),
}

/// Supervises the instance whose directory is `dir`.
pub async fn run(dir: PathBuf) -> Result<(), ShimError> {
    rustix::process::setsid().map_err(|e| ShimError::Detach(e.into()))?;
    let dir = InstanceDir::at(dir);
    let started = start(&dir).await;
    let ready = match &started {
        Ok(started) => Ready::Started(started.status.clone()),
        Err(error) => Ready::Failed(Chain(error).to_string()),
    };
    announce(&ready);
    let started = started?;
    // Durable only now, so that the start did not wait for it: a crash of
    // the machine in between loses the record of a workload it ended too.
    if let Err(error) = dir.sync_status() {
        tracing::warn!(error = %Chain(&error), "cannot sync the status file");
    }
    supervise(&dir, started).await
}

/// Writes the report line; a provider that went away does not read it, which
/// changes nothing.
fn announce(ready: &Ready) {
    if let Ok(line) = serde_json::to_string(ready) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    }
}

/// A supervisor whose workload runs.
struct Started {
    spec: Spec,
    status: Status,
    listener: UnixListener,
    socket: OwnSocket,
    workload: Workload,
    shutdown: Shutdown,
}

async fn start(dir: &InstanceDir) -> Result<Started, ShimError> {
    let spec = dir.read_spec()?;
    let shutdown = Shutdown::install().map_err(ShimError::Signals)?;
    let path = dir.control_socket();
    let bind_error = |source| ShimError::Bind {
        path: path.clone(),
        source,
    };
    // A socket left by a killed supervisor of this instance.
    dir.clear_invocation()?;
    let listener = UnixListener::bind(&path).map_err(bind_error)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).map_err(bind_error)?;
    let socket = OwnSocket {
        ino: std::fs::metadata(&path).map_err(bind_error)?.ino(),
    };
    let workload = workload::spawn(&spec, dir).map_err(|source| ShimError::Spawn {
        command: spec.command.clone(),
        source,
    })?;
    let status = Status::running(
        &spec.instance,
        &spec.invocation,
        workload.pid,
        chrono::Utc::now(),
    );
    if let Err(error) = dir.write_start_status(&status) {
        // Unrecorded, it must not run.
        workload.group.signal(StopSignal::Kill);
        return Err(error.into());
    }
    tracing::info!(instance = %spec.instance, invocation = %spec.invocation, pid = workload.pid, "workload started");
    Ok(Started {
        spec,
        status,
        listener,
        socket,
        workload,
        shutdown,
    })
}

async fn supervise(dir: &InstanceDir, started: Started) -> Result<(), ShimError> {
    let Started {
        spec,
        status,
        listener,
        socket,
        workload,
        mut shutdown,
    } = started;
    let Workload {
        mut group,
        mut main,
        ..
    } = workload;
    group.enter_cgroup(&spec.instance, &spec.invocation);
    let (status_tx, status_rx) = watch::channel(status);
    let (stop_tx, mut stop_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(server::Shared {
        status: status_rx,
        stop: stop_tx,
    });
    let (tracker, token) = (TaskTracker::new(), CancellationToken::new());
    let server = tokio::spawn(server::serve(
        listener,
        shared,
        tracker.clone(),
        token.clone(),
    ));

    let mut ended = pin!(main.ended(&group));
    let kill_timeout = tokio::select! {
        ended = &mut ended => {
            let status = ended.map_err(ShimError::Wait)?;
            let serving = (server, tracker, token);
            return finish(dir, &status_tx, &group, status, socket, serving).await;
        }
        Some(kill_timeout) = stop_rx.recv() => kill_timeout.unwrap_or(spec.kill_timeout()),
        () = shutdown.requested() => spec.kill_timeout(),
    };
    tracing::info!(?kill_timeout, "stopping the workload");
    // Unrecorded, the stop goes on all the same: a workload must not outlive
    // a stop for want of a status file.
    if let Err(error) = record(dir, &status_tx, Event::Stopping) {
        tracing::warn!(error = %Chain(&error), "cannot record the stop");
    }
    let (status, how) = stop::stop(&group, &mut ended, kill_timeout).await;
    tracing::info!(?how, "workload stopped");
    let status = status.map_err(ShimError::Wait)?;
    let serving = (server, tracker, token);
    finish(dir, &status_tx, &group, status, socket, serving).await
}

/// The control socket this supervisor bound, by inode: once its workload
/// exited, a new invocation's supervisor may have bound the same path.
struct OwnSocket {
    ino: u64,
}

impl OwnSocket {
    /// Removes the socket at `path` if it is still this one.
    fn remove(&self, path: &std::path::Path) {
        if std::fs::metadata(path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Records the exit, lets the answers in flight go out, and cleans up.
async fn finish(
    dir: &InstanceDir,
    status_tx: &watch::Sender<Status>,
    group: &workload::Group,
    status: std::process::ExitStatus,
    socket: OwnSocket,
    (server, tracker, token): (tokio::task::JoinHandle<()>, TaskTracker, CancellationToken),
) -> Result<(), ShimError> {
    let exit = workload::exit(status, chrono::Utc::now());
    tracing::info!(code = ?exit.code, signal = ?exit.signal, "workload exited");
    let recorded = record(dir, status_tx, Event::Exited(exit));
    token.cancel();
    let _ = server.await;
    tracker.close();
    if tokio::time::timeout(ANSWER_LIMIT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(?ANSWER_LIMIT, "control connections still open at exit");
    }
    socket.remove(&dir.control_socket());
    if let Some(cgroup) = group.cgroup() {
        cgroup.kill_and_remove().await;
    }
    recorded
}

/// Writes the status after `event`, then tells the control connections.
/// An answer never says what the file does not: the status is published
/// only once written, except the exit, which is published regardless (so
/// whoever waits hears it) and fails the supervisor afterwards.
fn record(
    dir: &InstanceDir,
    status_tx: &watch::Sender<Status>,
    event: Event,
) -> Result<(), ShimError> {
    let next = status_tx.borrow().apply(event)?;
    let written = dir.write_status(&next);
    match (&written, event) {
        (Ok(()), _) | (Err(_), Event::Exited(_)) => {
            status_tx.send_replace(next);
        }
        (Err(_), Event::Stopping) => {}
    }
    written.map_err(ShimError::from)
}
