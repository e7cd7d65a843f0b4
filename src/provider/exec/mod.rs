//! The exec provider, built in: the tasks a host agent needs to run an
//! instance as a plain process, each instance under a supervisor of its own
//! (`visor shim`, the same binary) so that the agent or the provider can
//! crash and restart while the workload keeps running.
//!
//! Tasks: `instance.start`, `instance.stop`, `instance.status`,
//! `instance.wait`, `instance.attach` ([`instance`] is their contract,
//! `docs/providers.md` documents it), and `artifact.fetch` and `hook.run`
//! ([`artifact`], [`hook`]): a revision unpacked once into
//! `<data_dir>/artifacts/<app>/<revision>/`, and its hooks run from there.
//! State lives under `<data_dir>/instances/<instance>/` ([`instance_dir`]);
//! [`output`] reads an instance's rotated output files (the agent serves
//! them as `/logs`).
//!
//! Invariants: the provider never signals a process itself, only asks the
//! instance's supervisor, which answers only a caller presenting the
//! instance id and the invocation id it was started with (PIDs are reused,
//! invocation ids are not); and a provider keeps no state an instance needs:
//! a new provider on the same data dir finds every instance again.

pub mod artifact;
pub mod cgroup;
mod control;
pub mod hook;
pub mod instance;
mod instance_dir;
mod instance_error;
mod instance_tasks;
mod launch;
pub mod output;
pub mod shim;
mod status;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use artifact::{ArtifactConfig, ArtifactStore};
use hook::{HookConfig, HookRunner};

use super::Provider;

pub use instance_dir::LogLimits;
pub use instance_error::InstanceError;
pub use instance_tasks::Instances;
pub use status::{Exit, State};

/// The exec provider's configuration: where its state lives and which
/// program supervises instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecProvider {
    data_dir: PathBuf,
    supervisor: PathBuf,
}

impl ExecProvider {
    /// The exec provider keeping its state under `data_dir` (taken from the
    /// working directory if relative), supervising instances with this very
    /// program (`visor`).
    pub fn new(data_dir: impl Into<PathBuf>) -> Result<Self, InstanceError> {
        let data_dir = data_dir.into();
        let data_dir = std::path::absolute(&data_dir).map_err(|source| InstanceError::DataDir {
            path: data_dir,
            source,
        })?;
        let supervisor = std::env::current_exe().map_err(|source| InstanceError::Supervisor {
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        Ok(Self {
            data_dir,
            supervisor,
        })
    }

    /// Supervises instances with `program` (a `visor` binary) instead: for
    /// a provider embedded in another program.
    #[must_use]
    pub fn with_supervisor(mut self, program: impl Into<PathBuf>) -> Self {
        self.supervisor = program.into();
        self
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The instance tasks.
    pub fn instances(&self) -> Instances {
        Instances::new(&self.data_dir, &self.supervisor)
    }
}

/// Registers the exec provider's tasks with `provider`.
pub fn register(provider: Provider, exec: &ExecProvider) -> Provider {
    register_local(provider, exec).0
}

/// The exec provider's task state, shared by its sockets and by the
/// program serving them: a program that serves the exec provider itself
/// (the agent) may call it in process, with the same per-instance locks.
#[derive(Debug, Clone)]
pub struct LocalTasks {
    /// The instance tasks.
    pub instances: Arc<Instances>,
    /// `artifact.fetch`.
    pub artifacts: Arc<ArtifactStore>,
}

/// [`register`], also returning the tasks' state for in-process calls.
pub fn register_local(provider: Provider, exec: &ExecProvider) -> (Provider, LocalTasks) {
    let instances = Arc::new(exec.instances());
    let artifacts = ArtifactStore::new(ArtifactConfig::new(exec.data_dir()));
    let hooks = Arc::new(HookRunner::new(artifacts.clone(), HookConfig::default()));
    let artifacts = Arc::new(artifacts);
    let local = LocalTasks {
        instances: Arc::clone(&instances),
        artifacts: Arc::clone(&artifacts),
    };
    let provider = provider
        .task(
            "instance.start",
            on(&instances, |i, a| async move { i.start(a).await }),
        )
        .task(
            "instance.stop",
            on(&instances, |i, a| async move { i.stop(a).await }),
        )
        .task(
            "instance.status",
            on(&instances, |i, a| async move { i.status(a).await }),
        )
        .task(
            "instance.wait",
            on(&instances, |i, a| async move { i.wait(a).await }),
        )
        .task(
            "instance.attach",
            on(&instances, |i, a| async move { i.attach(a).await }),
        )
        .task(
            "artifact.fetch",
            on(&artifacts, |s, a| async move { s.fetch(a).await }),
        )
        .task("hook.run", on(&hooks, |h, a| async move { h.run(a).await }));
    (provider, local)
}

/// A task handler running `task` on a shared `state`.
fn on<S, A, Fut>(
    state: &Arc<S>,
    task: impl Fn(Arc<S>, A) -> Fut + Send + Sync + 'static,
) -> impl Fn(A) -> Fut + Send + Sync + 'static
where
    S: Send + Sync + 'static,
{
    let state = Arc::clone(state);
    move |args| task(Arc::clone(&state), args)
}
