//! Commands on observed state: instances, hosts, tickets, and the event stream.

use chrono::{DateTime, Utc};
use clap::Args;
use futures::StreamExt;
use serde::Serialize;
use visor_controllers::{Host, Instance, InstanceState, Name, Ticket, TicketOp};

use super::CliError;
use super::args;
use super::output::{Output, Row, age, cell};
use crate::registry::{Event, InstanceFilter, KeyPath, Keys, Versioned, Visor};

#[derive(Debug, Args)]
pub struct InstancesArgs {
    /// Only instances of this app.
    #[arg(long, value_parser = args::name("app"))]
    app: Option<Name>,
    /// Only instances of this revision.
    #[arg(long, value_parser = args::name("rev"))]
    rev: Option<Name>,
    /// Only instances of this proc type.
    #[arg(long, value_parser = args::name("proc"))]
    proc: Option<Name>,
    /// Only instances on this host.
    #[arg(long, value_parser = args::name("host"))]
    host: Option<Name>,
}

#[derive(Debug, Args)]
pub struct TicketsArgs {
    /// Only tickets addressed to this host.
    #[arg(long, value_parser = args::name("host"))]
    host: Option<Name>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Start at this registry revision (default: from now on).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
    from: i64,
    /// Exit after this many events.
    #[arg(long)]
    count: Option<usize>,
}

#[derive(Debug, Serialize)]
struct InstanceRow {
    id: String,
    app: String,
    rev: String,
    proc: String,
    host: Option<String>,
    state: InstanceState,
    port: Option<u16>,
    restarts: u32,
    reason: Option<String>,
    created_at: DateTime<Utc>,
    /// When it last changed state; `null` until it first does.
    updated_at: Option<DateTime<Utc>>,
}

impl From<&Versioned<Instance>> for InstanceRow {
    fn from(i: &Versioned<Instance>) -> Self {
        let v = &i.value;
        Self {
            id: i.name().to_owned(),
            app: v.app.to_string(),
            rev: v.rev.to_string(),
            proc: v.proc.to_string(),
            host: v.host.as_ref().map(ToString::to_string),
            state: v.state,
            port: v.port,
            restarts: v.restarts,
            reason: v.reason.clone(),
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

impl Row for InstanceRow {
    const HEADERS: &'static [&'static str] = &[
        "id", "app", "rev", "proc", "host", "state", "port", "restarts", "age",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.app.clone(),
            self.rev.clone(),
            self.proc.clone(),
            cell(self.host.as_ref()),
            self.state.to_string(),
            cell(self.port),
            self.restarts.to_string(),
            age(&self.created_at),
        ]
    }
}

#[derive(Debug, Serialize)]
struct HostRow {
    name: String,
    addr: String,
    capacity: u32,
    stacks: Vec<String>,
    labels: std::collections::BTreeMap<String, String>,
    registered_at: DateTime<Utc>,
}

impl From<&Versioned<Host>> for HostRow {
    fn from(h: &Versioned<Host>) -> Self {
        Self {
            name: h.name().to_owned(),
            addr: h.value.addr.clone(),
            capacity: h.value.capacity,
            stacks: h.value.stacks.iter().map(ToString::to_string).collect(),
            labels: h.value.labels.clone(),
            registered_at: h.value.registered_at,
        }
    }
}

impl Row for HostRow {
    const HEADERS: &'static [&'static str] =
        &["name", "addr", "capacity", "stacks", "labels", "age"];
    fn cells(&self) -> Vec<String> {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        vec![
            self.name.clone(),
            self.addr.clone(),
            self.capacity.to_string(),
            self.stacks.join(","),
            if labels.is_empty() {
                "-".to_owned()
            } else {
                labels.join(",")
            },
            age(&self.registered_at),
        ]
    }
}

#[derive(Debug, Serialize)]
struct TicketRow {
    host: String,
    id: String,
    op: TicketOp,
    instance: String,
    app: String,
    rev: String,
    proc: String,
    claimed_by: Option<String>,
    created_at: DateTime<Utc>,
    create_revision: i64,
}

impl TicketRow {
    /// The row of a listed ticket; `None` if its key names no ticket (a
    /// listing holds none such).
    fn new(keys: &Keys, t: &Versioned<Ticket>) -> Option<Self> {
        let KeyPath::Ticket { host, ticket } = keys.parse(&t.key) else {
            return None;
        };
        let v = &t.value;
        Some(Self {
            host: host.into(),
            id: ticket.into(),
            op: v.op,
            instance: v.instance.to_string(),
            app: v.app.to_string(),
            rev: v.rev.to_string(),
            proc: v.proc.to_string(),
            claimed_by: v.claimed_by.as_ref().map(ToString::to_string),
            created_at: v.created_at,
            create_revision: t.create_revision,
        })
    }
}

impl Row for TicketRow {
    const HEADERS: &'static [&'static str] = &[
        "host",
        "id",
        "op",
        "instance",
        "app",
        "rev",
        "proc",
        "claimed by",
        "age",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.host.clone(),
            self.id.clone(),
            self.op.to_string(),
            self.instance.clone(),
            self.app.clone(),
            self.rev.clone(),
            self.proc.clone(),
            cell(self.claimed_by.as_ref()),
            age(&self.created_at),
        ]
    }
}

impl Row for Event {
    const HEADERS: &'static [&'static str] = &["revision", "event"];
    fn cells(&self) -> Vec<String> {
        // The JSON form without the revision reads well as a one-line summary.
        let mut detail = serde_json::to_value(&self.kind).unwrap_or_default();
        let kind = detail
            .as_object_mut()
            .and_then(|o| o.remove("type"))
            .and_then(|t| t.as_str().map(str::to_owned))
            .unwrap_or_default();
        let fields: Vec<String> = detail
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| {
                        format!(
                            "{k}={}",
                            v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        vec![
            self.revision.to_string(),
            format!("{kind} {}", fields.join(" ")),
        ]
    }
}

pub async fn instances(visor: &Visor, args: InstancesArgs, out: &Output) -> Result<(), CliError> {
    let text = |name: Option<Name>| name.map(|name| name.to_string());
    let filter = InstanceFilter {
        app: text(args.app),
        rev: text(args.rev),
        proc: text(args.proc),
        host: text(args.host),
    };
    let listing = visor.instances(&filter).await?;
    out.list(
        &listing
            .items
            .iter()
            .map(InstanceRow::from)
            .collect::<Vec<_>>(),
    )?;
    Ok(())
}

pub async fn hosts(visor: &Visor, out: &Output) -> Result<(), CliError> {
    let listing = visor.hosts().await?;
    out.list(&listing.items.iter().map(HostRow::from).collect::<Vec<_>>())?;
    Ok(())
}

pub async fn tickets(visor: &Visor, args: TicketsArgs, out: &Output) -> Result<(), CliError> {
    let listing = visor.tickets(args.host.as_ref().map(Name::as_str)).await?;
    out.list(
        &listing
            .items
            .iter()
            .filter_map(|ticket| TicketRow::new(visor.registry().keys(), ticket))
            .collect::<Vec<_>>(),
    )?;
    Ok(())
}

/// Prints events until `--count` of them, a signal, or a closed stdout.
pub async fn watch(visor: &Visor, args: WatchArgs, out: &Output) -> Result<(), CliError> {
    let mut shutdown = crate::shutdown::Shutdown::install().map_err(CliError::Signals)?;
    let mut events = visor.watch_events(args.from).await?;
    let mut seen = 0;
    while args.count.is_none_or(|count| seen < count) {
        let next = tokio::select! {
            next = events.next() => next,
            _ = shutdown.requested() => break,
        };
        match next {
            Some(event) => out.line(&event?)?,
            None => break,
        }
        seen += 1;
    }
    Ok(())
}
