//! Following the registry: what `visor status -w`, `visor rollout status -w`
//! and `--wait` share.
//!
//! Each reads what it shows, then waits here for the next change to read
//! again. A change is any event after the revision read at; events that
//! arrive together are one change, so a burst (a rollout's step writes a
//! dozen keys) costs one read, not a dozen.

use futures::{FutureExt, StreamExt};
use tokio::time::Instant;

use super::CliError;
use crate::registry::{EventStream, Visor};
use crate::shutdown::Shutdown;

/// The registry's changes from a revision on, and the signals that end following.
pub struct Changes {
    events: EventStream,
    shutdown: Shutdown,
}

/// Why [`Changes::next`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Something changed: read again.
    Changed,
    /// SIGINT or SIGTERM, or the registry ended the stream: stop, quietly.
    Stopped,
    /// The deadline passed first.
    TimedOut,
}

impl Changes {
    /// Changes after `revision` (one that a read was at).
    pub async fn after(visor: &Visor, revision: i64) -> Result<Self, CliError> {
        let shutdown = Shutdown::install().map_err(CliError::Signals)?;
        let events = visor.watch_events(revision + 1).await?;
        Ok(Self { events, shutdown })
    }

    /// Waits for the next change, a signal, or `deadline` (none: no bound).
    pub async fn next(&mut self, deadline: Option<Instant>) -> Result<Change, CliError> {
        let timeout = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = self.events.next() => match next {
                Some(event) => drop(event?),
                None => return Ok(Change::Stopped),
            },
            () = self.shutdown.requested() => return Ok(Change::Stopped),
            () = timeout => return Ok(Change::TimedOut),
        }
        // The rest of a burst, already here, is the same change.
        while let Some(Some(event)) = self.events.next().now_or_never() {
            drop(event?);
        }
        Ok(Change::Changed)
    }
}
