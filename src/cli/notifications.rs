//! `visor notifications`: what the controller reported (endpoints down,
//! critical services degraded and restored), listed or followed.
//!
//! Without `--follow` it prints one listing (a table, or one JSON array).
//! With it, the rows stream one per line (after a header line in table
//! form; JSON objects, one per line) until SIGINT or SIGTERM, each once and
//! in sequence order: the library's follower resumes across outages and
//! compaction. Following ends quietly too when stdout is closed.

use chrono::{DateTime, Utc};
use clap::Args;
use futures::StreamExt;
use serde::Serialize;
use visor_controllers::{Notification, NotificationKind};

use super::CliError;
use super::output::{Output, Row, age, cell, timestamp};
use crate::registry::Visor;
use crate::shutdown::Shutdown;

#[derive(Debug, Args)]
pub struct NotificationsArgs {
    /// Only notifications numbered above this (0: every retained one).
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    since: u64,
    /// Keep printing notifications as they are posted, until SIGINT or SIGTERM
    /// (JSON: one object per line).
    #[arg(long)]
    follow: bool,
}

/// One notification, with the field names of the stored document.
#[derive(Debug, Serialize)]
struct NotificationRow {
    seq: u64,
    kind: NotificationKind,
    service: Option<String>,
    endpoint: Option<String>,
    hostname: Option<String>,
    app: Option<String>,
    revision: Option<String>,
    reason: String,
    detected_at: DateTime<Utc>,
}

impl From<Notification> for NotificationRow {
    fn from(n: Notification) -> Self {
        Self {
            seq: n.seq,
            kind: n.kind,
            service: n.service.map(String::from),
            endpoint: n.endpoint,
            hostname: n.hostname,
            app: n.app.map(String::from),
            revision: n.revision.map(String::from),
            reason: n.reason,
            detected_at: n.detected_at,
        }
    }
}

impl Row for NotificationRow {
    const HEADERS: &'static [&'static str] = &[
        "seq",
        "kind",
        "service",
        "endpoint",
        "hostname",
        "app",
        "revision",
        "reason",
        "detected at",
        "age",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.seq.to_string(),
            self.kind.to_string(),
            cell(self.service.as_ref()),
            cell(self.endpoint.as_ref()),
            cell(self.hostname.as_ref()),
            cell(self.app.as_ref()),
            cell(self.revision.as_ref()),
            self.reason.clone(),
            timestamp(&self.detected_at),
            age(&self.detected_at),
        ]
    }
}

pub async fn notifications(
    visor: &Visor,
    args: NotificationsArgs,
    out: &Output,
) -> Result<(), CliError> {
    if !args.follow {
        let listing = visor.notifications(args.since).await?;
        let rows: Vec<NotificationRow> = listing
            .items
            .into_iter()
            .map(|n| NotificationRow::from(n.value))
            .collect();
        out.list(&rows)?;
        return Ok(());
    }
    let mut shutdown = Shutdown::install().map_err(CliError::Signals)?;
    let mut notifications = visor.follow_notifications(args.since).await?;
    out.header::<NotificationRow>()?;
    loop {
        let next = tokio::select! {
            next = notifications.next() => next,
            () = shutdown.requested() => break,
        };
        match next {
            Some(notification) => out.line(&NotificationRow::from(notification?))?,
            // Only after a fatal error, which was yielded (and returned) first.
            None => break,
        }
    }
    Ok(())
}
