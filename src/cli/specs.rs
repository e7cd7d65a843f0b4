//! `visor diff -f`, `visor apply -f` and `visor get app`: whole apps as
//! spec files (`docs/app-spec.md`).
//!
//! `diff` exits 0 when the registry already holds every spec and 1 when it
//! does not, as `diff` and `kubectl diff` do. `apply` writes each app's
//! changes in one transaction against the state its diff was computed from:
//! a change made in between is a conflict (exit 4) that writes nothing.

use std::io::IsTerminal;

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::Value;
use visor_controllers::{AppSpec, Change, Deployed, FieldChange, Name, WaitGoal};

use super::CliError;
use super::args;
use super::output::Output;
use crate::registry::{AppState, Visor};

/// Where specs come from.
#[derive(Debug, Args)]
pub struct SpecFiles {
    /// A spec file (YAML or JSON), a directory of them, or `-` for standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    pub file: String,
    /// Also remove what an app's spec no longer names (its env vars, procs,
    /// revisions, services and relations).
    #[arg(long)]
    pub prune: bool,
}

/// `visor diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub specs: SpecFiles,
}

/// `visor apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub specs: SpecFiles,
    /// Show what would change and write nothing (as `visor diff`).
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: super::wait::WaitArgs,
}

/// `visor get`.
#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// An app as a spec (YAML unless `-o json`), as `visor apply -f` takes it.
    App {
        /// App name.
        #[arg(value_parser = args::name("app"))]
        name: Name,
    },
}

/// Reads and checks the specs `files` names, before anything connects.
pub fn load(files: &SpecFiles) -> Result<Vec<AppSpec>, CliError> {
    let texts = crate::spec::read(&files.file)?;
    Ok(crate::spec::parse_all(&texts)?)
}

/// One change as printed: an app, an object, and what happens to it.
#[derive(Debug, Serialize)]
struct ChangeRow<'a> {
    app: &'a str,
    object: String,
    action: &'static str,
    /// The fields changed (`""`: the whole value).
    fields: Vec<FieldRow>,
}

#[derive(Debug, Serialize)]
struct FieldRow {
    path: String,
    before: Option<Value>,
    after: Option<Value>,
}

/// `visor diff`: what applying would change; [`CliError::Differs`] if anything.
pub async fn diff(
    visor: &Visor,
    specs: &[AppSpec],
    args: &DiffArgs,
    out: &Output,
) -> Result<(), CliError> {
    let mut differs = false;
    for spec in specs {
        let state = visor.app_state(spec.name.as_str()).await?;
        let changes = state.changes(spec, args.specs.prune);
        differs |= !changes.is_empty();
        print_changes(&state, &changes, out)?;
    }
    match differs {
        true => Err(CliError::Differs),
        false => Ok(()),
    }
}

/// `visor apply`: each app's changes, written in one transaction.
pub async fn apply(
    visor: &Visor,
    specs: &[AppSpec],
    args: &ApplyArgs,
    out: &Output,
) -> Result<(), CliError> {
    let mut goals = Vec::new();
    for spec in specs {
        let state = visor.app_state(spec.name.as_str()).await?;
        if args.dry_run {
            print_changes(&state, &state.changes(spec, args.specs.prune), out)?;
            continue;
        }
        let applied = visor.apply_spec(spec, &state, args.specs.prune).await?;
        goals.push(WaitGoal::App {
            app: spec.name.clone(),
            current: spec.current.clone().map(|revision| Deployed {
                revision,
                scale: spec.scale.clone(),
            }),
        });
        print_changes(&state, &applied.changes, out)?;
        if !out.is_structured() {
            match applied.revision {
                Some(revision) => out.text(&format!(
                    "app {}: {} change(s) applied at revision {revision}",
                    spec.name,
                    applied.changes.len()
                ))?,
                None => out.text(&format!("app {}: unchanged", spec.name))?,
            }
        }
    }
    args.wait.wait_for(visor, &goals).await
}

/// `visor get`.
pub async fn get(visor: &Visor, command: GetCommand, out: &Output) -> Result<(), CliError> {
    match command {
        GetCommand::App { name } => {
            let state = visor.app_state(name.as_str()).await?;
            let Some(spec) = state.spec else {
                return Err(
                    crate::registry::Error::NotFound(crate::registry::ObjectRef::new(
                        crate::registry::Kind::App,
                        &[name.as_str()],
                    ))
                    .into(),
                );
            };
            Ok(out.document(&spec)?)
        }
    }
}

fn print_changes(state: &AppState, changes: &[Change], out: &Output) -> Result<(), CliError> {
    let app = state.app.as_str();
    let rows: Vec<ChangeRow<'_>> = changes.iter().map(|change| row(app, change)).collect();
    if out.is_structured() {
        for row in &rows {
            out.json(row)?;
        }
        return Ok(());
    }
    let colour = Colour::for_stdout();
    for row in &rows {
        let (mark, paint) = match row.action {
            "create" => ("+", colour.green),
            "remove" => ("-", colour.red),
            _ => ("~", colour.yellow),
        };
        let reset = colour.reset;
        if row.action == "update" {
            for field in &row.fields {
                let path = match field.path.as_str() {
                    "" => String::new(),
                    path => format!(" {path}"),
                };
                out.text(&format!(
                    "{paint}{mark} {app}: {}{path}: {} → {}{reset}",
                    row.object,
                    shown(field.before.as_ref()),
                    shown(field.after.as_ref()),
                ))?;
            }
        } else {
            let value = row.fields.first().and_then(|f| match row.action {
                "create" => f.after.as_ref(),
                _ => f.before.as_ref(),
            });
            out.text(&format!(
                "{paint}{mark} {app}: {} {}{reset}",
                row.object,
                shown(value)
            ))?;
        }
    }
    Ok(())
}

fn row<'a>(app: &'a str, change: &Change) -> ChangeRow<'a> {
    let whole = |before: Option<&Value>, after: Option<&Value>| {
        vec![FieldRow {
            path: String::new(),
            before: before.cloned(),
            after: after.cloned(),
        }]
    };
    let (action, fields) = match change {
        Change::Create(_, value) => ("create", whole(None, Some(value))),
        Change::Remove(_, value) => ("remove", whole(Some(value), None)),
        Change::Update(_, fields) => (
            "update",
            fields
                .iter()
                .map(
                    |FieldChange {
                         path,
                         before,
                         after,
                     }| FieldRow {
                        path: path.clone(),
                        before: before.clone(),
                        after: after.clone(),
                    },
                )
                .collect(),
        ),
    };
    ChangeRow {
        app,
        object: change.object().to_string(),
        action,
        fields,
    }
}

/// A value as the diff shows it: JSON on one line, `(none)` when absent.
fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "(none)".to_owned(), Value::to_string)
}

/// ANSI colours, or nothing when stdout is no terminal or `NO_COLOR` is set.
struct Colour {
    green: &'static str,
    red: &'static str,
    yellow: &'static str,
    reset: &'static str,
}

impl Colour {
    fn for_stdout() -> Self {
        let on = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        match on {
            true => Self {
                green: "\x1b[32m",
                red: "\x1b[31m",
                yellow: "\x1b[33m",
                reset: "\x1b[0m",
            },
            false => Self {
                green: "",
                red: "",
                yellow: "",
                reset: "",
            },
        }
    }
}
