//! Commands on what an app runs: proc types, revisions and scale factors.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;
use visor_controllers::{
    GroupKey, Limits, Name, ProcService, ProcType, Readiness, ReadinessCheck, RestartPolicy,
    Revision, WaitGoal,
};

use super::CliError;
use super::args::{self, distinct};
use super::output::{Output, Row, age, cell, removed, timestamp};
use crate::registry::{Kind, Versioned, Visor};

#[derive(Debug, Subcommand)]
pub enum ProcCommand {
    /// Register a proc type.
    Register {
        /// App name.
        #[arg(value_parser = args::name("app"))]
        app: Name,
        /// Proc type name.
        #[arg(value_parser = args::name("proc"))]
        proc: Name,
        /// The command line that runs it, split as a shell would (no
        /// expansion); a relative program is the revision's.
        #[arg(long, value_parser = args::command)]
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
        #[arg(long = "host-label", value_parser = args::assignment)]
        host_labels: Vec<(String, String)>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Unregister a proc type (and the scale factors naming it).
    Unregister {
        /// App name.
        #[arg(value_parser = args::name("app"))]
        app: Name,
        /// Proc type name.
        #[arg(value_parser = args::name("proc"))]
        proc: Name,
    },
    /// List an app's proc types.
    List {
        /// App name.
        #[arg(value_parser = args::name("app"))]
        app: Name,
    },
}

/// How the agent runs a proc type's instances.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// How long a stop waits after SIGTERM before SIGKILL (whole seconds,
    /// e.g. `10s`, `1m`).
    #[arg(long, value_parser = args::whole_seconds)]
    kill_timeout: Option<u32>,
    /// `always` (a clean exit is restarted like a crash) or `on-failure` (a
    /// clean exit ends the instance).
    #[arg(long, value_parser = args::restart_policy, default_value = "always")]
    restart: RestartPolicy,
    /// Ready once its port accepts a TCP connection.
    #[arg(long, conflicts_with = "ready_http")]
    ready_tcp: bool,
    /// Ready once `GET <PATH>` on its port answers 2xx.
    #[arg(long, value_name = "PATH", value_parser = args::http_path)]
    ready_http: Option<String>,
    /// How long the readiness check may take to pass (whole seconds).
    #[arg(long, value_parser = args::whole_seconds)]
    ready_timeout: Option<u32>,
    /// The service its running instances are endpoints of.
    #[arg(long, value_parser = args::name("service"))]
    service: Option<Name>,
    /// A scheme its port is registered under (repeatable; default `http`).
    #[arg(long = "service-scheme", requires = "service", value_parser = args::scheme)]
    service_schemes: Vec<String>,
}

impl RunArgs {
    fn readiness(&self) -> Option<Readiness> {
        let check = match (&self.ready_http, self.ready_tcp) {
            (Some(path), _) => ReadinessCheck::Http { path: path.clone() },
            (None, true) => ReadinessCheck::Tcp,
            (None, false) => return None,
        };
        Some(Readiness {
            check,
            timeout_secs: self
                .ready_timeout
                .unwrap_or(Readiness::DEFAULT_TIMEOUT_SECS),
        })
    }

    fn service(&self) -> Option<ProcService> {
        let name = self.service.clone()?;
        let schemes = match self.service_schemes.is_empty() {
            true => vec!["http".to_owned()],
            false => self.service_schemes.clone(),
        };
        Some(ProcService { name, schemes })
    }

    /// Refuses a readiness timeout without a check: it would be dropped.
    pub fn check(&self) -> Result<(), CliError> {
        if self.ready_timeout.is_some() && self.readiness().is_none() {
            return Err(CliError::Usage(
                "--ready-timeout needs --ready-tcp or --ready-http".to_owned(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum RevCommand {
    /// Register a revision.
    Register {
        /// App name.
        #[arg(value_parser = args::name("app"))]
        app: Name,
        /// Revision name.
        #[arg(value_parser = args::name("rev"))]
        rev: Name,
        /// Where its build artifact lives.
        #[arg(long)]
        archive_url: String,
    },
    /// Unregister a revision (and its scale factors).
    Unregister {
        /// App name.
        #[arg(value_parser = args::name("app"))]
        app: Name,
        /// Revision name.
        #[arg(value_parser = args::name("rev"))]
        rev: Name,
    },
    /// List an app's revisions.
    List {
        /// App name.
        #[arg(value_parser = args::name("app"))]
        app: Name,
    },
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// App name.
    #[arg(value_parser = args::name("app"))]
    app: Name,
    /// Revision name.
    #[arg(value_parser = args::name("rev"))]
    rev: Name,
    /// `PROC=N` assignments; none shows the current factors.
    #[arg(value_name = "PROC=N", value_parser = args::scale)]
    assignments: Vec<(Name, u32)>,
    #[command(flatten)]
    wait: super::wait::WaitArgs,
}

impl ScaleArgs {
    /// Refuses a proc given twice (`http=3 http=4`): which factor would be meant?
    pub fn check(&self) -> Result<(), CliError> {
        distinct("proc", self.assignments.iter().map(|(proc, _)| proc))
    }
}

#[derive(Debug, Serialize)]
pub(super) struct ProcRow {
    pub(super) app: String,
    pub(super) name: String,
    pub(super) command: String,
    pub(super) port: Option<u16>,
    pub(super) limits: Limits,
    pub(super) host_labels: BTreeMap<String, String>,
    pub(super) kill_timeout_secs: u32,
    pub(super) restart: RestartPolicy,
    pub(super) readiness: Option<Readiness>,
    pub(super) service: Option<ProcService>,
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
            kill_timeout_secs: proc.value.kill_timeout_secs(),
            restart: proc.value.restart,
            readiness: proc.value.readiness.clone(),
            service: proc.value.service.clone(),
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
    const HEADERS: &'static [&'static str] = &["app", "name", "archive url", "created at", "age"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.app.clone(),
            self.name.clone(),
            self.archive_url.clone(),
            timestamp(&self.created_at),
            age(&self.created_at),
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

pub async fn proc(visor: &Visor, command: ProcCommand, out: &Output) -> Result<(), CliError> {
    match command {
        ProcCommand::Register {
            app,
            proc,
            command,
            port,
            memory_mb,
            cpu_shares,
            host_labels,
            run,
        } => {
            let spec = ProcType {
                command,
                port,
                limits: Limits {
                    memory_mb,
                    cpu_shares,
                },
                host_labels: host_labels.into_iter().collect(),
                kill_timeout_secs: run.kill_timeout,
                restart: run.restart,
                readiness: run.readiness(),
                service: run.service(),
                created_at: Utc::now(),
            };
            let written = visor
                .register_proc(app.as_str(), proc.as_str(), spec)
                .await?;
            out.one(&ProcRow::new(app.as_str(), &written))?;
        }
        ProcCommand::Unregister { app, proc } => {
            let revision = visor.unregister_proc(app.as_str(), proc.as_str()).await?;
            out.one(&removed(
                Kind::Proc,
                &[app.as_str(), proc.as_str()],
                revision,
            ))?;
        }
        ProcCommand::List { app } => {
            let app = app.as_str();
            visor.app(app).await?;
            let procs = visor.procs(app).await?;
            out.list(
                &procs
                    .items
                    .iter()
                    .map(|p| ProcRow::new(app, p))
                    .collect::<Vec<_>>(),
            )?;
        }
    }
    Ok(())
}

pub async fn rev(visor: &Visor, command: RevCommand, out: &Output) -> Result<(), CliError> {
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
            let written = visor.register_rev(app.as_str(), rev.as_str(), spec).await?;
            out.one(&RevRow::new(app.as_str(), &written))?;
        }
        RevCommand::Unregister { app, rev } => {
            let revision = visor.unregister_rev(app.as_str(), rev.as_str()).await?;
            out.one(&removed(Kind::Rev, &[app.as_str(), rev.as_str()], revision))?;
        }
        RevCommand::List { app } => {
            let app = app.as_str();
            visor.app(app).await?;
            let revs = visor.revs(app).await?;
            out.list(
                &revs
                    .items
                    .iter()
                    .map(|r| RevRow::new(app, r))
                    .collect::<Vec<_>>(),
            )?;
        }
    }
    Ok(())
}

pub async fn scale(visor: &Visor, args: ScaleArgs, out: &Output) -> Result<(), CliError> {
    let ScaleArgs {
        app: app_name,
        rev: rev_name,
        assignments,
        wait,
    } = args;
    let (app, rev) = (app_name.as_str(), rev_name.as_str());
    let mut rows: Vec<ScaleRow> = Vec::new();
    // What `--wait` waits for: what is set, or with nothing set, what is shown.
    let mut procs: Vec<Name> = assignments.iter().map(|(proc, _)| proc.clone()).collect();
    if assignments.is_empty() {
        // Showing a revision's factors: the revision must exist, or a typo would show nothing.
        visor.rev(app, rev).await?;
        let factors = visor.scales(Some(app)).await?;
        for factor in factors.items.into_iter().filter(|s| s.value.rev == rev) {
            // Listed under the revision's keys, so a valid name; a stray key is only shown.
            procs.extend(Name::parse("proc", &factor.value.proc).ok());
            rows.push(scale_row(factor.value));
        }
    }
    let factors: Vec<(&str, u32)> = assignments.iter().map(|(p, n)| (p.as_str(), *n)).collect();
    if !factors.is_empty() {
        let written = visor.set_scales(app, rev, &factors).await?;
        rows.extend(
            assignments
                .iter()
                .zip(written)
                .map(|((proc, _), w)| ScaleRow {
                    app: app.to_owned(),
                    rev: rev.to_owned(),
                    proc: proc.to_string(),
                    replicas: w.value.replicas,
                }),
        );
    }
    out.list(&rows)?;
    let groups = procs
        .into_iter()
        .map(|proc| GroupKey {
            app: app_name.clone(),
            rev: rev_name.clone(),
            proc,
        })
        .collect();
    wait.wait_for(visor, &[WaitGoal::Groups(groups)]).await
}
