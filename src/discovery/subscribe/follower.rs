//! The background half of a subscription: a state machine ([`Phase`]) that
//! keeps a view of one service's endpoints in step with the registry and
//! turns each change of the view into the events it means.
//!
//! `Watching { from }` applies watch events from a revision on; a dropped
//! watch resumes from the revision after the last event applied, with
//! exponential backoff and jitter; history lost to compaction goes to
//! `Relisting`, which lists again and diffs against the view. When the
//! subscriber's buffer is full the watch is dropped and resumed from the
//! same place once there is room.
//!
//! Invariant: the view only moves forward in revision, and every event comes
//! from one change of the view (per key, or the relist diff), so none is
//! emitted twice and none is lost.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use etcd_client::{EventType, KeyValue, WatchOptions};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use visor_controllers::{
    EndpointSeen, Name, ServiceEndpoint, diff_endpoint_incarnations, endpoint_change,
};

use super::{EndpointEvent, Interest};
use crate::discovery::error::{DiscoveryError, Result};
use crate::registry::{Codec, Error, KeyPath, Kind, Registry};

/// How often an idle watch is asked to prove it is alive.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// How long a watch may stay silent after a progress request before it counts as dead.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a watch must run without trouble before its backoff starts over.
const HEALTHY_PERIOD: Duration = Duration::from_secs(30);

/// Where the follower is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Apply events from this revision on.
    Watching { from: i64 },
    /// History is gone: list again and diff against the view.
    Relisting,
}

/// Why a phase ended early.
enum Interrupt {
    /// The subscriber is gone.
    Closed,
    /// It failed; go on with this phase after a backoff, unless fatal.
    Failed(Phase, Error),
}

/// One endpoint in the view: the revision that created its key, and its last document.
#[derive(Debug, Clone)]
struct Known {
    created: i64,
    endpoint: ServiceEndpoint,
}

impl Known {
    fn seen(&self) -> EndpointSeen {
        EndpointSeen {
            created: self.created,
            live: self.endpoint.is_live(),
        }
    }
}

pub(super) struct Follower {
    registry: Registry,
    service: Name,
    prefix: String,
    interest: Interest,
    /// The service's endpoints by uuid, as of the last revision applied.
    view: BTreeMap<String, Known>,
    /// Events derived from the view but not yet handed to the subscriber.
    pending: VecDeque<EndpointEvent>,
    tx: mpsc::Sender<Result<EndpointEvent>>,
    relists: Arc<AtomicU64>,
}

impl Follower {
    pub(super) fn new(
        registry: Registry,
        service: Name,
        interest: Interest,
        tx: mpsc::Sender<Result<EndpointEvent>>,
        relists: Arc<AtomicU64>,
    ) -> Self {
        let prefix = registry.keys().endpoints(&service);
        Self {
            registry,
            service,
            prefix,
            interest,
            view: BTreeMap::new(),
            pending: VecDeque::new(),
            tx,
            relists,
        }
    }

    /// Lists the endpoints (the baseline: no events) and starts following
    /// after that listing; returns its revision and the task.
    pub(super) async fn start(mut self) -> Result<(i64, JoinHandle<()>)> {
        let revision = self.list().await?;
        self.pending.clear();
        let task = tokio::spawn(self.run(Phase::Watching { from: revision + 1 }));
        Ok((revision, task))
    }

    async fn run(mut self, mut phase: Phase) {
        let builder = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(5))
            .without_max_times();
        let mut backoff = builder.build();
        loop {
            // Not watching while it waits: a slow reader costs etcd nothing.
            if !self.deliver().await {
                return;
            }
            let started = Instant::now();
            let outcome = match phase {
                Phase::Watching { from } => self.watch(from).await,
                Phase::Relisting => self
                    .list()
                    .await
                    .map(|revision| Phase::Watching { from: revision + 1 })
                    .map_err(|error| Interrupt::Failed(Phase::Relisting, error)),
            };
            match outcome {
                Ok(next) => phase = next,
                Err(Interrupt::Closed) => return,
                Err(Interrupt::Failed(
                    _,
                    error @ (Error::Unauthorized { .. } | Error::Config(_)),
                )) => {
                    let _ = self.tx.send(Err(DiscoveryError::Registry(error))).await;
                    return;
                }
                Err(Interrupt::Failed(next, error)) => {
                    phase = next;
                    if started.elapsed() >= HEALTHY_PERIOD {
                        backoff = builder.build();
                    }
                    let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(service = %self.service, %error, ?delay, "endpoint subscription interrupted; resuming");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Hands every pending event over, waiting for room; false once the subscriber is gone.
    async fn deliver(&mut self) -> bool {
        while let Some(event) = self.pending.pop_front() {
            if self.tx.send(Ok(event)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Hands pending events over while there is room; `Ok(false)` when the buffer is full.
    fn try_deliver(&mut self) -> Result<bool, Interrupt> {
        while let Some(event) = self.pending.pop_front() {
            match self.tx.try_send(Ok(event)) {
                Ok(()) => {}
                Err(TrySendError::Full(item)) => {
                    if let Ok(event) = item {
                        self.pending.push_front(event);
                    }
                    return Ok(false);
                }
                Err(TrySendError::Closed(_)) => return Err(Interrupt::Closed),
            }
        }
        Ok(true)
    }

    /// Lists the endpoints, queues what changed against the view, and
    /// replaces the view; returns the listing's revision.
    async fn list(&mut self) -> Result<i64, Error> {
        let listing = self
            .registry
            .list_objects::<ServiceEndpoint>(Kind::Endpoint, &self.prefix)
            .await?;
        let revision = listing.revision;
        let view: BTreeMap<String, Known> = listing
            .items
            .into_iter()
            .map(|item| {
                let known = Known {
                    created: item.create_revision,
                    endpoint: item.value.clone(),
                };
                (item.name().to_owned(), known)
            })
            .collect();
        let seen = |view: &BTreeMap<String, Known>| -> BTreeMap<String, EndpointSeen> {
            view.iter().map(|(id, k)| (id.clone(), k.seen())).collect()
        };
        let (appeared, died) = diff_endpoint_incarnations(&seen(&self.view), &seen(&view));
        for id in died {
            if let Some(old) = self.view.get(&id) {
                self.queue(EndpointEvent::Down {
                    endpoint: old.endpoint.clone(),
                    id,
                    revision,
                });
            }
        }
        for id in appeared {
            if let Some(new) = view.get(&id) {
                self.queue(EndpointEvent::New {
                    endpoint: new.endpoint.clone(),
                    id,
                    revision,
                });
            }
        }
        tracing::debug!(service = %self.service, revision, "endpoint view listed");
        self.view = view;
        Ok(revision)
    }

    fn queue(&mut self, event: EndpointEvent) {
        if self.interest.wants(&event) {
            self.pending.push_back(event);
        }
    }

    /// Applies events from `from` until the watch breaks or the subscriber
    /// lags; says where to go next.
    async fn watch(&mut self, from: i64) -> Result<Phase, Interrupt> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_prev_key()
            .with_progress_notify();
        let mut client = self.registry.watch_client();
        let mut next = from;
        let failed = |next, error| Interrupt::Failed(Phase::Watching { from: next }, error);
        let mut stream = client
            .watch(self.prefix.as_str(), Some(options))
            .await
            .map_err(|e| failed(next, self.registry.error("watch", e)))?;
        let mut progress = tokio::time::interval(PROGRESS_INTERVAL);
        let mut last_heard = Instant::now();
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                _ = progress.tick() => {
                    if last_heard.elapsed() > PROGRESS_TIMEOUT {
                        return Err(failed(next, self.registry.unavailable("watch", "no answer to progress requests")));
                    }
                    // A dead stream would not answer; the answer updates `last_heard`.
                    let _ = stream.request_progress().await;
                    continue;
                }
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => {
                    let error = self.registry.unavailable("watch", "the watch stream ended");
                    return Err(failed(next, error));
                }
                Err(error) => return Err(failed(next, self.registry.error("watch", error))),
            };
            last_heard = Instant::now();
            if response.compact_revision() > 0 {
                self.relists.fetch_add(1, Ordering::Relaxed);
                tracing::info!(service = %self.service, requested = next, compacted = response.compact_revision(), "endpoint history compacted; relisting");
                return Ok(Phase::Relisting);
            }
            if response.canceled() {
                let message = format!("watch canceled: {}", response.cancel_reason());
                return Err(failed(
                    next,
                    Error::Request {
                        op: "watch",
                        message,
                    },
                ));
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let deleted = event.event_type() == EventType::Delete;
                self.apply(kv, deleted, event.prev_kv());
                next = next.max(kv.mod_revision() + 1);
            }
            if !self.try_deliver()? {
                // Lagging: drop the watch and resume from `next` once there is room.
                return Ok(Phase::Watching { from: next });
            }
        }
    }

    /// Applies one key change to the view, queueing the events it means.
    fn apply(&mut self, kv: &KeyValue, deleted: bool, prev: Option<&KeyValue>) {
        let key = String::from_utf8_lossy(kv.key());
        let id = match self.registry.keys().parse(&key) {
            KeyPath::Endpoint { service, id } if service == self.service.as_str() => id,
            _ => return,
        };
        let after = match deleted {
            true => None,
            false => match ServiceEndpoint::decode(kv.value()) {
                Ok(endpoint) => Some(Known {
                    created: kv.create_revision(),
                    endpoint,
                }),
                Err(reason) => {
                    // Treated as absent, as a relist would skip it.
                    tracing::warn!(%key, %reason, "skipping malformed endpoint");
                    None
                }
            },
        };
        // The view knows the last value; the event's previous value covers a
        // key the view never held (skipped as malformed at the time).
        let before = self.view.get(&id).cloned().or_else(|| {
            let prev = prev?;
            let endpoint = ServiceEndpoint::decode(prev.value()).ok()?;
            Some(Known {
                created: prev.create_revision(),
                endpoint,
            })
        });
        let change = endpoint_change(
            before.as_ref().map(Known::seen),
            after.as_ref().map(Known::seen),
        );
        let revision = kv.mod_revision();
        if let (true, Some(before)) = (change.down, &before) {
            self.queue(EndpointEvent::Down {
                id: id.clone(),
                endpoint: before.endpoint.clone(),
                revision,
            });
        }
        if let (true, Some(after)) = (change.new, &after) {
            self.queue(EndpointEvent::New {
                id: id.clone(),
                endpoint: after.endpoint.clone(),
                revision,
            });
        }
        match after {
            Some(known) => self.view.insert(id, known),
            None => self.view.remove(&id),
        };
    }
}
