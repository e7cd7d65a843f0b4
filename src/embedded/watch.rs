//! The embedded registry's Watch service: many watches on one stream, each
//! caught up from history, then fed what the writer publishes.
//!
//! One task serves one stream, so everything it sends is in revision order.
//! The writer hands it only the batches its watches want (`hub.rs`); a
//! progress request is answered once the stream has delivered everything
//! handed to it up to the visible revision, with that revision, which is
//! exactly what etcd promises (every event at or before it has been sent).
//! A stream that falls behind catches up from history, as etcd's unsynced
//! watchers do; one whose history was compacted meanwhile is cancelled with
//! the compaction revision.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::proto::{
    PbEvent, PbResponseHeader, PbWatchRequest, PbWatchRequestUnion, PbWatchResponse,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::hub::Subscription;
use super::mvcc::{Changes, KeyRange, RevisionError};
use super::node::{Node, Published};
use super::services::{Responses, receiver_stream};

/// How many responses may wait for a slow client before the stream's task
/// waits for it.
const OUTBOX: usize = 256;
/// etcd's filter of puts (`WatchCreateRequest.FilterType.NOPUT`).
const NO_PUT: i32 = 0;
/// etcd's filter of deletes.
const NO_DELETE: i32 = 1;

/// The Watch service.
#[derive(Debug, Clone)]
pub struct WatchService {
    node: Node,
    /// How often a watch that asked for it gets an empty progress response.
    progress_interval: Duration,
}

impl WatchService {
    /// The service over `node`.
    pub fn new(node: Node, progress_interval: Duration) -> Self {
        Self {
            node,
            progress_interval,
        }
    }
}

#[tonic::async_trait]
impl etcd_client::proto::PbWatchService for WatchService {
    type WatchStream = Responses<PbWatchResponse>;

    async fn watch(
        &self,
        request: Request<Streaming<PbWatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let requests = request.into_inner();
        let (outbox, responses) = mpsc::channel(OUTBOX);
        let (subscription, batches) = self.node.subscribe();
        let seen = self.node.revision();
        let stream = WatchStream {
            node: self.node.clone(),
            outbox,
            watches: BTreeMap::new(),
            next_id: 0,
            seen,
            subscription,
            batches,
        };
        tokio::spawn(stream.run(requests, self.progress_interval));
        Ok(Response::new(receiver_stream(responses)))
    }
}

/// One watch of a stream.
#[derive(Debug)]
struct Watch {
    key: Vec<u8>,
    range_end: Vec<u8>,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    /// Events at this revision and later are still to be sent.
    next: i64,
}

impl Watch {
    fn range(&self) -> KeyRange<'_> {
        KeyRange::new(&self.key, &self.range_end)
    }

    /// The events of `events` this watch wants, as it wants them.
    fn select(&self, events: &[PbEvent]) -> Vec<PbEvent> {
        let put = etcd_client::EventType::Put as i32;
        events
            .iter()
            .filter(|event| {
                let key = event.kv.as_ref().map_or(&[][..], |kv| kv.key.as_slice());
                let wanted = if event.r#type == put {
                    !self.no_put
                } else {
                    !self.no_delete
                };
                wanted && self.range().contains(key)
            })
            .map(|event| {
                let mut event = event.clone();
                if !self.prev_kv {
                    event.prev_kv = None;
                }
                event
            })
            .collect()
    }
}

/// The task serving one stream.
struct WatchStream {
    node: Node,
    outbox: mpsc::Sender<Result<PbWatchResponse, Status>>,
    watches: BTreeMap<i64, Watch>,
    next_id: i64,
    /// Every watch has been sent every event up to this revision.
    seen: i64,
    /// Its ranges, as the writer sees them.
    subscription: Subscription,
    /// The batches the writer hands this stream (those its watches want).
    batches: mpsc::Receiver<Arc<Published>>,
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let open = i64::try_from(self.watches.len()).unwrap_or(i64::MAX);
        self.node.metrics().watches_changed(-open);
    }
}

/// Why a stream's task stops.
struct Gone;

impl WatchStream {
    async fn run(mut self, mut requests: Streaming<PbWatchRequest>, progress_interval: Duration) {
        let mut progress = tokio::time::interval(progress_interval);
        progress.reset();
        let stopped = self.node.stopped();
        loop {
            let step = tokio::select! {
                request = requests.message() => match request {
                    Ok(Some(request)) => self.handle(request).await,
                    // The client closed its side, or the stream broke.
                    Ok(None) | Err(_) => Err(Gone),
                },
                batch = self.batches.recv() => match batch {
                    Some(batch) => self.deliver(&batch).await,
                    None => Err(Gone),
                },
                () = self.subscription.lagged() => self.sync().await,
                _ = progress.tick() => self.notify_progress().await,
                () = stopped.cancelled() => Err(Gone),
                () = self.outbox.closed() => Err(Gone),
            };
            if step.is_err() {
                return;
            }
        }
    }

    fn header(&self, revision: i64) -> Option<PbResponseHeader> {
        Some(self.node.identity().header(revision))
    }

    async fn send(&self, response: PbWatchResponse) -> Result<(), Gone> {
        self.outbox.send(Ok(response)).await.map_err(|_| Gone)
    }

    async fn handle(&mut self, request: PbWatchRequest) -> Result<(), Gone> {
        match request.request_union {
            Some(PbWatchRequestUnion::CreateRequest(create)) => {
                let id = match create.watch_id {
                    0 => self.free_id(),
                    id if self.watches.contains_key(&id) || id < 0 => {
                        return self
                            .refuse(id, "mvcc: duplicate watch ID provided".into())
                            .await;
                    }
                    id => id,
                };
                if create.start_revision < 0 {
                    // etcd 3.4 accepts it and then loses events of every
                    // watch that catches up with it (etcd-io/etcd#20693);
                    // etcd since refuses it.
                    let reason = format!(
                        "etcdserver: watch start revision {} is negative",
                        create.start_revision
                    );
                    return self.refuse(id, reason).await;
                }
                // From here on the writer hands this stream what the new
                // watch wants; history covers what came before.
                let mut ranges = self.ranges();
                ranges.push((create.key.clone(), create.range_end.clone()));
                let subscription = &self.subscription;
                let visible = self.node.visible_with(|| subscription.set_ranges(ranges));
                self.seen = self.seen.max(visible);
                let watch = Watch {
                    key: create.key,
                    range_end: create.range_end,
                    no_put: create.filters.contains(&NO_PUT),
                    no_delete: create.filters.contains(&NO_DELETE),
                    prev_kv: create.prev_kv,
                    progress_notify: create.progress_notify,
                    next: if create.start_revision > 0 {
                        create.start_revision
                    } else {
                        visible + 1
                    },
                };
                self.send(PbWatchResponse {
                    header: self.header(self.seen),
                    watch_id: id,
                    created: true,
                    ..PbWatchResponse::default()
                })
                .await?;
                self.watches.insert(id, watch);
                self.node.metrics().watches_changed(1);
                self.catch_up_one(id, visible).await
            }
            Some(PbWatchRequestUnion::CancelRequest(cancel)) => {
                if self.watches.remove(&cancel.watch_id).is_some() {
                    self.node.metrics().watches_changed(-1);
                    self.subscription.set_ranges(self.ranges());
                    self.send(PbWatchResponse {
                        header: self.header(self.seen),
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..PbWatchResponse::default()
                    })
                    .await?;
                }
                Ok(())
            }
            Some(PbWatchRequestUnion::ProgressRequest(_)) => {
                self.sync().await?;
                self.send(PbWatchResponse {
                    header: self.header(self.seen),
                    watch_id: -1,
                    ..PbWatchResponse::default()
                })
                .await
            }
            None => Ok(()),
        }
    }

    /// Answers a watch that cannot be created: created and cancelled at once.
    async fn refuse(&self, id: i64, reason: String) -> Result<(), Gone> {
        self.send(PbWatchResponse {
            header: self.header(self.seen),
            watch_id: id,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..PbWatchResponse::default()
        })
        .await
    }

    fn free_id(&mut self) -> i64 {
        while self.watches.contains_key(&self.next_id) {
            self.next_id += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends watch `id` the history it has not had, up to `upto`.
    async fn catch_up_one(&mut self, id: i64, upto: i64) -> Result<(), Gone> {
        let Some(watch) = self.watches.get(&id) else {
            return Ok(());
        };
        if watch.next > upto {
            return Ok(());
        }
        let history = {
            let inner = self.node.lock();
            inner.state.store().history(watch.range(), watch.next)
        };
        match history {
            Ok(events) => {
                let events: Vec<PbEvent> = events
                    .into_iter()
                    .filter(|event| event.kv.as_ref().is_some_and(|kv| kv.mod_revision <= upto))
                    .collect();
                let events = watch.select(&events);
                if let Some(watch) = self.watches.get_mut(&id) {
                    watch.next = upto + 1;
                }
                if events.is_empty() {
                    return Ok(());
                }
                self.send(PbWatchResponse {
                    header: self.header(upto),
                    watch_id: id,
                    events,
                    ..PbWatchResponse::default()
                })
                .await
            }
            Err(RevisionError::Compacted { compacted }) => {
                self.watches.remove(&id);
                self.node.metrics().watches_changed(-1);
                self.send(PbWatchResponse {
                    header: self.header(upto),
                    watch_id: id,
                    canceled: true,
                    // etcd names no reason: the compact revision is the reason.
                    compact_revision: compacted,
                    ..PbWatchResponse::default()
                })
                .await
            }
            Err(RevisionError::Future) => Ok(()),
        }
    }

    /// The `(key, range_end)` of every watch.
    fn ranges(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.watches
            .values()
            .map(|watch| (watch.key.clone(), watch.range_end.clone()))
            .collect()
    }

    /// Brings every watch up to the visible revision, which becomes `seen`:
    /// the batches handed over until then are delivered, or, if the queue
    /// overflowed, history is read instead.
    async fn sync(&mut self) -> Result<(), Gone> {
        let visible = self.node.visible_with(|| {});
        while let Ok(batch) = self.batches.try_recv() {
            self.deliver(&batch).await?;
        }
        if self.subscription.take_lagged() {
            while self.batches.try_recv().is_ok() {}
            let visible = self.node.visible_with(|| {});
            let ids: Vec<i64> = self.watches.keys().copied().collect();
            for id in ids {
                self.catch_up_one(id, visible).await?;
            }
            self.seen = self.seen.max(visible);
            return Ok(());
        }
        self.seen = self.seen.max(visible);
        Ok(())
    }

    /// Sends each watch its events of a published batch.
    async fn deliver(&mut self, batch: &Published) -> Result<(), Gone> {
        for changes in &batch.changes {
            self.deliver_changes(changes).await?;
        }
        self.seen = self.seen.max(batch.revision);
        Ok(())
    }

    async fn deliver_changes(&mut self, changes: &Changes) -> Result<(), Gone> {
        let mut responses = Vec::new();
        for (id, watch) in &mut self.watches {
            if changes.revision < watch.next {
                continue;
            }
            watch.next = changes.revision + 1;
            let events = watch.select(&changes.events);
            if !events.is_empty() {
                responses.push(PbWatchResponse {
                    header: Some(self.node.identity().header(changes.revision)),
                    watch_id: *id,
                    events,
                    ..PbWatchResponse::default()
                });
            }
        }
        for response in responses {
            self.send(response).await?;
        }
        Ok(())
    }

    /// Tells each watch that asked for progress how far the stream is.
    async fn notify_progress(&mut self) -> Result<(), Gone> {
        self.sync().await?;
        let ids: Vec<i64> = self
            .watches
            .iter()
            .filter(|(_, watch)| watch.progress_notify)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.send(PbWatchResponse {
                header: self.header(self.seen),
                watch_id: id,
                ..PbWatchResponse::default()
            })
            .await?;
        }
        Ok(())
    }
}
