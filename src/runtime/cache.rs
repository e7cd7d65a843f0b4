//! A cache of one registry prefix: list at revision R, then watch from R + 1.
//!
//! The watch loop is a state machine ([`Phase`]): `Listing` takes a snapshot
//! and swaps it in whole; `Watching` applies events from the next revision.
//! A dropped watch resumes from the last revision seen; a compacted one goes
//! back to `Listing`. Restarts back off exponentially with jitter, per cache,
//! and the backoff resets after a healthy period. A watch that stops answering
//! progress requests is treated as dropped.
//!
//! Invariants: the cache never moves backwards in revision, and a reader sees
//! either the old snapshot or the new one, never a mix. Values that do not
//! decode are reported (log and `visor_malformed_objects_total`) and left out.
//! Secondary [`Index`]es change with the objects, under the same lock.

mod index;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use etcd_client::{EventType, WatchOptions};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::registry::{Codec, Error, Kind, Registry, Versioned};
pub use index::Index;
use index::Indexes;

/// How often an idle watch is asked to prove it is alive.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// How long a progress request may go unanswered before the watch counts as dead.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reader waiting for a revision lets the watch deliver it
/// before asking the cache to check that its prefix is quiet.
const EVENTS_GRACE: Duration = Duration::from_millis(20);
/// How long a watch must run without trouble before its backoff starts over.
const HEALTHY_PERIOD: Duration = Duration::from_secs(30);

/// What changed in a cache, for whoever turns changes into work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The object at this key was created or replaced.
    Upserted(String),
    /// The object at this key was deleted (or became malformed).
    Deleted(String),
    /// The whole cache was replaced by a fresh listing; anything may have changed.
    Relisted,
}

/// Where the watch loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Take a consistent snapshot, then watch after it.
    Listing,
    /// Apply events from this revision on.
    Watching { from: i64 },
}

/// The cached objects at one revision.
#[derive(Debug)]
struct Snapshot<T> {
    revision: i64,
    /// Shared, so a reader that only looks need not copy (a relation's
    /// states hold a hundred members each).
    objects: BTreeMap<String, Arc<Versioned<T>>>,
    /// Keys under the prefix that hold no object (malformed values, keys
    /// that fit no object): with `objects`, every key the prefix holds.
    unlisted: BTreeSet<String>,
    indexes: Indexes<T>,
}

impl<T> Snapshot<T> {
    fn new(revision: i64, indexes: &[Index<T>]) -> Self {
        Self {
            revision,
            objects: BTreeMap::new(),
            unlisted: BTreeSet::new(),
            indexes: Indexes::new(indexes),
        }
    }

    /// Replaces every object, as of `revision`.
    fn replace(
        &mut self,
        revision: i64,
        objects: BTreeMap<String, Versioned<T>>,
        unlisted: BTreeSet<String>,
    ) {
        self.indexes.rebuild(objects.values());
        self.objects = objects
            .into_iter()
            .map(|(key, object)| (key, Arc::new(object)))
            .collect();
        self.unlisted = unlisted;
        self.revision = revision;
    }

    fn upsert(&mut self, item: Versioned<T>) {
        self.unlisted.remove(&item.key);
        if let Some(old) = self.objects.get(&item.key) {
            self.indexes.remove(old);
        }
        self.indexes.insert(&item);
        self.objects.insert(item.key.clone(), Arc::new(item));
    }

    /// Drops the object at `key`; `still_there` when the key exists but
    /// holds no object (a malformed value).
    fn remove(&mut self, key: &str, still_there: bool) {
        if let Some(old) = self.objects.remove(key) {
            self.indexes.remove(&old);
        }
        match still_there {
            true => self.unlisted.insert(key.to_owned()),
            false => self.unlisted.remove(key),
        };
    }
}

/// Read access to a cache; cheap to clone.
#[derive(Debug)]
pub struct CacheReader<T> {
    snapshot: Arc<RwLock<Snapshot<T>>>,
    /// `None` until the first listing is in, then the revision reached.
    progress: watch::Receiver<Option<i64>>,
    /// Asks the cache to confirm its prefix is quiet up to the store's
    /// revision: a watch only reports revisions its prefix changed at.
    wanted: Arc<tokio::sync::Notify>,
}

impl<T> Clone for CacheReader<T> {
    fn clone(&self) -> Self {
        Self {
            snapshot: self.snapshot.clone(),
            progress: self.progress.clone(),
            wanted: self.wanted.clone(),
        }
    }
}

impl<T: Clone> CacheReader<T> {
    /// Every cached object, in key order, with the revision the cache is at.
    pub fn list(&self) -> (i64, Vec<Versioned<T>>) {
        let snapshot = self.read();
        (
            snapshot.revision,
            snapshot
                .objects
                .values()
                .map(|object| Versioned::clone(object))
                .collect(),
        )
    }

    /// The object at `key`, if cached.
    pub fn get(&self, key: &str) -> Option<Versioned<T>> {
        self.read()
            .objects
            .get(key)
            .map(|object| Versioned::clone(object))
    }

    /// [`get`](Self::get) without copying the object.
    pub fn get_shared(&self, key: &str) -> Option<Arc<Versioned<T>>> {
        self.read().objects.get(key).cloned()
    }

    /// The objects `index` files under `value`, in key order.
    pub fn indexed(&self, index: &Index<T>, value: &str) -> Vec<Versioned<T>> {
        self.indexed_shared(index, value)
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect()
    }

    /// [`indexed`](Self::indexed) without copying the objects: for readers
    /// of large objects that only look at them.
    pub fn indexed_shared(&self, index: &Index<T>, value: &str) -> Vec<Arc<Versioned<T>>> {
        let snapshot = self.read();
        let Some(keys) = snapshot.indexes.entries(index).and_then(|e| e.get(value)) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|key| snapshot.objects.get(key).cloned())
            .collect()
    }

    /// How many objects `index` files under each value it has, by value.
    pub fn index_counts(&self, index: &Index<T>) -> BTreeMap<String, usize> {
        let snapshot = self.read();
        snapshot
            .indexes
            .entries(index)
            .map(|entries| {
                entries
                    .iter()
                    .map(|(value, keys)| (value.clone(), keys.len()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `index` files any object under `value`.
    pub fn has_indexed(&self, index: &Index<T>, value: &str) -> bool {
        let snapshot = self.read();
        snapshot
            .indexes
            .entries(index)
            .is_some_and(|entries| entries.contains_key(value))
    }

    /// The revision the cache has caught up to.
    pub fn revision(&self) -> i64 {
        self.read().revision
    }

    /// Whether the first listing has completed.
    pub fn is_synced(&self) -> bool {
        self.progress.borrow().is_some()
    }

    /// Resolves once the first listing has completed.
    pub async fn wait_synced(&mut self) {
        // An Err means the cache task is gone; there is nothing left to wait for.
        let _ = self.progress.wait_for(Option::is_some).await;
    }

    /// Resolves once the cache has synced and reached `revision`; false if the
    /// cache task is gone first.
    pub async fn wait_for_revision(&self, revision: i64) -> bool {
        let reached = |r: &Option<i64>| r.is_some_and(|r| r >= revision);
        let mut progress = self.progress.clone();
        // Usually the events are on their way: give them a moment first.
        if let Ok(outcome) = tokio::time::timeout(EVENTS_GRACE, progress.wait_for(reached)).await {
            return outcome.is_ok();
        }
        // Writes elsewhere advance the store, not this prefix: ask the cache
        // to check whether its prefix is unchanged up to the store's revision.
        self.wanted.notify_one();
        progress.wait_for(reached).await.is_ok()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot<T>> {
        // A poisoned lock means a writer panicked mid-update; the data is still
        // the last consistent snapshot because updates swap or insert whole values.
        self.snapshot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Counters the cache reports to.
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    /// `visor_watch_restarts_total{cache}`
    pub restarts: prometheus::IntCounterVec,
    /// `visor_relists_total{cache}`
    pub relists: prometheus::IntCounterVec,
    /// `visor_malformed_objects_total{cache}`
    pub malformed: prometheus::IntCounterVec,
}

impl CacheMetrics {
    /// Creates the counters and registers them on `registry`.
    pub fn register(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| -> prometheus::Result<prometheus::IntCounterVec> {
            let vec =
                prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), &["cache"])?;
            registry.register(Box::new(vec.clone()))?;
            Ok(vec)
        };
        Ok(Self {
            restarts: counter(
                "visor_watch_restarts_total",
                "Watch streams restarted after a drop or error.",
            )?,
            relists: counter(
                "visor_relists_total",
                "Full relists of a cache (start-up and compaction).",
            )?,
            malformed: counter(
                "visor_malformed_objects_total",
                "Registry values skipped because they do not decode.",
            )?,
        })
    }
}

/// Starts caching every `kind` object under `prefix`, maintaining `indexes`.
/// Changes are sent on the returned channel; the cache stops when `shutdown`
/// is cancelled.
pub fn spawn<T>(
    registry: Registry,
    kind: Kind,
    prefix: String,
    indexes: &[Index<T>],
    metrics: CacheMetrics,
    shutdown: CancellationToken,
) -> (CacheReader<T>, mpsc::UnboundedReceiver<Change>)
where
    T: Codec + Clone + Send + Sync + 'static,
{
    let snapshot = Arc::new(RwLock::new(Snapshot::new(0, indexes)));
    let (progress_tx, progress) = watch::channel(None);
    let wanted = Arc::new(tokio::sync::Notify::new());
    let (changes_tx, changes) = mpsc::unbounded_channel();
    let cache = Cache {
        registry,
        kind,
        prefix,
        metrics,
        snapshot: snapshot.clone(),
        progress: progress_tx,
        wanted: wanted.clone(),
        changes: changes_tx,
    };
    tokio::spawn(async move {
        tokio::select! {
            () = cache.run() => {}
            () = shutdown.cancelled() => {}
        }
    });
    (
        CacheReader {
            snapshot,
            progress,
            wanted,
        },
        changes,
    )
}

struct Cache<T> {
    registry: Registry,
    kind: Kind,
    prefix: String,
    metrics: CacheMetrics,
    snapshot: Arc<RwLock<Snapshot<T>>>,
    progress: watch::Sender<Option<i64>>,
    wanted: Arc<tokio::sync::Notify>,
    changes: mpsc::UnboundedSender<Change>,
}

impl<T: Codec + Clone + Send + Sync + 'static> Cache<T> {
    fn label(&self) -> &'static str {
        self.kind.label()
    }

    async fn run(self) {
        let builder = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(10))
            .without_max_times();
        let mut backoff = builder.build();
        let mut phase = Phase::Listing;
        loop {
            let started = Instant::now();
            let outcome = match phase {
                Phase::Listing => self
                    .relist()
                    .await
                    .map(|revision| Phase::Watching { from: revision + 1 }),
                Phase::Watching { from } => self.watch(from).await,
            };
            match outcome {
                Ok(next) => phase = next,
                Err((next, error)) => {
                    phase = next;
                    if started.elapsed() >= HEALTHY_PERIOD {
                        backoff = builder.build();
                    }
                    self.metrics
                        .restarts
                        .with_label_values(&[self.label()])
                        .inc();
                    let delay = backoff.next().unwrap_or(Duration::from_secs(10));
                    tracing::warn!(cache = self.label(), %error, ?delay, "cache watch interrupted; restarting");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Lists the prefix and swaps the snapshot in whole; returns its revision.
    async fn relist(&self) -> Result<i64, (Phase, Error)> {
        let listing = self
            .registry
            .list_objects::<T>(self.kind, &self.prefix)
            .await
            .map_err(|e| (Phase::Listing, e))?;
        self.metrics
            .relists
            .with_label_values(&[self.label()])
            .inc();
        if !listing.skipped.is_empty() {
            self.metrics
                .malformed
                .with_label_values(&[self.label()])
                .inc_by(listing.skipped.len() as u64);
        }
        let objects = listing
            .items
            .into_iter()
            .map(|item| (item.key.clone(), item))
            .collect();
        let unlisted = listing.skipped.iter().map(|m| m.key.clone()).collect();
        self.write().replace(listing.revision, objects, unlisted);
        self.progress.send_replace(Some(listing.revision));
        let _ = self.changes.send(Change::Relisted);
        Ok(listing.revision)
    }

    /// Applies events from `from` until the watch breaks; says where to go next.
    async fn watch(&self, from: i64) -> Result<Phase, (Phase, Error)> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_progress_notify();
        let mut client = self.registry.watch_client();
        let mut stream = client
            .watch(self.prefix.as_str(), Some(options))
            .await
            .map_err(|e| (Phase::Watching { from }, self.registry.error("watch", e)))?;
        let mut next = from;
        let mut progress = tokio::time::interval(PROGRESS_INTERVAL);
        let mut last_heard = Instant::now();
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                _ = progress.tick() => {
                    if last_heard.elapsed() > PROGRESS_TIMEOUT {
                        return Err((Phase::Watching { from: next }, self.registry.unavailable("watch", "no answer to progress requests")));
                    }
                    // A dead stream would not answer; the answer updates `last_heard`.
                    let _ = stream.request_progress().await;
                    continue;
                }
                () = self.wanted.notified() => {
                    // A reader waits for a revision this prefix has not seen.
                    if let Err(error) = self.confirm_quiet().await {
                        tracing::debug!(cache = self.label(), %error, "cannot check whether the prefix is quiet");
                    }
                    continue;
                }
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => {
                    return Err((
                        Phase::Watching { from: next },
                        self.registry.unavailable("watch", "the watch stream ended"),
                    ));
                }
                Err(error) => {
                    return Err((
                        Phase::Watching { from: next },
                        self.registry.error("watch", error),
                    ));
                }
            };
            last_heard = Instant::now();
            if response.compact_revision() > 0 {
                let error = Error::Compacted {
                    requested: next,
                    compacted: response.compact_revision(),
                };
                return Err((Phase::Listing, error));
            }
            if response.canceled() {
                let reason = response.cancel_reason().to_owned();
                return Err((
                    Phase::Watching { from: next },
                    Error::Request {
                        op: "watch",
                        message: reason,
                    },
                ));
            }
            let mut snapshot = self.write();
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let fits = self.registry.keys().parse(&key).kind() == Some(self.kind);
                let decoded = match (event.event_type(), fits) {
                    (EventType::Delete, _) | (_, false) => None,
                    (EventType::Put, true) => match T::decode(kv.value()) {
                        Ok(value) => Some(value),
                        Err(reason) => {
                            self.metrics
                                .malformed
                                .with_label_values(&[self.label()])
                                .inc();
                            tracing::warn!(%key, %reason, "skipping malformed registry value");
                            None
                        }
                    },
                };
                let change = match decoded {
                    Some(value) => {
                        let item = Versioned {
                            key: key.clone(),
                            value,
                            create_revision: kv.create_revision(),
                            mod_revision: kv.mod_revision(),
                            revision: kv.mod_revision(),
                        };
                        snapshot.upsert(item);
                        Change::Upserted(key)
                    }
                    None => {
                        snapshot.remove(&key, event.event_type() == EventType::Put);
                        Change::Deleted(key)
                    }
                };
                let _ = self.changes.send(change);
                next = next.max(kv.mod_revision() + 1);
            }
            // What the watch has delivered is known from its events. A
            // response's header revision says more only in a periodic progress
            // notification, which etcd sends to a watch that has caught up.
            // Elsewhere it is the store's revision when the response was made,
            // ahead of events still to come: on the response that confirms a
            // watch's creation, and on each batch of a watch catching up from
            // an older revision (etcd sends at most 1,000 revisions a batch).
            // A requested progress notification (watch id -1) is not trusted
            // either: before etcd 3.4.25 and 3.5.8 (etcd-io/etcd#15697) it is
            // not ordered with the events on their way (etcd-io/etcd#15220).
            // It proves the stream alive, nothing more.
            let periodic_progress =
                response.events().is_empty() && !response.created() && response.watch_id() != -1;
            let header_revision = match periodic_progress {
                true => response.header().map_or(0, |h| h.revision()),
                false => 0,
            };
            snapshot.revision = snapshot.revision.max(header_revision).max(next - 1);
            let reached = snapshot.revision;
            drop(snapshot);
            // Readers waiting for a revision wake once the snapshot shows it.
            self.progress.send_replace(Some(reached));
        }
    }

    /// Advances the cache to the store's revision if its prefix has not
    /// changed since the cache's own revision: the prefix holds as many keys
    /// as the cache knows, and none was written after the cache's revision
    /// (any creation or update would be, and a deletion alone lowers the
    /// count). One small read: the newest key by mod revision, with the
    /// prefix's key count.
    async fn confirm_quiet(&self) -> Result<(), Error> {
        let options = etcd_client::GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_limit(1)
            .with_sort(
                etcd_client::SortTarget::Mod,
                etcd_client::SortOrder::Descend,
            );
        let mut kv = self.registry.kv_client();
        let read = self
            .registry
            .call("get", kv.get(self.prefix.as_str(), Some(options)))
            .await?;
        let at = read.header().map_or(0, |h| h.revision());
        let newest = read
            .kvs()
            .first()
            .map_or(0, etcd_client::KeyValue::mod_revision);
        let mut snapshot = self.write();
        let keys = snapshot.objects.len() + snapshot.unlisted.len();
        let unchanged = usize::try_from(read.count()).is_ok_and(|count| count == keys)
            && newest <= snapshot.revision;
        if unchanged && at > snapshot.revision {
            snapshot.revision = at;
            drop(snapshot);
            self.progress.send_replace(Some(at));
        }
        Ok(())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Snapshot<T>> {
        self.snapshot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{LocalEtcd, RegistryConfig, Visor};

    /// The compaction path, deterministically: a watch asked to resume from a
    /// compacted revision sends the state machine back to `Listing`, and the
    /// relist swaps in a snapshot that is current.
    #[tokio::test]
    async fn a_compacted_resume_point_leads_to_a_relist() {
        let run = async {
            let etcd = LocalEtcd::start().await.expect("etcd");
            let visor = Visor::connect(&RegistryConfig::new([etcd.endpoint()]))
                .await
                .expect("connect");
            let registry = visor.registry().clone();
            let app = |url: &str| visor_controllers::App {
                repo_url: url.into(),
                stack: visor_controllers::Name::parse("stack", "base").expect("valid"),
                deploy_type: String::new(),
                created_at: chrono::Utc::now(),
            };
            let stale = visor
                .register_app("old", app("git://old"))
                .await
                .expect("write")
                .revision;
            visor
                .register_app("new", app("git://new"))
                .await
                .expect("write");
            let now = visor.unregister_app("old").await.expect("delete");
            registry.etcd().compact(now, None).await.expect("compact");

            let metrics = CacheMetrics::register(&prometheus::Registry::new()).expect("metrics");
            let (changes, _rx) = mpsc::unbounded_channel();
            let cache: Cache<visor_controllers::App> = Cache {
                prefix: registry.keys().apps(),
                registry,
                kind: Kind::App,
                metrics,
                snapshot: Arc::new(RwLock::new(Snapshot::new(stale, &[]))),
                progress: watch::channel(None).0,
                wanted: Arc::default(),
                changes,
            };
            match cache.watch(stale + 1).await {
                Err((
                    Phase::Listing,
                    Error::Compacted {
                        requested,
                        compacted,
                    },
                )) => {
                    assert_eq!((requested, compacted), (stale + 1, now));
                }
                other => panic!("expected a return to Listing on compaction, got {other:?}"),
            }
            let revision = cache.relist().await.expect("relist");
            assert_eq!(revision, now);
            let names: Vec<String> = cache
                .write()
                .objects
                .values()
                .map(|a| a.name().to_owned())
                .collect();
            assert_eq!(names, ["new"]);
        };
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("etcd start, watch or relist hangs");
    }
}
