//! `visor service` (definitions: register, unregister, list, show) and
//! `visor endpoints <svc>` (every endpoint key of a service, live or departed).
//!
//! Invariant: credentials never reach the output. An endpoint's password is
//! shown as `***` when one is set; the row type has no field that could
//! carry the real one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;
use visor_controllers::{Name, ServiceDef, ServiceEndpoint};

use super::CliError;
use super::args;
use super::output::{Output, Row, age, cell, removed, timestamp};
use crate::registry::{Kind, Versioned, Visor};

/// What a set password is shown as.
const MASK: &str = "***";

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Define a service before any endpoint registers (the first registration
    /// defines it otherwise, and never replaces a definition).
    Register {
        /// Service name.
        #[arg(value_parser = args::name("service"))]
        name: Name,
        /// The infrastructure cannot work without it: the controller reports it
        /// degraded while it has fewer live endpoints than --min-endpoints.
        #[arg(long)]
        critical: bool,
        /// Its endpoints are reachable from outside the private network.
        #[arg(long)]
        public: bool,
        /// Live endpoints it needs, at least 1.
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..))]
        min_endpoints: u32,
        /// The app whose instances serve it.
        #[arg(long, value_parser = args::name("app"))]
        app: Option<Name>,
        /// The proc type of that app that serves it.
        #[arg(long, requires = "app", value_parser = args::name("proc"))]
        proc: Option<Name>,
    },
    /// Remove a service's definition (and the controller's degraded status of
    /// it). Its endpoints stay: they are bound to the leases of the processes
    /// that registered them, and leave when those stop or die.
    Unregister {
        /// Service name.
        #[arg(value_parser = args::name("service"))]
        name: Name,
    },
    /// List service definitions.
    List,
    /// Show a service's definition with its live endpoints and tombstones counted.
    Show {
        /// Service name.
        #[arg(value_parser = args::name("service"))]
        name: Name,
    },
}

#[derive(Debug, Args)]
pub struct EndpointsArgs {
    /// Service name.
    #[arg(value_parser = args::name("service"))]
    service: Name,
}

#[derive(Debug, Serialize)]
struct ServiceRow {
    name: String,
    critical: bool,
    public: bool,
    min_endpoints: u32,
    app: Option<String>,
    proc: Option<String>,
    created_at: DateTime<Utc>,
    mod_revision: i64,
}

impl From<&Versioned<ServiceDef>> for ServiceRow {
    fn from(service: &Versioned<ServiceDef>) -> Self {
        let def = &service.value;
        Self {
            name: service.name().to_owned(),
            critical: def.critical,
            public: def.public,
            min_endpoints: def.min_endpoints,
            app: def.app.as_ref().map(ToString::to_string),
            proc: def.proc.as_ref().map(ToString::to_string),
            created_at: def.created_at,
            mod_revision: service.mod_revision,
        }
    }
}

impl ServiceRow {
    fn leading_cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.critical.to_string(),
            self.public.to_string(),
            self.min_endpoints.to_string(),
            cell(self.app.as_ref()),
            cell(self.proc.as_ref()),
        ]
    }
}

impl Row for ServiceRow {
    const HEADERS: &'static [&'static str] = &[
        "name",
        "critical",
        "public",
        "min endpoints",
        "app",
        "proc",
        "created at",
        "age",
    ];
    fn cells(&self) -> Vec<String> {
        let mut cells = self.leading_cells();
        cells.push(timestamp(&self.created_at));
        cells.push(age(&self.created_at));
        cells
    }
}

/// `service show`: the definition and how many endpoint keys are live or tombstones.
#[derive(Debug, Serialize)]
struct ServiceDetail {
    #[serde(flatten)]
    service: ServiceRow,
    live_endpoints: usize,
    tombstones: usize,
}

impl Row for ServiceDetail {
    const HEADERS: &'static [&'static str] = &[
        "name",
        "critical",
        "public",
        "min endpoints",
        "app",
        "proc",
        "live endpoints",
        "tombstones",
        "created at",
        "age",
    ];
    fn cells(&self) -> Vec<String> {
        let mut cells = self.service.leading_cells();
        cells.push(self.live_endpoints.to_string());
        cells.push(self.tombstones.to_string());
        cells.push(timestamp(&self.service.created_at));
        cells.push(age(&self.service.created_at));
        cells
    }
}

/// Whether an endpoint key holds a live endpoint or the tombstone of a clean stop.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "kebab-case")]
enum EndpointState {
    Live,
    Departed,
}

impl EndpointState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Departed => "departed",
        }
    }
}

#[derive(Debug, Serialize)]
struct EndpointRow {
    service: String,
    id: String,
    state: EndpointState,
    hostname: String,
    ports: BTreeMap<String, String>,
    private_hostname: String,
    private_ports: BTreeMap<String, String>,
    user: Option<String>,
    /// `***` when a password is set: never the password itself.
    password: Option<&'static str>,
    critical: bool,
    host: Option<String>,
    instance: Option<String>,
    registered_at: DateTime<Utc>,
    departed_at: Option<DateTime<Utc>>,
}

impl EndpointRow {
    fn new(service: &str, endpoint: &Versioned<ServiceEndpoint>) -> Self {
        let e = &endpoint.value;
        Self {
            service: service.to_owned(),
            id: endpoint.name().to_owned(),
            state: match e.is_live() {
                true => EndpointState::Live,
                false => EndpointState::Departed,
            },
            hostname: e.hostname.clone(),
            ports: e.ports.clone(),
            private_hostname: e.private_hostname.clone(),
            private_ports: e.private_ports.clone(),
            user: Some(e.user.clone()).filter(|u| !u.is_empty()),
            password: (!e.password.is_empty()).then_some(MASK),
            critical: e.critical,
            host: e.host.as_ref().map(ToString::to_string),
            instance: e.instance.as_ref().map(ToString::to_string),
            registered_at: e.registered_at,
            departed_at: e.departed_at,
        }
    }
}

/// `scheme=port,...`, or `-` for none.
fn ports_cell(ports: &BTreeMap<String, String>) -> String {
    if ports.is_empty() {
        return "-".to_owned();
    }
    ports
        .iter()
        .map(|(scheme, port)| format!("{scheme}={port}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Row for EndpointRow {
    const HEADERS: &'static [&'static str] = &[
        "id",
        "state",
        "hostname",
        "ports",
        "private hostname",
        "private ports",
        "credentials",
        "host",
        "instance",
        "registered at",
        "age",
    ];
    fn cells(&self) -> Vec<String> {
        let credentials = match (&self.user, self.password) {
            (None, None) => "-".to_owned(),
            (user, password) => format!(
                "{}:{}",
                user.as_deref().unwrap_or_default(),
                password.unwrap_or_default()
            ),
        };
        vec![
            self.id.clone(),
            self.state.as_str().to_owned(),
            self.hostname.clone(),
            ports_cell(&self.ports),
            self.private_hostname.clone(),
            ports_cell(&self.private_ports),
            credentials,
            cell(self.host.as_ref()),
            cell(self.instance.as_ref()),
            timestamp(&self.registered_at),
            age(&self.registered_at),
        ]
    }
}

pub async fn service(visor: &Visor, command: ServiceCommand, out: &Output) -> Result<(), CliError> {
    match command {
        ServiceCommand::Register {
            name,
            critical,
            public,
            min_endpoints,
            app,
            proc,
        } => {
            let definition = ServiceDef {
                critical,
                public,
                min_endpoints,
                app,
                proc,
                created_at: Utc::now(),
            };
            let written = visor.register_service(name.as_str(), definition).await?;
            out.one(&ServiceRow::from(&written))?;
        }
        ServiceCommand::Unregister { name } => {
            let revision = visor.unregister_service(name.as_str()).await?;
            out.one(&removed(Kind::Service, &[name.as_str()], revision))?;
        }
        ServiceCommand::List => {
            let services = visor.services().await?;
            out.list(
                &services
                    .items
                    .iter()
                    .map(ServiceRow::from)
                    .collect::<Vec<_>>(),
            )?;
        }
        ServiceCommand::Show { name } => {
            let definition = visor.service(name.as_str()).await?;
            let endpoints = visor.service_endpoints(name.as_str()).await?;
            let live = endpoints.items.iter().filter(|e| e.value.is_live()).count();
            out.one(&ServiceDetail {
                service: ServiceRow::from(&definition),
                live_endpoints: live,
                tombstones: endpoints.items.len() - live,
            })?;
        }
    }
    Ok(())
}

pub async fn endpoints(visor: &Visor, args: EndpointsArgs, out: &Output) -> Result<(), CliError> {
    let service = args.service.as_str();
    let listing = visor.service_endpoints(service).await?;
    if listing.items.is_empty() && listing.skipped.is_empty() {
        // A typo in the service name must not look like a service without
        // endpoints; a defined service may have none.
        visor.service(service).await?;
    }
    out.list(
        &listing
            .items
            .iter()
            .map(|e| EndpointRow::new(service, e))
            .collect::<Vec<_>>(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_masked_and_no_credentials_show_as_a_dash() {
        let endpoint = |user: &str, password: &str| Versioned {
            key: "/visor/endpoints/db/u1".to_owned(),
            value: ServiceEndpoint {
                hostname: "db1".to_owned(),
                ports: BTreeMap::from([("pg".to_owned(), "5432".to_owned())]),
                private_hostname: "db1.internal".to_owned(),
                private_ports: BTreeMap::new(),
                user: user.to_owned(),
                password: password.to_owned(),
                critical: false,
                host: None,
                instance: None,
                departed: false,
                departed_at: None,
                registered_at: Utc::now(),
            },
            create_revision: 1,
            mod_revision: 1,
            revision: 1,
        };
        let table = [
            (("admin", "s3cret"), "admin:***"),
            (("", "s3cret"), ":***"),
            (("admin", ""), "admin:"),
            (("", ""), "-"),
        ];
        for ((user, password), shown) in table {
            let row = EndpointRow::new("db", &endpoint(user, password));
            assert_eq!(row.cells()[6], shown, "{user:?} {password:?}");
            let json = serde_json::to_string(&row).expect("serializes");
            assert!(!json.contains("s3cret"), "{json}");
        }
        let row = EndpointRow::new("db", &endpoint("admin", "s3cret"));
        assert_eq!(row.password, Some(MASK));
        assert_eq!(row.cells()[5], "-", "no private ports");
    }
}
