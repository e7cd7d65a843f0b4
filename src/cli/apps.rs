//! Commands on apps and their env vars.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;
use visor_controllers::{App, EnvKey, Name};

use super::CliError;
use super::args::{self, distinct};
use super::output::{Output, Removed, Row, age, removed, timestamp};
use super::procs::{ProcRow, RevRow, ScaleRow, scale_row};
use crate::registry::{Kind, Versioned, Visor};

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Register an app.
    Register {
        /// App name.
        #[arg(value_parser = args::name("app"))]
        name: Name,
        /// Where its source lives.
        #[arg(long)]
        repo_url: String,
        /// The stack its processes run on (hosts offer stacks).
        #[arg(long, value_parser = args::name("stack"))]
        stack: Name,
        /// Deployment type (free-form).
        #[arg(long, default_value = "lxc")]
        deploy_type: String,
    },
    /// Unregister an app with its env vars, proc types, revisions and scale factors.
    Unregister {
        /// App name.
        #[arg(value_parser = args::name("app"))]
        name: Name,
    },
    /// List apps.
    List,
    /// Show an app with its env vars, proc types, revisions and scale factors.
    Show {
        /// App name.
        #[arg(value_parser = args::name("app"))]
        name: Name,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Set env vars: `visor env set web PORT=80 MODE=prod`.
    Set {
        /// App name.
        #[arg(value_parser = args::name("app"))]
        app: Name,
        /// `KEY=VALUE` assignments.
        #[arg(required = true, value_parser = args::env_assignment)]
        vars: Vec<(EnvKey, String)>,
    },
    /// Print one env var.
    Get {
        /// App name.
        #[arg(value_parser = args::name("app"))]
        app: Name,
        /// Variable name.
        // Its own id: `key` is taken by the global `--key` (TLS client key).
        #[arg(id = "env_key", value_name = "KEY", value_parser = args::env_key)]
        key: EnvKey,
    },
    /// Remove env vars.
    Unset {
        /// App name.
        #[arg(value_parser = args::name("app"))]
        app: Name,
        /// Variable names.
        #[arg(required = true, value_parser = args::env_key)]
        keys: Vec<EnvKey>,
    },
    /// List an app's env vars.
    List {
        /// App name.
        #[arg(value_parser = args::name("app"))]
        app: Name,
    },
}

impl EnvCommand {
    /// Refuses a variable given twice: one transaction cannot write a key twice.
    pub fn check(&self) -> Result<(), CliError> {
        match self {
            Self::Set { vars, .. } => distinct("env var", vars.iter().map(|(key, _)| key)),
            Self::Unset { keys, .. } => distinct("env var", keys),
            Self::Get { .. } | Self::List { .. } => Ok(()),
        }
    }
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
    const HEADERS: &'static [&'static str] = &[
        "name",
        "stack",
        "deploy type",
        "repo url",
        "created at",
        "age",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.stack.clone(),
            self.deploy_type.clone(),
            self.repo_url.clone(),
            timestamp(&self.created_at),
            age(&self.created_at),
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

pub async fn app(visor: &Visor, command: AppCommand, out: &Output) -> Result<(), CliError> {
    match command {
        AppCommand::Register {
            name,
            repo_url,
            stack,
            deploy_type,
        } => {
            let spec = App {
                repo_url,
                stack,
                deploy_type,
                created_at: Utc::now(),
            };
            out.one(&AppRow::from(
                &visor.register_app(name.as_str(), spec).await?,
            ))?;
        }
        AppCommand::Unregister { name } => {
            let revision = visor.unregister_app(name.as_str()).await?;
            out.one(&removed(Kind::App, &[name.as_str()], revision))?;
        }
        AppCommand::List => {
            let apps = visor.apps().await?;
            out.list(&apps.items.iter().map(AppRow::from).collect::<Vec<_>>())?;
        }
        AppCommand::Show { name } => {
            let name = name.as_str();
            let app = visor.app(name).await?;
            let env = visor
                .envs(name)
                .await?
                .items
                .into_iter()
                .map(|e| (e.name().to_owned(), e.value))
                .collect();
            let procs = visor
                .procs(name)
                .await?
                .items
                .iter()
                .map(|p| ProcRow::new(name, p))
                .collect();
            let revs = visor
                .revs(name)
                .await?
                .items
                .iter()
                .map(|r| RevRow::new(name, r))
                .collect();
            let scale = visor
                .scales(Some(name))
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
            })?;
        }
    }
    Ok(())
}

pub async fn env(visor: &Visor, command: EnvCommand, out: &Output) -> Result<(), CliError> {
    match command {
        EnvCommand::Set { app, vars } => {
            let pairs: Vec<(&str, &str)> =
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let written = visor.set_envs(app.as_str(), &pairs).await?;
            let rows: Vec<EnvRow> = vars
                .into_iter()
                .zip(written)
                .map(|((key, _), w)| EnvRow {
                    app: app.to_string(),
                    key: key.to_string(),
                    value: w.value,
                })
                .collect();
            out.list(&rows)?;
        }
        EnvCommand::Get { app, key } => {
            let value = visor.env(app.as_str(), key.as_str()).await?.value;
            out.one(&EnvRow {
                app: app.to_string(),
                key: key.to_string(),
                value,
            })?;
        }
        EnvCommand::Unset { app, keys } => {
            let names: Vec<&str> = keys.iter().map(EnvKey::as_str).collect();
            let revision = visor.unset_envs(app.as_str(), &names).await?;
            let rows: Vec<Removed> = names
                .iter()
                .map(|key| removed(Kind::Env, &[app.as_str(), key], revision))
                .collect();
            out.list(&rows)?;
        }
        EnvCommand::List { app } => {
            // A typo in the app name must not look like an app without env vars.
            visor.app(app.as_str()).await?;
            let envs = visor.envs(app.as_str()).await?;
            let rows: Vec<EnvRow> = envs
                .items
                .into_iter()
                .map(|e| EnvRow {
                    app: app.to_string(),
                    key: e.name().to_owned(),
                    value: e.value,
                })
                .collect();
            out.list(&rows)?;
        }
    }
    Ok(())
}
