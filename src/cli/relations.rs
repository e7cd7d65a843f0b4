//! `visor relation`: relations between apps, and the settings each unit
//! publishes in them.
//!
//! A relation added without `--name` is named after its endpoints, so the
//! same command always proposes the same id; an id that cannot be derived
//! (too long for a name), like endpoints that overlap, is a usage error,
//! found before anything connects.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;
use visor_controllers::{Endpoint, Name, Relation, UnitSettings};

use super::CliError;
use super::args;
use super::hooks;
use super::output::{Output, Row, age, removed, timestamp};
use crate::registry::{EndpointSpec, Error, Kind, Versioned, Visor};

#[derive(Debug, Subcommand)]
pub enum RelationCommand {
    /// Add a relation: `visor relation add web db:sql`; one endpoint is a peer relation.
    Add {
        /// `app` or `app:proc`: one (a peer relation) or two.
        // Its own id: `endpoints` is taken by the global `--endpoints`.
        #[arg(id = "relation_endpoints", value_name = "ENDPOINT", required = true, num_args = 1..=2,
              value_parser = parse_endpoint)]
        endpoints: Vec<EndpointSpec>,
        /// The relation id (default: `<a>-<b>` after the endpoints, `<a>-peers` for a peer).
        #[arg(long, value_parser = args::name("relation"))]
        name: Option<Name>,
    },
    /// Remove a relation; the controller winds its units down (departed, then broken).
    Remove {
        /// Relation id.
        #[arg(value_parser = args::name("relation"))]
        id: Name,
    },
    /// List relations.
    List,
    /// Show a relation with its endpoints.
    Show {
        /// Relation id.
        #[arg(value_parser = args::name("relation"))]
        id: Name,
    },
    /// A unit's settings in a relation.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// The relation state a unit acknowledged: its members and their settings versions.
    State {
        /// Relation id.
        #[arg(value_parser = args::name("relation"))]
        relation: Name,
        /// Unit (instance id).
        #[arg(value_parser = args::name("unit"))]
        unit: Name,
    },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Set settings, all or nothing: `visor relation settings set db-web <unit> host=db1 port=5432`.
    Set {
        /// Relation id.
        #[arg(value_parser = args::name("relation"))]
        relation: Name,
        /// Unit (instance id).
        #[arg(value_parser = args::name("unit"))]
        unit: Name,
        /// `KEY=VALUE` assignments.
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = args::assignment)]
        assignments: Vec<(String, String)>,
    },
    /// Show a unit's settings and their version (the settings key's mod revision).
    Show {
        /// Relation id.
        #[arg(value_parser = args::name("relation"))]
        relation: Name,
        /// Unit (instance id).
        #[arg(value_parser = args::name("unit"))]
        unit: Name,
    },
}

/// Parses `app` or `app:proc`, both names validated.
fn parse_endpoint(text: &str) -> Result<EndpointSpec, Error> {
    text.parse()
}

impl RelationCommand {
    /// Refuses a relation that cannot be named or whose endpoints overlap.
    pub fn check(&self) -> Result<(), CliError> {
        if let Self::Add { endpoints, name } = self {
            resolve(endpoints, name.as_ref())?;
        }
        Ok(())
    }
}

/// The relation id, given or derived from the endpoints, once the relation
/// it names is known to be well formed.
fn resolve(endpoints: &[EndpointSpec], name: Option<&Name>) -> Result<Name, CliError> {
    let id = match name {
        Some(name) => name.clone(),
        None => derived_id(endpoints)?,
    };
    let sides = endpoints
        .iter()
        .map(EndpointSpec::endpoint)
        .collect::<Result<Vec<_>, Error>>()?;
    Relation::new(id.clone(), sides, Utc::now())
        .map_err(|invalid| CliError::Usage(format!("invalid relation: {invalid}")))?;
    Ok(id)
}

/// `<a>-<b>`, or `<a>-peers` for one endpoint, each side `app` or `app-proc`.
fn derived_id(specs: &[EndpointSpec]) -> Result<Name, CliError> {
    let side = |spec: &EndpointSpec| match &spec.proc {
        Some(proc) => format!("{}-{proc}", spec.app),
        None => spec.app.clone(),
    };
    let id = match specs {
        [peer] => format!("{}-peers", side(peer)),
        sides => sides.iter().map(side).collect::<Vec<_>>().join("-"),
    };
    match Name::parse("relation", &id) {
        Ok(id) => Ok(id),
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
    const HEADERS: &'static [&'static str] = &["id", "endpoints", "created at", "age"];
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
            timestamp(&self.created_at),
            age(&self.created_at),
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
            let id = resolve(&endpoints, name.as_ref())?;
            let added = visor.add_relation(id.as_str(), &endpoints).await?;
            out.one(&RelationRow::from(&added))?;
        }
        RelationCommand::Remove { id } => {
            let revision = visor.remove_relation(id.as_str()).await?;
            out.one(&removed(Kind::Relation, &[id.as_str()], revision))?;
        }
        RelationCommand::List => {
            let relations = visor.relations().await?;
            out.list(
                &relations
                    .items
                    .iter()
                    .map(RelationRow::from)
                    .collect::<Vec<_>>(),
            )?;
        }
        RelationCommand::Show { id } => {
            out.one(&RelationRow::from(&visor.relation(id.as_str()).await?))?;
        }
        RelationCommand::Settings(SettingsCommand::Set {
            relation,
            unit,
            assignments,
        }) => {
            let (relation, unit) = (relation.as_str(), unit.as_str());
            let written = visor.set_settings(relation, unit, &assignments).await?;
            out.one(&SettingsRow::new(relation, unit, written))?;
        }
        RelationCommand::Settings(SettingsCommand::Show { relation, unit }) => {
            let (relation, unit) = (relation.as_str(), unit.as_str());
            let settings = relation_read(visor, relation, visor.settings(relation, unit)).await?;
            out.one(&SettingsRow::new(relation, unit, settings))?;
        }
        RelationCommand::State { relation, unit } => {
            let (relation, unit) = (relation.as_str(), unit.as_str());
            let state =
                relation_read(visor, relation, visor.relation_state(relation, unit)).await?;
            out.one(&hooks::StateRow::new(unit, state))?;
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
            assert_eq!(derived.as_str(), id, "{endpoints:?}");
        }
    }

    #[test]
    fn overlapping_endpoints_are_a_usage_error() {
        for endpoints in [
            &["web", "web:http"][..],
            &["web:http", "web:http"],
            &["web", "web"],
        ] {
            match resolve(&specs(endpoints), None) {
                Err(CliError::Usage(message)) => {
                    assert!(message.starts_with("invalid relation: "), "{message}");
                    assert!(message.contains("overlap"), "{message}");
                }
                other => panic!("{endpoints:?}: expected a usage error, got {other:?}"),
            }
        }
        let id = resolve(&specs(&["web:http", "web:worker"]), None).expect("no overlap");
        assert_eq!(id.as_str(), "web-http-web-worker");
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
