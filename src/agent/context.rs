//! What every part of a running agent shares: the registry, its host's
//! name, the provider tasks, the write-ahead journal, the ports, the slots of
//! the instances it runs, and the one way it writes an instance's state.
//!
//! Invariant: an instance's state is written only through
//! [`Context::move_instance`], which retries what a retry can mend and
//! treats "already there" as done, so a write repeated after a crash or an
//! ambiguous failure has the effect of one.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use visor_controllers::{Actor, Instance, InstanceState, Name};

use super::config::AgentConfig;
use super::journal::Journal;
use super::metrics::{AgentMetrics, InstancePhase};
use super::ports::Ports;
use super::relation_hooks::UnitContext;
use super::slot::SlotHandle;
use super::tasks::{TaskError, Tasks};
use crate::registry::{BackoffPolicy, Error, Versioned, Visor, backoff};
use crate::telemetry::Chain;

/// How registry writes are retried while the registry cannot take them.
const WRITE_RETRY: BackoffPolicy = BackoffPolicy {
    min: Duration::from_millis(50),
    max: Duration::from_secs(5),
    healthy: Duration::from_secs(60),
};

/// The outcome of moving an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// It is in the state asked for (now, or already).
    Done,
    /// It can no longer be moved by this host: gone, terminal, or another
    /// host's. The reason says which.
    Gone(String),
}

/// The agent's shared state.
#[derive(Debug)]
pub struct Context {
    pub visor: Visor,
    pub host: Name,
    pub config: AgentConfig,
    pub tasks: Tasks,
    pub journal: Journal,
    pub ports: Ports,
    pub units: watch::Sender<BTreeMap<Name, UnitContext>>,
    pub slots: Mutex<HashMap<Name, SlotHandle>>,
    /// Where each slot is, for `visor_agent_instances`.
    pub phases: Mutex<HashMap<Name, InstancePhase>>,
    pub metrics: AgentMetrics,
    /// The revisions fetched, by (app, rev, archive URL).
    pub artifacts: Mutex<HashMap<(Name, Name, String), PathBuf>>,
    pub shutdown: CancellationToken,
}

impl Context {
    /// The slot running `instance`, if any.
    pub fn slot(&self, instance: &Name) -> Option<SlotHandle> {
        self.lock_slots().get(instance).cloned()
    }

    /// Every slot.
    pub fn all_slots(&self) -> Vec<SlotHandle> {
        self.lock_slots().values().cloned().collect()
    }

    pub fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<Name, SlotHandle>> {
        // Poisoned only by a panic while inserting or removing, which leaves the map whole.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `write` until it succeeds, fails for a reason no retry mends, or
    /// the agent shuts down (then the last error is returned).
    pub async fn persist<T, F, Fut>(&self, what: &str, mut write: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut delays = WRITE_RETRY.start();
        loop {
            match write().await {
                Err(error) if error.is_retryable() => {
                    tracing::debug!(what, error = %Chain(&error), "retrying a registry write");
                    let delay = delays.next_delay(Duration::ZERO);
                    if !backoff::sleep(delay, &self.shutdown).await {
                        return Err(error);
                    }
                }
                other => return other,
            }
        }
    }

    /// Moves instance `id` to `to` as this host (`port` for `running`,
    /// `reason` for `exited` and `failed`).
    pub async fn move_instance(
        &self,
        id: &Name,
        to: InstanceState,
        port: Option<u16>,
        reason: Option<String>,
    ) -> Result<Moved, Error> {
        self.move_instance_from(id, None, to, port, reason)
            .await
            .map(|(moved, _)| moved)
    }

    /// The same, trying first from `known` (a copy read recently: one
    /// registry round trip fewer when it is still current); returns the
    /// instance as written, when this call wrote it.
    pub async fn move_instance_from(
        &self,
        id: &Name,
        known: Option<Versioned<Instance>>,
        to: InstanceState,
        port: Option<u16>,
        reason: Option<String>,
    ) -> Result<(Moved, Option<Versioned<Instance>>), Error> {
        let visor = &self.visor;
        let actor = Actor::Host(self.host.clone());
        let mut known = known;
        let moved = self
            .persist("instance state", || {
                let first = known.take();
                let (actor, reason) = (&actor, reason.clone());
                async move {
                    let current = match first {
                        Some(current) => current,
                        None => visor.instance(id.as_str()).await?,
                    };
                    visor
                        .transition_from(&current, to, actor, |next| match to {
                            InstanceState::Running => next.port = port,
                            InstanceState::Exited | InstanceState::Failed => next.reason = reason,
                            _ => {}
                        })
                        .await
                }
            })
            .await;
        match moved {
            Ok(written) => Ok((Moved::Done, Some(written))),
            Err(Error::NotFound(_)) => Ok((Moved::Gone(format!("instance {id} is gone")), None)),
            Err(Error::InvalidTransition { .. }) => {
                // Refused on the copy read: where is it now?
                let current = self
                    .persist("instance read", || visor.instance(id.as_str()))
                    .await;
                let moved = match current {
                    Ok(current) if current.value.state == to => Moved::Done,
                    Ok(current) => Moved::Gone(format!(
                        "instance {id} is {} on host {}",
                        current.value.state,
                        current.value.host.as_ref().map_or("none", Name::as_str)
                    )),
                    Err(Error::NotFound(_)) => Moved::Gone(format!("instance {id} is gone")),
                    Err(error) => return Err(error),
                };
                Ok((moved, None))
            }
            Err(error) => Err(error),
        }
    }

    /// Records where `instance`'s slot is (`None`: it ended), keeping the
    /// per-phase gauge current.
    pub fn set_phase(&self, instance: &Name, phase: Option<InstancePhase>) {
        // Poisoned only by a panic inside these lines, which leave the map whole.
        let mut phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        let before = match phase {
            Some(phase) => phases.insert(instance.clone(), phase),
            None => phases.remove(instance),
        };
        for changed in [before, phase].into_iter().flatten() {
            let count = phases.values().filter(|p| **p == changed).count();
            self.metrics.set_instances(changed, count);
        }
    }

    /// The unpacked directory of `app`'s revision `rev` from `url`: fetched
    /// once (`artifact.fetch`), then remembered for as long as it is there,
    /// so that a start does not ask the provider again for what it has.
    pub async fn artifact(&self, app: &Name, rev: &Name, url: &str) -> Result<PathBuf, TaskError> {
        let key = (app.clone(), rev.clone(), url.to_owned());
        let known = self.lock_artifacts().get(&key).cloned();
        if let Some(dir) = known.filter(|dir| dir.is_dir()) {
            return Ok(dir);
        }
        let dir = self.tasks.fetch(app.as_str(), rev.as_str(), url).await?;
        self.lock_artifacts().insert(key, dir.clone());
        Ok(dir)
    }

    fn lock_artifacts(&self) -> std::sync::MutexGuard<'_, HashMap<(Name, Name, String), PathBuf>> {
        // Poisoned only by a panic while inserting, which leaves the map whole.
        self.artifacts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes `unit` as running here (for its relation hooks).
    pub fn unit_running(&self, unit: UnitContext) {
        self.units.send_modify(|units| {
            units.insert(unit.unit.clone(), unit);
        });
    }

    /// Withdraws `unit`: it no longer runs here.
    pub fn unit_gone(&self, unit: &Name) {
        self.units
            .send_if_modified(|units| units.remove(unit).is_some());
    }
}
