//! `visor relation`: relations between apps, and the settings each unit
//! publishes in them.
//!
//! A relation added without `--name` is named after its endpoints, so the
//! same command always proposes the same id; an id that cannot be derived
//! (too long for a name) is a usage error, found before anything is sent.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;
use visor_controllers::{Endpoint, Name, Relation, UnitSettings};

use super::hooks;
use super::output::{Output, Row, removed};
use super::{CliError, parse_assignment};
use crate::registry::{EndpointSpec, Error, Kind, Versioned, Visor};

#[derive(Debug, Subcommand)]
pub enum RelationCommand {
    /// Add a relation: `visor relation add web db:sql`; one endpoint is a peer relation.
    Add {
        /// `app` or `app:proc`: one (a peer relation) or two.
        // Its own id: `endpoints` is taken by the global `--endpoints`.
        #[arg(id = "relation_endpoints", value_name = "ENDPOINT", required = true, num_args = 1..=2)]
        endpoints: Vec<String>,
        /// The relation id (default: `<a>-<b>` after the endpoints, `<a>-peers` for a peer).
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a relation; the controller winds its units down (departed, then broken).
    Remove {
        /// Relation id.
        id: String,
    },
    /// List relations.
    List,
    /// Show a relation with its endpoints.
    Show {
        /// Relation id.
        id: String,
    },
    /// A unit's settings in a relation.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// The relation state a unit acknowledged: its members and their settings versions.
    State {
        /// Relation id.
        relation: String,
        /// Unit (instance id).
        unit: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Set settings, all or nothing: `visor relation settings set db-web <unit> host=db1 port=5432`.
    Set {
        /// Relation id.
        relation: String,
        /// Unit (instance id).
        unit: String,
        /// `KEY=VALUE` assignments.
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = parse_assignment)]
        assignments: Vec<(String, String)>,
    },
    /// Show a unit's settings and their version (the settings key's mod revision).
    Show {
        /// Relation id.
        relation: String,
        /// Unit (instance id).
        unit: String,
    },
}

impl RelationCommand {
    /// Refuses what is wrong with the command line alone, before connecting.
    pub fn check(&self) -> Result<(), CliError> {
        if let Self::Add { endpoints, name } = self {
            resolve(endpoints, name.as_deref())?;
        }
        Ok(())
    }
}

/// The parsed endpoints and the relation id: given, or derived from them.
fn resolve(
    endpoints: &[String],
    name: Option<&str>,
) -> Result<(String, Vec<EndpointSpec>), CliError> {
    let specs = endpoints
        .iter()
        .map(|e| e.parse())
        .collect::<Result<Vec<EndpointSpec>, Error>>()?;
    let id = match name {
        Some(name) => name.to_owned(),
        None => derived_id(&specs)?,
    };
    Ok((id, specs))
}

/// `<a>-<b>`, or `<a>-peers` for one endpoint, each side `app` or `app-proc`.
fn derived_id(specs: &[EndpointSpec]) -> Result<String, CliError> {
    let side = |spec: &EndpointSpec| match &spec.proc {
        Some(proc) => format!("{}-{proc}", spec.app),
        None => spec.app.clone(),
    };
    let id = match specs {
        [peer] => format!("{}-peers", side(peer)),
        sides => sides.iter().map(side).collect::<Vec<_>>().join("-"),
    };
    match Name::parse("relation", &id) {
        Ok(_) => Ok(id),
        Err(invalid) => Err(CliError::Usage(format!(
            "cannot name the relation after its endpoints ({invalid}); give one with --name"
        ))),
    }
}

#[derive(Debug, Serialize)]
struct EndpointRow {
    app: String,
    proc: Option<String>,
    name: String,
}

impl From<&Endpoint> for EndpointRow {
    fn from(endpoint: &Endpoint) -> Self {
        Self {
            app: endpoint.app.to_string(),
            proc: endpoint.proc.as_ref().map(ToString::to_string),
            name: endpoint.name.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct RelationRow {
    id: String,
    endpoints: Vec<EndpointRow>,
    created_at: DateTime<Utc>,
    mod_revision: i64,
}

impl From<&Versioned<Relation>> for RelationRow {
    fn from(relation: &Versioned<Relation>) -> Self {
        Self {
            // The key is what the registry addresses it by.
            id: relation.name().to_owned(),
            endpoints: relation
                .value
                .endpoints
                .iter()
                .map(EndpointRow::from)
                .collect(),
            created_at: relation.value.created_at,
            mod_revision: relation.mod_revision,
        }
    }
}

impl Row for RelationRow {
    const HEADERS: &'static [&'static str] = &["id", "endpoints", "created at"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            // As given on the command line: `app` or `app:proc`.
            self.endpoints
                .iter()
                .map(|e| match &e.proc {
                    Some(proc) => format!("{}:{proc}", e.app),
                    None => e.app.clone(),
                })
                .collect::<Vec<_>>()
                .join(","),
            self.created_at.to_rfc3339(),
        ]
    }
}

/// A unit's settings in a relation, with their change version.
#[derive(Debug, Serialize)]
struct SettingsRow {
    relation_id: String,
    unit: String,
    settings: std::collections::BTreeMap<String, String>,
    /// The settings key's mod revision: the version hooks carry.
    version: i64,
}

impl SettingsRow {
    fn new(relation: &str, unit: &str, settings: Versioned<UnitSettings>) -> Self {
        Self {
            relation_id: relation.to_owned(),
            unit: unit.to_owned(),
            settings: settings.value.0,
            version: settings.mod_revision,
        }
    }
}

impl Row for SettingsRow {
    const HEADERS: &'static [&'static str] = &["relation", "unit", "version", "settings"];
    fn cells(&self) -> Vec<String> {
        let settings: Vec<String> = self
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        vec![
            self.relation_id.clone(),
            self.unit.clone(),
            self.version.to_string(),
            if settings.is_empty() {
                "-".to_owned()
            } else {
                settings.join(",")
            },
        ]
    }
}

pub async fn relation(
    visor: &Visor,
    command: RelationCommand,
    out: &Output,
) -> Result<(), CliError> {
    match command {
        RelationCommand::Add { endpoints, name } => {
            let (id, specs) = resolve(&endpoints, name.as_deref())?;
            out.one(&RelationRow::from(&visor.add_relation(&id, &specs).await?));
        }
        RelationCommand::Remove { id } => {
            let revision = visor.remove_relation(&id).await?;
            out.one(&removed(Kind::Relation, &[&id], revision));
        }
        RelationCommand::List => {
            let relations = visor.relations().await?;
            out.list(
                &relations
                    .items
                    .iter()
                    .map(RelationRow::from)
                    .collect::<Vec<_>>(),
            );
        }
        RelationCommand::Show { id } => {
            out.one(&RelationRow::from(&visor.relation(&id).await?));
        }
        RelationCommand::Settings(SettingsCommand::Set {
            relation,
            unit,
            assignments,
        }) => {
            let written = visor.set_settings(&relation, &unit, &assignments).await?;
            out.one(&SettingsRow::new(&relation, &unit, written));
        }
        RelationCommand::Settings(SettingsCommand::Show { relation, unit }) => {
            let settings =
                relation_read(visor, &relation, visor.settings(&relation, &unit)).await?;
            out.one(&SettingsRow::new(&relation, &unit, settings));
        }
        RelationCommand::State { relation, unit } => {
            let state =
                relation_read(visor, &relation, visor.relation_state(&relation, &unit)).await?;
            out.one(&hooks::StateRow::new(&unit, state));
        }
    }
    Ok(())
}

/// A unit's document in `relation`; when it is missing because the relation
/// is, says so (a typo in the relation id must not read as a quiet unit).
/// Documents of a removed relation stay readable until they are cleared.
async fn relation_read<T>(
    visor: &Visor,
    relation: &str,
    read: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match read.await {
        Err(Error::NotFound(object)) => match visor.relation(relation).await {
            Ok(_) => Err(Error::NotFound(object)),
            Err(missing) => Err(missing),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(endpoints: &[&str]) -> Vec<EndpointSpec> {
        endpoints
            .iter()
            .map(|e| e.parse().expect("valid endpoint"))
            .collect()
    }

    #[test]
    fn ids_are_derived_from_the_endpoints() {
        let table: [(&[&str], &str); 5] = [
            (&["web", "db"], "web-db"),
            (&["web:http", "db:sql"], "web-http-db-sql"),
            (&["web", "db:sql"], "web-db-sql"),
            (&["db"], "db-peers"),
            (&["db:sql"], "db-sql-peers"),
        ];
        for (endpoints, id) in table {
            let derived = derived_id(&specs(endpoints)).expect("a valid id");
            assert_eq!(derived, id, "{endpoints:?}");
        }
    }

    #[test]
    fn an_id_too_long_to_derive_asks_for_a_name() {
        let long = "a".repeat(60);
        let endpoints = [long.as_str(), "db:sql"];
        match derived_id(&specs(&endpoints)) {
            Err(CliError::Usage(message)) => {
                assert!(message.contains("--name"), "{message}");
                assert!(message.contains("at most 63"), "{message}");
            }
            other => panic!("expected a usage error, got {other:?}"),
        }
    }
}
