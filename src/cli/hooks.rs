//! The units' side of relations: `visor hooks` (the hooks the controller
//! handed out and no unit has acknowledged yet, with the failed attempts
//! their agents recorded) and the acknowledged state `visor relation state`
//! prints.
//!
//! Units and relations are read from the keys (`/hooks/<unit>/<rel-id>`,
//! `/relstate/<rel-id>/<unit>`), which are what the controller and agents
//! address them by.

use std::collections::BTreeMap;

use clap::Args;
use serde::Serialize;
use visor_controllers::{HandedHook, HookFailure, HookKind, Name, RelationState};

use super::CliError;
use super::args;
use super::output::{Output, Row, cell};
use crate::registry::{KeyPath, Keys, Versioned, Visor};

#[derive(Debug, Args)]
pub struct HooksArgs {
    /// Only this unit's hooks (an instance id).
    #[arg(value_parser = args::name("unit"))]
    unit: Option<Name>,
}

#[derive(Debug, Serialize)]
struct HookRow {
    unit: String,
    relation_id: String,
    kind: HookKind,
    remote_unit: Option<String>,
    /// The remote unit's settings version the hook carries.
    change_version: i64,
    /// The hook key's mod revision, which an acknowledgement compares.
    mod_revision: i64,
    /// The last failed attempt to run it, as its agent recorded it.
    failed: Option<HookFailure>,
}

impl HookRow {
    /// The row of a listed hook; `None` if its key names no hook (a listing
    /// holds none such).
    fn new(keys: &Keys, handed: &Versioned<HandedHook>) -> Option<Self> {
        let KeyPath::Hook { unit, relation } = keys.parse(&handed.key) else {
            return None;
        };
        let hook = &handed.value.hook;
        Some(Self {
            unit: unit.into(),
            relation_id: relation.into(),
            kind: hook.kind,
            remote_unit: hook.remote_unit.clone(),
            change_version: hook.change_version,
            mod_revision: handed.mod_revision,
            failed: handed.value.failed.clone(),
        })
    }
}

impl Row for HookRow {
    const HEADERS: &'static [&'static str] = &[
        "unit",
        "relation",
        "kind",
        "remote unit",
        "version",
        "failed attempts",
        "last failure",
    ];
    fn cells(&self) -> Vec<String> {
        let failed = self.failed.as_ref();
        // A reason may hold a hook's output, lines and all: one line per row.
        let reason = failed.map(|f| {
            let at = f.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            format!(
                "{at}: {}",
                f.reason.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        });
        vec![
            self.unit.clone(),
            self.relation_id.clone(),
            self.kind.to_string(),
            cell(self.remote_unit.as_ref()),
            self.change_version.to_string(),
            cell(failed.map(|f| f.attempts)),
            cell(reason),
        ]
    }
}

/// What a unit acknowledged in a relation.
#[derive(Debug, Serialize)]
pub(super) struct StateRow {
    relation_id: String,
    unit: String,
    /// Remote unit → the settings version last delivered.
    members: BTreeMap<String, i64>,
    changed_pending: Option<String>,
    /// The state key's mod revision, which the next acknowledgement compares.
    mod_revision: i64,
}

impl StateRow {
    pub(super) fn new(unit: &str, state: Versioned<RelationState>) -> Self {
        Self {
            relation_id: state.value.relation_id,
            unit: unit.to_owned(),
            members: state.value.members,
            changed_pending: state.value.changed_pending,
            mod_revision: state.mod_revision,
        }
    }
}

impl Row for StateRow {
    const HEADERS: &'static [&'static str] = &[
        "relation",
        "unit",
        "members",
        "changed pending",
        "mod revision",
    ];
    fn cells(&self) -> Vec<String> {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|(unit, version)| format!("{unit}={version}"))
            .collect();
        vec![
            self.relation_id.clone(),
            self.unit.clone(),
            if members.is_empty() {
                "-".to_owned()
            } else {
                members.join(",")
            },
            cell(self.changed_pending.as_ref()),
            self.mod_revision.to_string(),
        ]
    }
}

pub async fn hooks(visor: &Visor, args: HooksArgs, out: &Output) -> Result<(), CliError> {
    let listing = visor.hooks(args.unit.as_ref().map(Name::as_str)).await?;
    let rows: Vec<HookRow> = listing
        .items
        .iter()
        .filter_map(|hook| HookRow::new(visor.registry().keys(), hook))
        .collect();
    out.list(&rows)?;
    Ok(())
}
