//! Commands on what an app runs: proc types, revisions and scale factors.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;
use visor_controllers::{Limits, ProcType, Revision};

use super::output::{Output, Row, cell, removed};
use super::{parse_assignment, parse_scale};
use crate::registry::{Error, Kind, Versioned, Visor};

#[derive(Debug, Subcommand)]
pub enum ProcCommand {
    /// Register a proc type.
    Register {
        /// App name.
        app: String,
        /// Proc type name.
        proc: String,
        /// The command line that runs it.
        #[arg(long)]
        command: String,
        /// The port it listens on.
        #[arg(long)]
        port: Option<u16>,
        /// Memory limit per instance, MiB.
        #[arg(long)]
        memory_mb: Option<u64>,
        /// CPU weight per instance.
        #[arg(long)]
        cpu_shares: Option<u32>,
        /// Host label required to run it, `key=value` (repeatable).
        #[arg(long = "host-label", value_parser = parse_assignment)]
        host_labels: Vec<(String, String)>,
    },
    /// Unregister a proc type (and the scale factors naming it).
    Unregister {
        /// App name.
        app: String,
        /// Proc type name.
        proc: String,
    },
    /// List an app's proc types.
    List {
        /// App name.
        app: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RevCommand {
    /// Register a revision.
    Register {
        /// App name.
        app: String,
        /// Revision name.
        rev: String,
        /// Where its build artifact lives.
        #[arg(long)]
        archive_url: String,
    },
    /// Unregister a revision (and its scale factors).
    Unregister {
        /// App name.
        app: String,
        /// Revision name.
        rev: String,
    },
    /// List an app's revisions.
    List {
        /// App name.
        app: String,
    },
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// App name.
    app: String,
    /// Revision name.
    rev: String,
    /// `PROC=N` assignments; none shows the current factors.
    #[arg(value_parser = parse_scale)]
    assignments: Vec<(String, u32)>,
}

#[derive(Debug, Serialize)]
pub(super) struct ProcRow {
    pub(super) app: String,
    pub(super) name: String,
    pub(super) command: String,
    pub(super) port: Option<u16>,
    pub(super) limits: Limits,
    pub(super) host_labels: BTreeMap<String, String>,
    pub(super) created_at: DateTime<Utc>,
}

impl ProcRow {
    pub(super) fn new(app: &str, proc: &Versioned<ProcType>) -> Self {
        Self {
            app: app.to_owned(),
            name: proc.name().to_owned(),
            command: proc.value.command.clone(),
            port: proc.value.port,
            limits: proc.value.limits.clone(),
            host_labels: proc.value.host_labels.clone(),
            created_at: proc.value.created_at,
        }
    }
}

impl Row for ProcRow {
    const HEADERS: &'static [&'static str] = &["app", "name", "command", "port", "host labels"];
    fn cells(&self) -> Vec<String> {
        let labels: Vec<String> = self
            .host_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        vec![
            self.app.clone(),
            self.name.clone(),
            self.command.clone(),
            cell(self.port),
            if labels.is_empty() {
                "-".to_owned()
            } else {
                labels.join(",")
            },
        ]
    }
}

#[derive(Debug, Serialize)]
pub(super) struct RevRow {
    pub(super) app: String,
    pub(super) name: String,
    pub(super) archive_url: String,
    pub(super) created_at: DateTime<Utc>,
}

impl RevRow {
    pub(super) fn new(app: &str, rev: &Versioned<Revision>) -> Self {
        Self {
            app: app.to_owned(),
            name: rev.name().to_owned(),
            archive_url: rev.value.archive_url.clone(),
            created_at: rev.value.created_at,
        }
    }
}

impl Row for RevRow {
    const HEADERS: &'static [&'static str] = &["app", "name", "archive url", "created at"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.app.clone(),
            self.name.clone(),
            self.archive_url.clone(),
            self.created_at.to_rfc3339(),
        ]
    }
}

#[derive(Debug, Serialize)]
pub(super) struct ScaleRow {
    pub(super) app: String,
    pub(super) rev: String,
    pub(super) proc: String,
    pub(super) replicas: u32,
}

impl Row for ScaleRow {
    const HEADERS: &'static [&'static str] = &["app", "rev", "proc", "replicas"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.app.clone(),
            self.rev.clone(),
            self.proc.clone(),
            self.replicas.to_string(),
        ]
    }
}

pub(super) fn scale_row(factor: crate::registry::ScaleFactor) -> ScaleRow {
    ScaleRow {
        app: factor.app,
        rev: factor.rev,
        proc: factor.proc,
        replicas: factor.replicas,
    }
}

pub async fn proc(visor: &Visor, command: ProcCommand, out: &Output) -> Result<(), Error> {
    match command {
        ProcCommand::Register {
            app,
            proc,
            command,
            port,
            memory_mb,
            cpu_shares,
            host_labels,
        } => {
            let spec = ProcType {
                command,
                port,
                limits: Limits {
                    memory_mb,
                    cpu_shares,
                },
                host_labels: host_labels.into_iter().collect(),
                created_at: Utc::now(),
            };
            out.one(&ProcRow::new(
                &app,
                &visor.register_proc(&app, &proc, spec).await?,
            ));
        }
        ProcCommand::Unregister { app, proc } => {
            let revision = visor.unregister_proc(&app, &proc).await?;
            out.one(&removed(Kind::Proc, &[&app, &proc], revision));
        }
        ProcCommand::List { app } => {
            visor.app(&app).await?;
            let procs = visor.procs(&app).await?;
            out.list(
                &procs
                    .items
                    .iter()
                    .map(|p| ProcRow::new(&app, p))
                    .collect::<Vec<_>>(),
            );
        }
    }
    Ok(())
}

pub async fn rev(visor: &Visor, command: RevCommand, out: &Output) -> Result<(), Error> {
    match command {
        RevCommand::Register {
            app,
            rev,
            archive_url,
        } => {
            let spec = Revision {
                archive_url,
                created_at: Utc::now(),
            };
            out.one(&RevRow::new(
                &app,
                &visor.register_rev(&app, &rev, spec).await?,
            ));
        }
        RevCommand::Unregister { app, rev } => {
            let revision = visor.unregister_rev(&app, &rev).await?;
            out.one(&removed(Kind::Rev, &[&app, &rev], revision));
        }
        RevCommand::List { app } => {
            visor.app(&app).await?;
            let revs = visor.revs(&app).await?;
            out.list(
                &revs
                    .items
                    .iter()
                    .map(|r| RevRow::new(&app, r))
                    .collect::<Vec<_>>(),
            );
        }
    }
    Ok(())
}

pub async fn scale(visor: &Visor, args: ScaleArgs, out: &Output) -> Result<(), Error> {
    let ScaleArgs {
        app,
        rev,
        assignments,
    } = args;
    let mut rows = Vec::new();
    if assignments.is_empty() {
        // Showing a revision's factors: the revision must exist, or a typo would show nothing.
        visor.rev(&app, &rev).await?;
        let factors = visor.scales(Some(&app)).await?;
        rows.extend(
            factors
                .items
                .into_iter()
                .map(|s| scale_row(s.value))
                .filter(|s| s.rev == rev),
        );
    }
    let factors: Vec<(&str, u32)> = assignments.iter().map(|(p, n)| (p.as_str(), *n)).collect();
    if !factors.is_empty() {
        let written = visor.set_scales(&app, &rev, &factors).await?;
        rows.extend(
            assignments
                .iter()
                .zip(written)
                .map(|((proc, _), w)| ScaleRow {
                    app: app.clone(),
                    rev: rev.clone(),
                    proc: proc.clone(),
                    replicas: w.value.replicas,
                }),
        );
    }
    out.list(&rows);
    Ok(())
}
