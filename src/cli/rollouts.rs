//! `visor rollout status <app> [-w]`: where an app's rollout stands, as the
//! controller keeps it, with the instances of the revision it rolls to.
//!
//! With `-w` it prints a line whenever that changes, until the rollout
//! ends: exit 0 once complete, 1 once rolled back or paused (with why).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;
use visor_controllers::{InstanceState, Name, RolloutPhase};

use super::CliError;
use super::args;
use super::follow::{Change, Changes};
use super::output::{Output, Row, age, cell, timestamp};
use crate::registry::{InstanceFilter, Visor};

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Where an app's rollout stands.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// App name.
    #[arg(value_parser = args::name("app"))]
    app: Name,
    /// Follow it: a line per change, until it is complete (exit 0), rolled
    /// back or paused (exit 1).
    #[arg(short = 'w', long)]
    watch: bool,
}

/// One look at a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct RolloutRow {
    app: String,
    revision: String,
    phase: &'static str,
    stable: Option<String>,
    /// Running instances of the revision it rolls to.
    ready: usize,
    /// Instances the deployment asks for, all proc types together.
    desired: u32,
    /// Instances of other revisions not yet gone.
    old: usize,
    started_at: DateTime<Utc>,
    reason: Option<String>,
}

impl Row for RolloutRow {
    const HEADERS: &'static [&'static str] = &[
        "app",
        "revision",
        "phase",
        "ready",
        "old",
        "stable",
        "started at",
        "age",
        "reason",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.app.clone(),
            self.revision.clone(),
            self.phase.to_owned(),
            format!("{}/{}", self.ready, self.desired),
            self.old.to_string(),
            cell(self.stable.as_ref()),
            timestamp(&self.started_at),
            age(&self.started_at),
            cell(self.reason.as_ref()),
        ]
    }
}

pub async fn rollout(visor: &Visor, command: RolloutCommand, out: &Output) -> Result<(), CliError> {
    match command {
        RolloutCommand::Status(args) => status(visor, args, out).await,
    }
}

async fn status(visor: &Visor, args: StatusArgs, out: &Output) -> Result<(), CliError> {
    let (row, phase, revision) = look(visor, &args.app).await?;
    if !args.watch {
        return Ok(out.one(&row)?);
    }
    out.header::<RolloutRow>()?;
    out.line(&row)?;
    let mut changes = Changes::after(visor, revision).await?;
    let mut last = row;
    let mut phase = phase;
    while !ended(phase) {
        if changes.next(None).await? != Change::Changed {
            return Ok(());
        }
        let (row, now, _) = look(visor, &args.app).await?;
        phase = now;
        if row != last {
            out.line(&row)?;
            last = row;
        }
    }
    match phase {
        RolloutPhase::RolledBack | RolloutPhase::Paused => Err(CliError::RolloutFailed {
            app: args.app.to_string(),
            revision: last.revision,
            phase: phase.as_str(),
            reason: last.reason.unwrap_or_default(),
        }),
        _ => Ok(()),
    }
}

fn ended(phase: RolloutPhase) -> bool {
    matches!(
        phase,
        RolloutPhase::Complete | RolloutPhase::RolledBack | RolloutPhase::Paused
    )
}

/// The rollout of `app` as it stands, its phase, and the revision it was read at.
async fn look(visor: &Visor, app: &Name) -> Result<(RolloutRow, RolloutPhase, i64), CliError> {
    let status = visor.rollout_status(app.as_str()).await?;
    let state = visor.app_state(app.as_str()).await?;
    let desired = state
        .spec
        .as_ref()
        .map_or(0, |spec| spec.scale.values().sum::<u32>());
    let filter = InstanceFilter {
        app: Some(app.to_string()),
        ..InstanceFilter::default()
    };
    let instances = visor.instances(&filter).await?;
    let mut by_revision: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for instance in &instances.items {
        let state = instance.value.state;
        if state.is_terminal() {
            continue;
        }
        let counts = by_revision
            .entry(instance.value.rev.to_string())
            .or_default();
        counts.0 += 1;
        counts.1 += usize::from(state == InstanceState::Running);
    }
    let value = status.value;
    let revision = value.revision.to_string();
    let ready = by_revision.get(&revision).map_or(0, |(_, ready)| *ready);
    let old = by_revision
        .iter()
        .filter(|(rev, _)| **rev != revision)
        .map(|(_, (all, _))| all)
        .sum();
    let row = RolloutRow {
        app: app.to_string(),
        revision,
        phase: value.phase.as_str(),
        stable: value.stable.map(String::from),
        ready,
        desired,
        old,
        started_at: value.started_at,
        reason: value.reason,
    };
    Ok((row, value.phase, status.revision.max(state.revision)))
}
