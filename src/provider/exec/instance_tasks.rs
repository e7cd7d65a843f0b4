//! The instance tasks: `instance.start`, `.stop`, `.status`, `.wait` and
//! `.attach`, as typed async functions over the contract's arguments.
//!
//! Each task asks the instance's supervisor over its control socket and
//! falls back to the status file when none answers, through one decision
//! ([`observe`]). Invariants: `instance.start` is idempotent per invocation
//! (the same invocation is never started twice: while it runs, and after it
//! ended, start reports it) and refuses a new invocation while another may
//! still run; one start per instance runs at a time in a provider; and
//! every task is bounded in time (by the request's own timeouts plus a
//! margin), so none outlives the framework's task timeout when its
//! arguments stay below it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use visor_controllers::Name;

use super::cgroup::Cgroup;
use super::control::{self, Op};
use super::instance::{
    DEFAULT_KILL_TIMEOUT, InstanceArgs, InstanceStatus, StartArgs, StopArgs, WaitArgs,
};
use super::instance_dir::{InstanceDir, LogLimits, Spec};
use super::instance_error::{InstanceError, Result};
use super::launch;
use super::status::{Observed, State, observe};

/// How long a supervisor may take to answer a status.
const STATUS_LIMIT: Duration = Duration::from_secs(5);
/// How long a supervisor may take to report its start.
const START_LIMIT: Duration = Duration::from_secs(10);
/// What a supervisor may take beyond a request's own timeout to answer it
/// (after SIGKILL, a workload still takes a moment to be reaped).
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// The instance tasks of one provider: instances under
/// `<data_dir>/instances/`, supervised by `<supervisor> shim`.
#[derive(Debug)]
pub struct Instances {
    data_dir: PathBuf,
    supervisor: PathBuf,
    /// One start at a time per instance.
    starts: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Instances {
    /// Instances under `data_dir`, supervised by the program `supervisor`
    /// (the `visor` binary).
    pub fn new(data_dir: impl Into<PathBuf>, supervisor: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            supervisor: supervisor.into(),
            starts: Mutex::new(HashMap::new()),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `instance.start`.
    pub async fn start(&self, args: StartArgs) -> Result<InstanceStatus> {
        let spec = spec(args)?;
        let dir = self.dir(&spec.instance)?;
        let lock = self.start_lock(&spec.instance);
        let _started = lock.lock().await;
        match self
            .observe(
                &dir,
                &spec.instance,
                &spec.invocation,
                Op::Status,
                STATUS_LIMIT,
            )
            .await?
        {
            // This invocation was started: report it, never start it twice.
            Observed::Status(status) => return Ok(InstanceStatus::new(status, &dir)),
            Observed::Other {
                invocation,
                live: true,
            } => {
                return Err(InstanceError::AlreadyRunning {
                    instance: spec.instance,
                    running: invocation,
                });
            }
            Observed::Other { .. } | Observed::Unknown => {}
        }
        dir.create()?;
        // A lost invocation's workload may still run where its supervisor
        // was killed: its cgroup, if any, goes before a replacement starts.
        if let Some(lost) = dir.read_status()?.filter(|lost| lost.is_live())
            && let Some(cgroup) = Cgroup::existing(&lost.instance, &lost.invocation)
        {
            tracing::warn!(instance = %lost.instance, invocation = %lost.invocation, "killing what is left of a lost invocation");
            cgroup.kill_and_remove().await;
        }
        dir.clear_invocation()?;
        dir.write_spec(&spec)?;
        let status = launch::launch(&self.supervisor, &dir, START_LIMIT)
            .await
            .map_err(|source| InstanceError::Launch {
                instance: spec.instance.clone(),
                source,
            })?;
        Ok(InstanceStatus::new(status, &dir))
    }

    /// `instance.stop`: SIGTERM, the kill timeout, SIGKILL; answers with the
    /// exit. Stopping an invocation that ended reports how it ended; a lost
    /// one stays lost (its exit is unknown), and its cgroup, where it has
    /// one, is killed.
    pub async fn stop(&self, args: StopArgs) -> Result<InstanceStatus> {
        let dir = self.dir(&args.instance)?;
        // The kill timeout the invocation was started with, when the caller
        // gives none: the spec says it (if the spec is another
        // invocation's, the supervisor refuses anyway).
        let started_with = match dir.read_spec() {
            Ok(spec) => spec.kill_timeout(),
            Err(_) => DEFAULT_KILL_TIMEOUT,
        };
        let limit = args.kill_timeout.unwrap_or(started_with);
        let op = Op::Stop {
            kill_timeout_ms: args.kill_timeout.map(millis),
        };
        let status = self
            .report(&args.instance, &args.invocation, op, limit + ANSWER_MARGIN)
            .await?;
        // Without a supervisor, what may be left of a lost workload is found
        // by its cgroup alone (never by a PID).
        if status.state == State::Lost
            && let Some(cgroup) = Cgroup::existing(&status.instance, &status.invocation)
        {
            tracing::warn!(instance = %status.instance, invocation = %status.invocation, "killing what is left of a lost invocation");
            cgroup.kill_and_remove().await;
        }
        Ok(status)
    }

    /// `instance.status`.
    pub async fn status(&self, args: InstanceArgs) -> Result<InstanceStatus> {
        self.report(&args.instance, &args.invocation, Op::Status, STATUS_LIMIT)
            .await
    }

    /// `instance.wait`: the exit, or the status at `timeout`.
    pub async fn wait(&self, args: WaitArgs) -> Result<InstanceStatus> {
        let op = Op::Wait {
            timeout_ms: millis(args.timeout),
        };
        let limit = args.timeout + ANSWER_MARGIN;
        self.report(&args.instance, &args.invocation, op, limit)
            .await
    }

    /// The invocation last started of `instance` under this data dir, as
    /// its status file says: for a caller that lost its own record of it.
    pub fn recorded_invocation(&self, instance: &str) -> Option<String> {
        let dir = self.dir(instance).ok()?;
        Some(dir.read_status().ok()??.invocation)
    }

    /// `instance.attach`: after a restart of the caller (or of the
    /// provider), finds the instance's supervisor by its directory and
    /// reports the invocation, refusing any other invocation than the one
    /// presented. The same answer as `instance.status`, for the same
    /// arguments: the supervisor, not the provider, holds the instance.
    pub async fn attach(&self, args: InstanceArgs) -> Result<InstanceStatus> {
        self.status(args).await
    }

    async fn report(
        &self,
        instance: &str,
        invocation: &str,
        op: Op,
        limit: Duration,
    ) -> Result<InstanceStatus> {
        Name::parse("invocation", invocation)?;
        let dir = self.dir(instance)?;
        match self.observe(&dir, instance, invocation, op, limit).await? {
            Observed::Status(status) => Ok(InstanceStatus::new(status, &dir)),
            Observed::Other {
                invocation: actual, ..
            } => Err(InstanceError::OtherInvocation {
                instance: instance.to_owned(),
                presented: invocation.to_owned(),
                actual,
            }),
            Observed::Unknown => Err(InstanceError::NotFound {
                instance: instance.to_owned(),
            }),
        }
    }

    async fn observe(
        &self,
        dir: &InstanceDir,
        instance: &str,
        invocation: &str,
        op: Op,
        limit: Duration,
    ) -> Result<Observed> {
        let answer = control::ask(dir, instance, invocation, op, limit).await?;
        // Read after asking: a supervisor gone meanwhile wrote its exit first.
        let file = dir.read_status()?;
        Ok(observe(invocation, answer, file))
    }

    fn dir(&self, instance: &str) -> Result<InstanceDir> {
        let instance = Name::parse("instance", instance)?;
        Ok(InstanceDir::new(&self.data_dir, &instance))
    }

    fn start_lock(&self, instance: &str) -> Arc<tokio::sync::Mutex<()>> {
        // Poisoned only by a panic while inserting, which leaves the map whole.
        let mut starts = self.starts.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(starts.entry(instance.to_owned()).or_default())
    }
}

/// The supervisor's spec for `args`, validated.
fn spec(args: StartArgs) -> Result<Spec> {
    Name::parse("instance", &args.instance)?;
    Name::parse("invocation", &args.invocation)?;
    let invalid = |field, reason: &str| InstanceError::InvalidArg {
        field,
        reason: reason.to_owned(),
    };
    if args.command.is_empty() {
        return Err(invalid("command", "must not be empty"));
    }
    if let Some(dir) = &args.working_dir
        && !dir.is_absolute()
    {
        return Err(invalid("working_dir", "must be an absolute path"));
    }
    for key in args.env.keys() {
        if key.is_empty() || key.contains(['=', '\0']) {
            return Err(InstanceError::InvalidArg {
                field: "env",
                reason: format!("{key:?} is not a variable name"),
            });
        }
    }
    let logs = match args.logs {
        None => LogLimits::default(),
        Some(logs) if logs.max_bytes == 0 => {
            return Err(invalid("logs.max_bytes", "must be at least 1"));
        }
        Some(logs) if logs.keep == 0 => return Err(invalid("logs.keep", "must be at least 1")),
        Some(logs) => LogLimits {
            max_bytes: logs.max_bytes,
            keep: logs.keep,
        },
    };
    Ok(Spec {
        instance: args.instance,
        invocation: args.invocation,
        command: args.command,
        args: args.args,
        env: args.env,
        working_dir: args.working_dir,
        kill_timeout_ms: millis(args.kill_timeout.unwrap_or(DEFAULT_KILL_TIMEOUT)),
        logs,
    })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
