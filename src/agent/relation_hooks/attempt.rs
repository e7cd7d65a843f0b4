//! One attempt at a unit's next hook: read it with its state and relation
//! at one revision, bring the local state up to the registry's, run the
//! hook file with its tools' context, then acknowledge it with the settings
//! it set and record it locally — or record why it failed.
//!
//! Invariants: the registry first, the local state second — an
//! acknowledgement commits before the local state dir is written, and a
//! local state found behind the registry is brought up to it before the
//! next hook runs; on failure nothing is written but the failure record, so
//! settings set by a failed hook never reach the registry; every attempt is
//! counted once in the metrics.

use std::sync::Arc;

use tokio::time::Instant;
use visor_controllers::{HookEnvSpec, HookKind, Name, hook_env, hook_name, members_after};

use super::Shared;
use super::config::UnitContext;
use super::endpoint::endpoint_of;
use super::error::UnitError;
use super::metrics::HookResult;
use super::run::{Ran, run_hook};
use super::tools::HookContext;
use crate::agent::{StateDir, StateDirs};
use crate::registry::{Error, Kind, PendingHook};
use crate::telemetry::Chain;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempted {
    /// The hook ran (or is missing) and was acknowledged.
    Acknowledged,
    /// The hook failed; its failure was recorded (or could not be).
    Failed,
    /// The hook is gone: acknowledged or withdrawn meanwhile.
    Gone,
}

/// What running the hook needs, once it could be worked out.
struct Prepared {
    dir: StateDir,
    endpoint: String,
    hook_name: String,
    members: Vec<String>,
}

impl Shared {
    /// Runs `unit`'s hook for `relation` once.
    pub(super) async fn attempt(
        self: Arc<Self>,
        unit: UnitContext,
        relation: Name,
    ) -> Result<Attempted, UnitError> {
        let pending = match self
            .visor
            .pending_hook(unit.unit.as_str(), relation.as_str())
            .await
        {
            Ok(pending) => pending,
            Err(Error::NotFound(_)) => return Ok(Attempted::Gone),
            Err(source) => {
                return Err(UnitError::Read {
                    unit: unit.unit.clone(),
                    relation,
                    source,
                });
            }
        };
        let hook = pending.hook.value.hook.clone();
        let dirs = StateDirs::new(self.config.state_root.join(unit.unit.as_str()));
        let prepared = match self.prepare(&dirs, &pending, &unit).await {
            Ok(prepared) => prepared,
            Err(reason) => {
                return Ok(self
                    .failed(&unit, &relation, &pending, HookResult::Failed, &reason)
                    .await);
            }
        };
        let Prepared {
            mut dir,
            endpoint,
            hook_name,
            members,
        } = prepared;
        let context = self.contexts.register(HookContext {
            unit: unit.unit.clone(),
            relation: relation.clone(),
            kind: hook.kind,
            remote_unit: hook.remote_unit.clone(),
            members,
            settings: Default::default(),
        });
        let env = hook_env(&HookEnvSpec {
            unit: unit.unit.as_str(),
            hook: &hook,
            endpoint: &endpoint,
            hook_name: &hook_name,
            app_env: &unit.env,
            tools_dir: &self.tools_dir,
            tools_socket: &self.tools_socket,
            context_id: context.id(),
        });
        let started = Instant::now();
        let ran = run_hook(
            &self.caller,
            &unit,
            &hook_name,
            env,
            self.config.hook_timeout,
        )
        .await;
        self.metrics.ran(hook.kind, started.elapsed());
        let settings = context.finish();
        let result = match ran {
            Ran::Succeeded => HookResult::Ok,
            Ran::Missing => HookResult::Missing,
            Ran::Failed { result, reason } => {
                return Ok(self
                    .failed(&unit, &relation, &pending, result, &reason)
                    .await);
            }
        };
        let acknowledged = self
            .visor
            .complete_hook_with_settings(unit.unit.as_str(), relation.as_str(), &settings)
            .await;
        match acknowledged {
            Ok(_) => {}
            Err(Error::NotFound(object)) if object.kind == Kind::Hook => {
                self.metrics.attempted(hook.kind, result);
                tracing::info!(unit = %unit.unit, %hook, "the hook went away while it ran; it is not acknowledged");
                return Ok(Attempted::Gone);
            }
            Err(error) => {
                let reason = format!("acknowledging it: {error}");
                return Ok(self
                    .failed(&unit, &relation, &pending, HookResult::Failed, &reason)
                    .await);
            }
        }
        self.metrics.attempted(hook.kind, result);
        tracing::info!(unit = %unit.unit, %hook, hook_file = %hook_name, result = result.as_str(), "hook acknowledged");
        let recorded = dir.write(&hook).and_then(|()| match hook.kind {
            HookKind::Broken => dirs.forget_endpoint(relation.as_str()),
            _ => Ok(()),
        });
        recorded.map_err(|source| UnitError::StateDir {
            unit: unit.unit.clone(),
            hook,
            source,
        })?;
        Ok(Attempted::Acknowledged)
    }

    /// Works out what running the hook needs; why not, as its failure.
    async fn prepare(
        &self,
        dirs: &StateDirs,
        pending: &PendingHook,
        unit: &UnitContext,
    ) -> Result<Prepared, String> {
        let hook = &pending.hook.value.hook;
        let acknowledged = pending.acknowledged();
        let members = members_after(&acknowledged, hook).map_err(|error| {
            format!("it does not follow from the unit's relation state: {error}")
        })?;
        let endpoint = endpoint_of(&self.visor, dirs, pending, unit).await?;
        let hook_name = hook_name(&endpoint, hook.kind).map_err(|error| error.to_string())?;
        let local_error = |error: crate::agent::StateDirError| {
            format!("the local relation state: {}", Chain(&error))
        };
        let mut dir = dirs.ensure(&hook.relation_id).map_err(local_error)?;
        if dir.state() != acknowledged {
            tracing::info!(unit = %unit.unit, relation = %hook.relation_id, local = ?dir.state(), registry = ?acknowledged,
                "the local relation state is not the registry's; writing the registry's over it");
            dir.replace(&acknowledged).map_err(local_error)?;
        }
        Ok(Prepared {
            dir,
            endpoint,
            hook_name,
            members,
        })
    }

    /// Counts a failed attempt and records why on the hook.
    async fn failed(
        &self,
        unit: &UnitContext,
        relation: &Name,
        pending: &PendingHook,
        result: HookResult,
        reason: &str,
    ) -> Attempted {
        let hook = &pending.hook.value.hook;
        self.metrics.attempted(hook.kind, result);
        let attempts = pending.hook.value.failed.as_ref().map_or(0, |f| f.attempts) + 1;
        tracing::warn!(unit = %unit.unit, %hook, attempts, reason, "hook failed; it will be retried");
        let recorded = self
            .visor
            .record_hook_failure(unit.unit.as_str(), relation.as_str(), &pending.hook, reason)
            .await;
        match recorded {
            Ok(_) => Attempted::Failed,
            Err(Error::NotFound(_)) => Attempted::Gone,
            // Changed since read (an agent before us recorded a failure), or
            // the registry is out of reach: the hook is retried after its
            // backoff all the same, and its next failure recorded then.
            Err(error) => {
                tracing::warn!(unit = %unit.unit, %hook, error = %Chain(&error), "cannot record the hook's failure");
                Attempted::Failed
            }
        }
    }
}
