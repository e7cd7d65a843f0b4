//! The embedded registry's one node: the state, its single writer, and what
//! readers and watchers see.
//!
//! Writes (puts, deletes, txns, compactions, lease grants and revokes, and
//! lease expiry) go to one writer thread, which applies a batch of them to
//! the state, appends the batch to the write-ahead log (one fsync), and only
//! then publishes it: the visible revision moves, the batch goes to every
//! watcher, and each write is answered; the database commit comes after,
//! on a thread of its own (`committer.rs`). Reads never wait for the writer:
//! they read the MVCC index at the visible revision, so a change is seen
//! only once it is on disk, and a batch being synced is invisible.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use etcd_client::proto::{
    PbDeleteRequest, PbDeleteResponse, PbPutRequest, PbPutResponse, PbRangeRequest,
    PbRangeResponse, PbTxnRequest, PbTxnResponse,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::committer::Committer;
use super::error::RequestError;
use super::hub::{Hub, Subscription};
use super::log::{Batch, Log, LogError};
use super::metrics::RegistryMetrics;
use super::mvcc::Changes;
use super::services::Identity;
use super::state::State;
use super::wal::Wal;

/// How many writes one batch (one fsync) takes at most.
const MAX_BATCH: usize = 1024;
/// How often lease expiry is checked at the least (etcd checks every 500 ms).
const EXPIRY_CHECK: Duration = Duration::from_millis(100);

/// A write for the writer.
#[derive(Debug)]
pub enum WriteOp {
    /// A put.
    Put(PbPutRequest),
    /// A delete.
    Delete(PbDeleteRequest),
    /// A transaction.
    Txn(PbTxnRequest),
    /// A compaction at a revision.
    Compact(i64),
    /// A lease grant: id (0: choose one) and TTL.
    Grant(i64, i64),
    /// A lease revoke.
    Revoke(i64),
}

/// What a write answered.
#[derive(Debug)]
pub enum WriteOutcome {
    /// A put's response.
    Put(PbPutResponse),
    /// A delete's response.
    Delete(PbDeleteResponse),
    /// A transaction's response.
    Txn(PbTxnResponse),
    /// A compaction done.
    Compacted,
    /// A lease granted: id and TTL.
    Granted(i64, i64),
    /// A lease revoked.
    Revoked,
}

/// A write's answer and the revision it left the store at.
#[derive(Debug)]
pub struct Written {
    /// The answer.
    pub outcome: WriteOutcome,
    /// The store's revision once it was applied.
    pub revision: i64,
}

/// Why a write was not answered.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The request was refused.
    #[error(transparent)]
    Refused(#[from] RequestError),
    /// The node stopped (its log failed, or it shut down).
    #[error("the registry is stopping")]
    Stopped,
}

impl From<WriteError> for tonic::Status {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Refused(error) => error.into(),
            WriteError::Stopped => tonic::Status::unavailable(error.to_string()),
        }
    }
}

/// A batch as watchers get it: what changed at each revision, in order.
#[derive(Debug)]
pub struct Published {
    /// The changes of each transaction that changed something.
    pub changes: Vec<Changes>,
    /// The visible revision once published.
    pub revision: i64,
}

/// The state and what has been published of it.
#[derive(Debug)]
pub struct Inner {
    /// The registry's state, including a batch being made durable.
    pub state: State,
    /// The newest revision that is durable and published.
    pub visible: i64,
}

/// A handle on the node, cheap to clone.
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<Mutex<Inner>>,
    hub: Arc<Hub>,
    writes: std::sync::mpsc::Sender<Pending>,
    stopped: CancellationToken,
    /// Cancelled once the writer and the database thread have finished.
    closed: CancellationToken,
    committer: Committer,
    identity: Identity,
    metrics: RegistryMetrics,
}

impl Node {
    /// Opens the log in `dir` and starts the writer. The node stops (and
    /// `stopped` is cancelled) when `shutdown` is cancelled or its log
    /// cannot be written.
    pub fn start(
        dir: &std::path::Path,
        shutdown: CancellationToken,
        metrics: RegistryMetrics,
    ) -> Result<Self, LogError> {
        let (log, wal, state) = Log::open(dir, Instant::now())?;
        let (member_id, cluster_id) = log.identity()?;
        let visible = state.store().revision();
        let path = log.path().to_path_buf();
        let spawn_error = |source| LogError::Thread {
            path: path.clone(),
            source,
        };
        let stopped = shutdown.child_token();
        let (committer, database) =
            Committer::start(log, metrics.clone(), stopped.clone()).map_err(spawn_error)?;
        let (writes, queue) = std::sync::mpsc::channel();
        let node = Self {
            inner: Arc::new(Mutex::new(Inner { state, visible })),
            hub: Arc::new(Hub::default()),
            writes,
            stopped,
            closed: CancellationToken::new(),
            committer,
            identity: Identity {
                cluster_id,
                member_id,
            },
            metrics,
        };
        node.metrics.at_revision(visible);
        let writer_node = node.clone();
        std::thread::Builder::new()
            .name("registry-writer".into())
            .spawn(move || writer(writer_node, queue, wal, database))
            .map_err(spawn_error)?;
        Ok(node)
    }

    /// Locks the state (briefly: never across an await).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a state the writer built
        // whole or not at all (a write rolls itself back), so it is usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The ids every response header carries.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The registry's metrics.
    pub fn metrics(&self) -> &RegistryMetrics {
        &self.metrics
    }

    /// Cancelled once the node stopped.
    pub fn stopped(&self) -> CancellationToken {
        self.stopped.clone()
    }

    /// Cancelled once the node has finished: its writer stopped and its
    /// database synced and closed.
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// The database file's size, for Maintenance `Status`.
    pub fn log_size(&self) -> u64 {
        self.committer.size()
    }

    /// Gives the log's free pages back to the file system (Maintenance
    /// `Defragment`), once everything answered is in it.
    pub async fn defragment(&self) -> Result<(), tonic::Status> {
        self.committer
            .defragment()
            .await
            .map_err(|error| tonic::Status::internal(error.to_string()))
    }

    /// A range at the visible revision (or the one asked, up to it).
    pub fn range(&self, request: &PbRangeRequest) -> Result<(PbRangeResponse, i64), RequestError> {
        let inner = self.lock();
        let response = inner.state.range_visible(request, inner.visible)?;
        Ok((response, inner.visible))
    }

    /// The visible revision.
    pub fn revision(&self) -> i64 {
        self.lock().visible
    }

    /// Hands `op` to the writer and waits until it is durable and published.
    pub async fn write(&self, op: WriteOp) -> Result<Written, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send((op, reply))
            .map_err(|_| WriteError::Stopped)?;
        Ok(answer.await.map_err(|_| WriteError::Stopped)??)
    }

    /// A subscription to published batches, for a watch stream, and the
    /// queue they arrive on.
    pub fn subscribe(&self) -> (Subscription, tokio::sync::mpsc::Receiver<Arc<Published>>) {
        self.hub.subscribe()
    }

    /// Runs `with_lock` under the node's lock (a stream setting its ranges)
    /// and returns the visible revision read under it: every batch up to it
    /// that the stream's ranges wanted has been handed to it (see
    /// [`Hub`]), every later one will be.
    pub fn visible_with(&self, with_lock: impl FnOnce()) -> i64 {
        let inner = self.lock();
        with_lock();
        inner.visible
    }
}

/// A write and where its answer goes.
type Pending = (WriteOp, oneshot::Sender<Result<Written, RequestError>>);

/// The writer, on a thread of its own (it waits for the disk): takes writes
/// in batches, applies them, appends each batch to the write-ahead log,
/// then publishes and answers it, and hands it to the database thread. It
/// stops within [`EXPIRY_CHECK`] of the node's stop, and then waits for the
/// database thread (`database`) to sync and finish.
fn writer(
    node: Node,
    queue: std::sync::mpsc::Receiver<Pending>,
    mut wal: Wal,
    database: std::thread::JoinHandle<()>,
) {
    // However the writer ends, even in a panic, the node is stopped and,
    // after the database thread (dropped in reverse order), finished.
    let _closed = node.closed.clone().drop_guard();
    let _stopped = node.stopped.clone().drop_guard();
    while !node.stopped.is_cancelled() {
        let next_expiry = node.lock().state.next_expiry();
        let wake = next_expiry
            .map_or(EXPIRY_CHECK, |at| {
                at.saturating_duration_since(Instant::now())
            })
            .min(EXPIRY_CHECK);
        let mut pending = Vec::new();
        match queue.recv_timeout(wake) {
            Ok(first) => pending.push(first),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        while pending.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => pending.push(next),
                Err(_) => break,
            }
        }
        let mut batch = Batch::default();
        let mut published = Vec::new();
        let mut answers = Vec::with_capacity(pending.len());
        {
            let mut inner = node.lock();
            let state = &mut inner.state;
            for id in state.expired(Instant::now()) {
                if let Ok(changes) = state.revoke(id) {
                    tracing::debug!(lease = id, keys = changes.events.len(), "lease expired");
                    batch.revoked.push(id);
                    keep(&mut batch, &mut published, changes);
                }
            }
            for (op, reply) in pending {
                let outcome = apply(state, op, &mut batch, &mut published);
                let revision = state.store().revision();
                answers.push((reply, outcome.map(|outcome| Written { outcome, revision })));
            }
            batch.revision = state.store().revision();
        }
        let mut durable = None;
        if !batch.is_empty() {
            let started = Instant::now();
            match wal.append(&batch) {
                Ok(seq) => {
                    node.metrics.committed(started.elapsed(), batch.revision);
                    durable = Some(seq);
                }
                Err(error) => {
                    // Nothing of this batch was acknowledged; the state holds
                    // it, so the node cannot go on serving.
                    tracing::error!(
                        %error,
                        path = %wal.path().display(),
                        "cannot write the registry's write-ahead log; stopping"
                    );
                    break;
                }
            }
        }
        {
            let mut inner = node.lock();
            inner.visible = inner.state.store().revision();
            if !published.is_empty() {
                node.hub.publish(&Arc::new(Published {
                    changes: published,
                    revision: inner.visible,
                }));
            }
        }
        for (reply, outcome) in answers {
            // A client that went away needs no answer.
            let _ = reply.send(outcome);
        }
        let Some(seq) = durable else { continue };
        // The database thread failed (and said why): the node stops.
        if node.committer.apply(batch, seq).is_err() {
            break;
        }
        // The write-ahead log starts over once the database holds, synced,
        // everything in it: the one wait on the database, once per
        // `wal::CHECKPOINT_BYTES` written.
        if wal.wants_checkpoint() {
            match node.committer.checkpoint() {
                Ok(synced) if synced == wal.last_seq() => wal.restart(),
                Ok(synced) => tracing::error!(
                    synced,
                    appended = wal.last_seq(),
                    "the registry's database synced less than the write-ahead log holds; \
                     the write-ahead log keeps it"
                ),
                Err(_) => break,
            }
        }
    }
    // What was answered reaches the database now, or at the next start.
    node.committer.stop();
    if database.join().is_err() {
        tracing::error!("the registry's database thread panicked");
    }
}

/// Adds what one transaction changed to the batch and to what watchers get.
fn keep(batch: &mut Batch, published: &mut Vec<Changes>, changes: Changes) {
    if changes.records.is_empty() {
        return;
    }
    batch.records.extend(changes.records.iter().cloned());
    published.push(changes);
}

fn apply(
    state: &mut State,
    op: WriteOp,
    batch: &mut Batch,
    published: &mut Vec<Changes>,
) -> Result<WriteOutcome, RequestError> {
    match op {
        WriteOp::Put(request) => {
            let (response, changes) = state.put(&request)?;
            keep(batch, published, changes);
            Ok(WriteOutcome::Put(response))
        }
        WriteOp::Delete(request) => {
            let (response, changes) = state.delete(&request)?;
            keep(batch, published, changes);
            Ok(WriteOutcome::Delete(response))
        }
        WriteOp::Txn(request) => {
            let (response, changes) = state.txn(&request)?;
            keep(batch, published, changes);
            Ok(WriteOutcome::Txn(response))
        }
        WriteOp::Compact(revision) => {
            let dropped = state.compact(revision)?;
            let earlier = batch.compacted.take().map(|(_, dropped)| dropped);
            let mut all = earlier.unwrap_or_default();
            all.extend(dropped);
            batch.compacted = Some((revision, all));
            Ok(WriteOutcome::Compacted)
        }
        WriteOp::Grant(id, ttl) => {
            let (id, ttl) = state.grant(id, ttl, Instant::now())?;
            batch.granted.push((id, ttl));
            Ok(WriteOutcome::Granted(id, ttl))
        }
        WriteOp::Revoke(id) => {
            let changes = state.revoke(id)?;
            batch.granted.retain(|(granted, _)| *granted != id);
            batch.revoked.push(id);
            keep(batch, published, changes);
            Ok(WriteOutcome::Revoked)
        }
    }
}
