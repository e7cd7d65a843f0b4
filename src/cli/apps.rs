//! Commands on apps and their env vars.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;
use visor_controllers::{App, Name};

use super::output::{Output, Removed, Row, removed};
use super::parse_assignment;
use super::procs::{ProcRow, RevRow, ScaleRow, scale_row};
use crate::registry::{Error, Kind, Versioned, Visor};

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
