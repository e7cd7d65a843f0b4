//! Subscriptions to a service's endpoints: `New` when a live endpoint appears,
//! `Down` when one dies (etcd-discovery's `SubscribeNew` / `SubscribeDown`).
//!
//! A subscription lists the endpoints at revision R (emitting nothing), then
//! a background task (`follower`) watches from R + 1, resumes after a dropped
//! watch, and relists and diffs after compaction. A subscriber that lags more
//! than its buffer costs etcd nothing: the task stops watching and catches up
//! the same way when read again.
//!
//! Invariants: no event is emitted twice and none is lost, across reconnects,
//! compaction and lag. Only the deletion of a live endpoint is a death; a
//! tombstone (clean stop) and its removal are not. One ambiguity remains after
//! compaction: an endpoint that stopped cleanly and whose tombstone was
//! removed before the relist looks dead, and is reported down (a death must
//! never be missed).

mod follower;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use visor_controllers::{Name, ServiceEndpoint};

use super::error::Result;
use crate::Visor;
use follower::Follower;

/// Events a subscription buffers for a slow reader before it stops watching.
pub const DEFAULT_BUFFER: usize = 1024;

/// A change of a service's endpoints that subscribers hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// A live endpoint appeared: registered, or back after a death.
    New {
        /// The endpoint's uuid.
        id: String,
        /// Its document.
        endpoint: ServiceEndpoint,
        /// The revision it was seen at (its write's, or a relist's).
        revision: i64,
    },
    /// A live endpoint died: its key was deleted (lease expiry or an unclean delete).
    Down {
        /// The endpoint's uuid.
        id: String,
        /// Its last live document.
        endpoint: ServiceEndpoint,
        /// The revision it was seen at (its deletion's, or a relist's).
        revision: i64,
    },
}

impl EndpointEvent {
    /// The endpoint's uuid.
    pub fn id(&self) -> &str {
        match self {
            Self::New { id, .. } | Self::Down { id, .. } => id,
        }
    }

    /// The endpoint's document (the last live one for `Down`).
    pub fn endpoint(&self) -> &ServiceEndpoint {
        match self {
            Self::New { endpoint, .. } | Self::Down { endpoint, .. } => endpoint,
        }
    }

    /// The revision it was seen at.
    pub fn revision(&self) -> i64 {
        match self {
            Self::New { revision, .. } | Self::Down { revision, .. } => *revision,
        }
    }
}

/// Which events a subscription yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Only [`EndpointEvent::New`].
    New,
    /// Only [`EndpointEvent::Down`].
    Down,
    /// Both.
    Both,
}

impl Interest {
    fn wants(self, event: &EndpointEvent) -> bool {
        matches!(
            (self, event),
            (Self::Both, _)
                | (Self::New, EndpointEvent::New { .. })
                | (Self::Down, EndpointEvent::Down { .. })
        )
    }
}

/// How to subscribe.
#[derive(Debug, Clone, Copy)]
pub struct SubscribeOptions {
    /// Which events to yield.
    pub interest: Interest,
    /// Events buffered for a slow reader (at least 1); past it the
    /// subscription stops watching and catches up from the registry later.
    pub buffer: usize,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            interest: Interest::Both,
            buffer: DEFAULT_BUFFER,
        }
    }
}

/// A stream of endpoint events of one service. It ends only after a fatal
/// error (refused credentials), which it yields first; registry outages are
/// retried in the background. Dropping it stops the background task.
#[derive(Debug)]
pub struct Subscription {
    events: mpsc::Receiver<Result<EndpointEvent>>,
    task: JoinHandle<()>,
    revision: i64,
    relists: Arc<AtomicU64>,
}

impl Subscription {
    /// The revision of the initial listing: events are changes after it.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// How many times history was lost to compaction and the view relisted.
    pub fn relists(&self) -> u64 {
        self.relists.load(Ordering::Relaxed)
    }
}

impl Stream for Subscription {
    type Item = Result<EndpointEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Yields every endpoint of `service` that becomes live after the call.
pub async fn subscribe_new(visor: &Visor, service: &str) -> Result<Subscription> {
    let options = SubscribeOptions {
        interest: Interest::New,
        ..SubscribeOptions::default()
    };
    subscribe(visor, service, options).await
}

/// Yields every live endpoint of `service` that dies after the call.
pub async fn subscribe_down(visor: &Visor, service: &str) -> Result<Subscription> {
    let options = SubscribeOptions {
        interest: Interest::Down,
        ..SubscribeOptions::default()
    };
    subscribe(visor, service, options).await
}

/// Subscribes to `service`'s endpoint events: lists them now (an error here
/// is returned), then yields the changes after that listing.
pub async fn subscribe(
    visor: &Visor,
    service: &str,
    options: SubscribeOptions,
) -> Result<Subscription> {
    let service = Name::parse("service", service)?;
    let (tx, events) = mpsc::channel(options.buffer.max(1));
    let relists = Arc::new(AtomicU64::new(0));
    let follower = Follower::new(
        visor.registry().clone(),
        service,
        options.interest,
        tx,
        relists.clone(),
    );
    let (revision, task) = follower.start().await?;
    Ok(Subscription {
        events,
        task,
        revision,
        relists,
    })
}
