//! Commands on desired state: apps, env vars, proc types, revisions, scale.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;
use visor_controllers::{App, Limits, Name, ProcType, Revision};

use super::output::{Output, Removed, Row, cell};
use crate::registry::{Error, Kind, ObjectRef, Versioned, Visor};

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Register an app.
    Register {
        /// App name.
        name: String,
        /// Where its source lives.
        #[arg(long)]
        repo_url: String,
        /// The stack its processes run on (hosts offer stacks).
        #[arg(long)]
        stack: String,
        /// Deployment type (free-form).
        #[arg(long, default_value = "lxc")]
        deploy_type: String,
    },
    /// Unregister an app with its env vars, proc types, revisions and scale factors.
    Unregister {
        /// App name.
        name: String,
    },
    /// List apps.
    List,
    /// Show an app with its env vars, proc types, revisions and scale factors.
    Show {
        /// App name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Set env vars: `visor env set web PORT=80 MODE=prod`.
    Set {
        /// App name.
        app: String,
        /// `KEY=VALUE` assignments.
        #[arg(required = true, value_parser = parse_assignment)]
        vars: Vec<(String, String)>,
    },
    /// Print one env var.
    Get {
        /// App name.
        app: String,
        /// Variable name.
        // Its own id: `key` is taken by the global `--key` (TLS client key).
        #[arg(id = "env_key", value_name = "KEY")]
        key: String,
    },
    /// Remove env vars.
    Unset {
        /// App name.
        app: String,
        /// Variable names.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// List an app's env vars.
    List {
        /// App name.
        app: String,
    },
}

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

/// Parses `KEY=VALUE` (the value may contain `=`).
fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// Parses `PROC=N` with a non-negative integer N.
fn parse_scale(text: &str) -> Result<(String, u32), String> {
    let (proc, count) =
        parse_assignment(text).map_err(|_| format!("expected PROC=N, got {text:?}"))?;
    let count = count
        .parse()
        .map_err(|_| format!("scale for {proc} must be a non-negative integer, got {count:?}"))?;
    Ok((proc, count))
}

#[derive(Debug, Serialize)]
struct AppRow {
    name: String,
    repo_url: String,
    stack: String,
    deploy_type: String,
    created_at: DateTime<Utc>,
    mod_revision: i64,
}

impl From<&Versioned<App>> for AppRow {
    fn from(app: &Versioned<App>) -> Self {
        Self {
            name: app.name().to_owned(),
            repo_url: app.value.repo_url.clone(),
            stack: app.value.stack.to_string(),
            deploy_type: app.value.deploy_type.clone(),
            created_at: app.value.created_at,
            mod_revision: app.mod_revision,
        }
    }
}

impl Row for AppRow {
    const HEADERS: &'static [&'static str] =
        &["name", "stack", "deploy type", "repo url", "created at"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.stack.clone(),
            self.deploy_type.clone(),
            self.repo_url.clone(),
            self.created_at.to_rfc3339(),
        ]
    }
}

#[derive(Debug, Serialize)]
struct EnvRow {
    app: String,
    key: String,
    value: String,
}

impl Row for EnvRow {
    const HEADERS: &'static [&'static str] = &["app", "key", "value"];
    fn cells(&self) -> Vec<String> {
        vec![self.app.clone(), self.key.clone(), self.value.clone()]
    }
}

#[derive(Debug, Serialize)]
struct ProcRow {
    app: String,
    name: String,
    command: String,
    port: Option<u16>,
    limits: Limits,
    host_labels: BTreeMap<String, String>,
    created_at: DateTime<Utc>,
}

impl ProcRow {
    fn new(app: &str, proc: &Versioned<ProcType>) -> Self {
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
struct RevRow {
    app: String,
    name: String,
    archive_url: String,
    created_at: DateTime<Utc>,
}

impl RevRow {
    fn new(app: &str, rev: &Versioned<Revision>) -> Self {
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
struct ScaleRow {
    app: String,
    rev: String,
    proc: String,
    replicas: u32,
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

/// `app show`: the app with everything registered under it.
#[derive(Debug, Serialize)]
struct AppDetail {
    #[serde(flatten)]
    app: AppRow,
    env: BTreeMap<String, String>,
    procs: Vec<ProcRow>,
    revs: Vec<RevRow>,
    scale: Vec<ScaleRow>,
}

impl Row for AppDetail {
    const HEADERS: &'static [&'static str] = &[
        "name",
        "stack",
        "deploy type",
        "repo url",
        "env",
        "procs",
        "revs",
        "scale",
    ];
    fn cells(&self) -> Vec<String> {
        let join = |items: Vec<String>| {
            if items.is_empty() {
                "-".to_owned()
            } else {
                items.join(",")
            }
        };
        vec![
            self.app.name.clone(),
            self.app.stack.clone(),
            self.app.deploy_type.clone(),
            self.app.repo_url.clone(),
            join(self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            join(self.procs.iter().map(|p| p.name.clone()).collect()),
            join(self.revs.iter().map(|r| r.name.clone()).collect()),
            join(
                self.scale
                    .iter()
                    .map(|s| format!("{}/{}={}", s.rev, s.proc, s.replicas))
                    .collect(),
            ),
        ]
    }
}

fn removed(kind: Kind, parts: &[&str], revision: i64) -> Removed {
    Removed {
        removed: ObjectRef::new(kind, parts).to_string(),
        revision,
    }
}

pub async fn app(visor: &Visor, command: AppCommand, out: &Output) -> Result<(), Error> {
    match command {
        AppCommand::Register {
            name,
            repo_url,
            stack,
            deploy_type,
        } => {
            let stack = Name::parse("stack", &stack)?;
            let spec = App {
                repo_url,
                stack,
                deploy_type,
                created_at: Utc::now(),
            };
            out.one(&AppRow::from(&visor.register_app(&name, spec).await?));
        }
        AppCommand::Unregister { name } => {
            let revision = visor.unregister_app(&name).await?;
            out.one(&removed(Kind::App, &[&name], revision));
        }
        AppCommand::List => {
            let apps = visor.apps().await?;
            out.list(&apps.items.iter().map(AppRow::from).collect::<Vec<_>>());
        }
        AppCommand::Show { name } => {
            let app = visor.app(&name).await?;
            let env = visor
                .envs(&name)
                .await?
                .items
                .into_iter()
                .map(|e| (e.name().to_owned(), e.value))
                .collect();
            let procs = visor
                .procs(&name)
                .await?
                .items
                .iter()
                .map(|p| ProcRow::new(&name, p))
                .collect();
            let revs = visor
                .revs(&name)
                .await?
                .items
                .iter()
                .map(|r| RevRow::new(&name, r))
                .collect();
            let scale = visor
                .scales(Some(&name))
                .await?
                .items
                .into_iter()
                .map(|s| scale_row(s.value))
                .collect();
            out.one(&AppDetail {
                app: AppRow::from(&app),
                env,
                procs,
                revs,
                scale,
            });
        }
    }
    Ok(())
}

fn scale_row(factor: crate::registry::ScaleFactor) -> ScaleRow {
    ScaleRow {
        app: factor.app,
        rev: factor.rev,
        proc: factor.proc,
        replicas: factor.replicas,
    }
}

pub async fn env(visor: &Visor, command: EnvCommand, out: &Output) -> Result<(), Error> {
    match command {
        EnvCommand::Set { app, vars } => {
            let pairs: Vec<(&str, &str)> =
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let written = visor.set_envs(&app, &pairs).await?;
            let rows: Vec<EnvRow> = vars
                .into_iter()
                .zip(written)
                .map(|((key, _), w)| EnvRow {
                    app: app.clone(),
                    key,
                    value: w.value,
                })
                .collect();
            out.list(&rows);
        }
        EnvCommand::Get { app, key } => {
            let value = visor.env(&app, &key).await?.value;
            out.one(&EnvRow { app, key, value });
        }
        EnvCommand::Unset { app, keys } => {
            let names: Vec<&str> = keys.iter().map(String::as_str).collect();
            let revision = visor.unset_envs(&app, &names).await?;
            let rows: Vec<Removed> = keys
                .iter()
                .map(|key| removed(Kind::Env, &[&app, key], revision))
                .collect();
            out.list(&rows);
        }
        EnvCommand::List { app } => {
            // A typo in the app name must not look like an app without env vars.
            visor.app(&app).await?;
            let envs = visor.envs(&app).await?;
            let rows: Vec<EnvRow> = envs
                .items
                .into_iter()
                .map(|e| EnvRow {
                    app: app.clone(),
                    key: e.name().to_owned(),
                    value: e.value,
                })
                .collect();
            out.list(&rows);
        }
    }
    Ok(())
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
