//! The provider tasks the agent drives an instance with, typed: every call
//! goes through the one [`Caller`], so a provider with a higher priority
//! than the built-in exec provider takes over a task without the agent
//! knowing.
//!
//! When the best provider of a task is the exec provider this very process
//! serves, the task is called in process (the same state its socket serves,
//! without the round trips of a request, its ack and its response).
//!
//! Invariant: a task's failure is returned with the task's name and the
//! provider's own message, which becomes the instance's `reason`, whichever
//! way it was called.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::provider::exec::LocalTasks;
use crate::provider::exec::artifact::{FetchArgs, Fetched};
use crate::provider::exec::instance::{
    InstanceArgs, InstanceStatus, StartArgs, StopArgs, WaitArgs,
};
use crate::provider::{CallError, Caller, Ending, Liveness};
use crate::telemetry::Chain;

/// What the answer to a request leaves room for beyond its own timeouts.
const MARGIN: Duration = Duration::from_secs(10);
/// How long an artifact may take to fetch and unpack.
const FETCH_LIMIT: Duration = Duration::from_secs(600);

/// A task that did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// No provider took the request.
    #[error("{task}: {}", Chain(source))]
    Call {
        /// The task.
        task: &'static str,
        /// Why.
        source: CallError,
    },
    /// The provider ran it and it failed.
    #[error("{task} failed: {message}")]
    Failed {
        /// The task.
        task: &'static str,
        /// The provider's message.
        message: String,
    },
    /// No response came in time.
    #[error("{task}: no response within {}", humantime::format_duration(*limit))]
    TimedOut {
        /// The task.
        task: &'static str,
        /// How long it was given.
        limit: Duration,
    },
    /// The response is not the task's result.
    #[error("{task}: the provider's result does not read: {message}")]
    BadResult {
        /// The task.
        task: &'static str,
        /// Why.
        message: String,
    },
}

/// The exec provider served by this process, under its provider name.
#[derive(Debug, Clone)]
pub struct Local {
    /// Its provider name (its sockets' `<priority>-<name>.sock`).
    pub name: String,
    /// Its tasks' state.
    pub tasks: LocalTasks,
}

/// The instance tasks, over a caller.
#[derive(Debug, Clone)]
pub struct Tasks {
    caller: Caller,
    local: Option<Local>,
}

impl Tasks {
    /// Tasks sent through `caller`, or to `local` when it is the best
    /// provider of a task.
    pub fn new(caller: Caller, local: Option<Local>) -> Self {
        Self { caller, local }
    }

    /// The in-process provider, if it is `task`'s best live one.
    fn here(&self, task: &str) -> Option<&LocalTasks> {
        let local = self.local.as_ref()?;
        let best = self
            .caller
            .candidates(task)
            .ok()?
            .into_iter()
            .find(|candidate| candidate.liveness != Liveness::Stale)?;
        (best.provider == local.name).then_some(&local.tasks)
    }

    /// `artifact.fetch`: the unpacked revision's directory.
    pub async fn fetch(&self, app: &str, rev: &str, url: &str) -> Result<PathBuf, TaskError> {
        let task = "artifact.fetch";
        let args = json!({"app": app, "revision": rev, "url": url});
        if let Some(local) = self.here(task) {
            let args: FetchArgs = read_args(task, args)?;
            let fetched = local
                .artifacts
                .fetch(args)
                .await
                .map_err(|e| failed(task, &e))?;
            return Ok(fetched.dir);
        }
        let fetched: Fetched = self.call(task, args, FETCH_LIMIT).await?;
        Ok(fetched.dir)
    }

    /// `instance.start`.
    pub async fn start(&self, args: &StartArgs) -> Result<InstanceStatus, TaskError> {
        let task = "instance.start";
        if let Some(local) = self.here(task) {
            return local
                .instances
                .start(args.clone())
                .await
                .map_err(|e| failed(task, &e));
        }
        self.call(task, to_value(args), MARGIN * 2).await
    }

    /// `instance.stop`, waiting up to `kill_timeout` before SIGKILL.
    pub async fn stop(
        &self,
        instance: &str,
        invocation: &str,
        kill_timeout: Duration,
    ) -> Result<InstanceStatus, TaskError> {
        let task = "instance.stop";
        let args = StopArgs {
            instance: instance.to_owned(),
            invocation: invocation.to_owned(),
            kill_timeout: Some(kill_timeout),
        };
        if let Some(local) = self.here(task) {
            return local
                .instances
                .stop(args)
                .await
                .map_err(|e| failed(task, &e));
        }
        self.call(task, to_value(&args), kill_timeout + MARGIN)
            .await
    }

    /// `instance.wait`: the exit, or the status after `timeout`.
    pub async fn wait(
        &self,
        instance: &str,
        invocation: &str,
        timeout: Duration,
    ) -> Result<InstanceStatus, TaskError> {
        let task = "instance.wait";
        let args = WaitArgs {
            instance: instance.to_owned(),
            invocation: invocation.to_owned(),
            timeout,
        };
        if let Some(local) = self.here(task) {
            return local
                .instances
                .wait(args)
                .await
                .map_err(|e| failed(task, &e));
        }
        self.call(task, to_value(&args), timeout + MARGIN).await
    }

    /// `instance.attach`: where an invocation started before is.
    pub async fn attach(
        &self,
        instance: &str,
        invocation: &str,
    ) -> Result<InstanceStatus, TaskError> {
        let task = "instance.attach";
        let args = InstanceArgs {
            instance: instance.to_owned(),
            invocation: invocation.to_owned(),
        };
        if let Some(local) = self.here(task) {
            return local
                .instances
                .attach(args)
                .await
                .map_err(|e| failed(task, &e));
        }
        self.call(task, to_value(&args), MARGIN).await
    }

    async fn call<R: DeserializeOwned>(
        &self,
        task: &'static str,
        args: Value,
        limit: Duration,
    ) -> Result<R, TaskError> {
        let reply = self
            .caller
            .call_with_timeout(task, args, limit)
            .await
            .map_err(|source| TaskError::Call { task, source })?;
        if reply.ending == Ending::TimedOut {
            return Err(TaskError::TimedOut { task, limit });
        }
        if let Some(message) = reply.response.error {
            return Err(TaskError::Failed { task, message });
        }
        serde_json::from_value(reply.response.result).map_err(|error| TaskError::BadResult {
            task,
            message: error.to_string(),
        })
    }
}

/// A failure of a task called in process, worded as its provider sends it.
fn failed(task: &'static str, error: &(dyn std::error::Error + 'static)) -> TaskError {
    TaskError::Failed {
        task,
        message: Chain(error).to_string(),
    }
}

/// Arguments checked as a provider checks them on arrival.
fn read_args<A: DeserializeOwned>(task: &'static str, args: Value) -> Result<A, TaskError> {
    serde_json::from_value(args).map_err(|error| TaskError::Failed {
        task,
        message: format!("invalid arguments: {error}"),
    })
}

/// The task arguments as JSON: plain structs of strings, maps and
/// durations, which always serialize.
fn to_value(args: &impl serde::Serialize) -> Value {
    serde_json::to_value(args).unwrap_or(Value::Null)
}
