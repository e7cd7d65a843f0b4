//! The background half of a subscription: keeps a view of one service's
//! endpoints in step with the registry and turns each change of the view
//! into the events it means.
//!
//! It drives the registry's resumable prefix watch ([`PrefixWatch`], with
//! previous values): watch events from a revision on are applied to the
//! view; a dropped watch resumes after the last event applied; history lost
//! to compaction leads to a listing that is diffed against the view. When
//! the subscriber's buffer is full the watch is paused and resumed from the
//! same place once there is room.
//!
//! Invariant: the view only moves forward in revision, and every event comes
//! from one change of the view (per key, or the relist diff), so none is
//! emitted twice and none is lost.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use etcd_client::{EventType, KeyValue};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use visor_controllers::{
    EndpointSeen, Name, ServiceEndpoint, diff_endpoint_incarnations, endpoint_change,
};

use super::{EndpointEvent, Interest};
use crate::discovery::error::{DiscoveryError, Result};
use crate::registry::watch::{PrefixWatch, WatchStep};
use crate::registry::{Codec, Error, KeyPath, Kind, Registry};

/// The subscriber is gone.
struct Closed;

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
        let watch =
            PrefixWatch::from_revision(self.registry.clone(), self.prefix.clone(), revision + 1)
                .with_prev_kv();
        let task = tokio::spawn(self.run(watch));
        Ok((revision, task))
    }

    async fn run(mut self, mut watch: PrefixWatch) {
        loop {
            // Not watching while it waits: a slow reader costs etcd nothing.
            if !self.deliver().await {
                return;
            }
            let failure = match watch.next().await {
                WatchStep::List => match self.list().await {
                    Ok(revision) => {
                        watch.listed(revision);
                        continue;
                    }
                    Err(error) => (error, None),
                },
                WatchStep::Changes { response, .. } => {
                    for event in response.events() {
                        let Some(kv) = event.kv() else { continue };
                        let deleted = event.event_type() == EventType::Delete;
                        self.apply(kv, deleted, event.prev_kv());
                    }
                    match self.try_deliver() {
                        Err(Closed) => return,
                        // Lagging: drop the watch and resume once there is room.
                        Ok(false) => watch.pause(),
                        Ok(true) => {}
                    }
                    continue;
                }
                WatchStep::Compacted(compaction) => {
                    self.relists.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(service = %self.service, requested = compaction.requested, compacted = compaction.compacted, "endpoint history compacted; relisting");
                    continue;
                }
                WatchStep::Interrupted { error, delay } => (error, Some(delay)),
            };
            match failure {
                (
                    error
                    @ (Error::Unauthorized { .. } | Error::Config(_) | Error::ReadFile { .. }),
                    _,
                ) => {
                    let _ = self.tx.send(Err(DiscoveryError::Registry(error))).await;
                    return;
                }
                (error, delay) => {
                    let delay = delay.unwrap_or_else(|| watch.back_off());
                    tracing::warn!(service = %self.service, %error, ?delay, "endpoint subscription interrupted; resuming");
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
    fn try_deliver(&mut self) -> Result<bool, Closed> {
        while let Some(event) = self.pending.pop_front() {
            match self.tx.try_send(Ok(event)) {
                Ok(()) => {}
                Err(TrySendError::Full(item)) => {
                    if let Ok(event) = item {
                        self.pending.push_front(event);
                    }
                    return Ok(false);
                }
                Err(TrySendError::Closed(_)) => return Err(Closed),
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

    /// Applies one key change to the view, queueing the events it means.
    fn apply(&mut self, kv: &KeyValue, deleted: bool, prev: Option<&KeyValue>) {
        let key = String::from_utf8_lossy(kv.key());
        let id = match self.registry.keys().parse(&key) {
            KeyPath::Endpoint { service, id } if service == self.service => String::from(id),
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
