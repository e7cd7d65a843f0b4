//! A cache of one registry prefix: list at revision R, then watch from R + 1.
//!
//! The cache drives the registry's one resumable prefix watch
//! ([`PrefixWatch`]): a listing takes a snapshot and swaps it in whole;
//! watch responses are applied from the next revision. The watch resumes a
//! dropped stream, and sends a compacted one back to a listing, under its
//! one backoff and progress policy; the cache counts the restarts and
//! relists, and between responses checks, for a reader waiting on a
//! revision beyond its prefix's last change, that its prefix is quiet.
//!
//! Invariants: the cache never moves backwards in revision, and a reader sees
//! either the old snapshot or the new one, never a mix. Values that do not
//! decode are reported (log and `visor_malformed_objects_total`) and left out.
//! Secondary [`Index`]es change with the objects, under the same lock.

mod changes;
mod index;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use etcd_client::EventType;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::registry::watch::{PrefixWatch, WatchStep};
use crate::registry::{Codec, Error, KeyPath, Kind, Registry, Versioned};
use changes::Subscribers;
pub use index::{Index, IndexValue, Indexes};

/// How long a reader waiting for a revision lets the watch deliver it
/// before asking the cache to check that its prefix is quiet.
const EVENTS_GRACE: Duration = Duration::from_millis(20);

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

impl Change {
    /// The key the change is about; `None` for a relisting.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Upserted(key) | Self::Deleted(key) => Some(key),
            Self::Relisted => None,
        }
    }
}

/// A cached object with what its key names, parsed once when it arrives:
/// indexes and readers take the key's typed segments from here.
#[derive(Debug)]
struct Cached<T> {
    /// Shared, so a reader that only looks need not copy (a relation's
    /// states hold a hundred members each).
    object: Arc<Versioned<T>>,
    path: KeyPath,
}

/// The cached objects at one revision.
#[derive(Debug)]
struct Snapshot<T> {
    revision: i64,
    objects: BTreeMap<String, Cached<T>>,
    /// Keys under the prefix that hold no object (malformed values, keys
    /// that fit no object): with `objects`, every key the prefix holds.
    unlisted: BTreeSet<String>,
    indexes: Indexes<T>,
}

impl<T: 'static> Snapshot<T> {
    fn new(revision: i64, indexes: Indexes<T>) -> Self {
        Self {
            revision,
            objects: BTreeMap::new(),
            unlisted: BTreeSet::new(),
            indexes,
        }
    }

    /// Replaces every object, as of `revision`.
    fn replace(
        &mut self,
        revision: i64,
        objects: BTreeMap<String, Cached<T>>,
        unlisted: BTreeSet<String>,
    ) {
        self.indexes.rebuild(
            objects
                .values()
                .map(|cached| (&cached.path, &*cached.object)),
        );
        self.objects = objects;
        self.unlisted = unlisted;
        self.revision = revision;
    }

    fn upsert(&mut self, path: KeyPath, item: Versioned<T>) {
        self.unlisted.remove(&item.key);
        if let Some(old) = self.objects.get(&item.key) {
            self.indexes.remove(&old.path, &old.object);
        }
        self.indexes.insert(&path, &item);
        let object = Arc::new(item);
        self.objects
            .insert(object.key.clone(), Cached { object, path });
    }

    /// Drops the object at `key`; `still_there` when the key exists but
    /// holds no object (a malformed value).
    fn remove(&mut self, key: &str, still_there: bool) {
        if let Some(old) = self.objects.remove(key) {
            self.indexes.remove(&old.path, &old.object);
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
    subscribers: Subscribers,
}

impl<T> Clone for CacheReader<T> {
    fn clone(&self) -> Self {
        Self {
            snapshot: self.snapshot.clone(),
            progress: self.progress.clone(),
            wanted: self.wanted.clone(),
            subscribers: self.subscribers.clone(),
        }
    }
}

impl<T> CacheReader<T> {
    /// Every change from now on, in order, on a channel of its own.
    pub fn changes(&self) -> mpsc::UnboundedReceiver<Change> {
        self.subscribers.subscribe()
    }
}

impl<T: Clone + 'static> CacheReader<T> {
    /// Every cached object, in key order, with the revision the cache is at.
    pub fn list(&self) -> (i64, Vec<Versioned<T>>) {
        let snapshot = self.read();
        (
            snapshot.revision,
            snapshot
                .objects
                .values()
                .map(|cached| Versioned::clone(&cached.object))
                .collect(),
        )
    }

    /// The object at `key`, if cached.
    pub fn get(&self, key: &str) -> Option<Versioned<T>> {
        self.read()
            .objects
            .get(key)
            .map(|cached| Versioned::clone(&cached.object))
    }

    /// [`get`](Self::get) without copying the object.
    pub fn get_shared(&self, key: &str) -> Option<Arc<Versioned<T>>> {
        self.read()
            .objects
            .get(key)
            .map(|cached| cached.object.clone())
    }

    /// The objects `index` files under `value`, in key order.
    pub fn indexed<V: IndexValue>(&self, index: &Index<T, V>, value: &V) -> Vec<Versioned<T>> {
        self.indexed_shared(index, value)
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect()
    }

    /// [`indexed`](Self::indexed) without copying the objects: for readers
    /// of large objects that only look at them.
    pub fn indexed_shared<V: IndexValue>(
        &self,
        index: &Index<T, V>,
        value: &V,
    ) -> Vec<Arc<Versioned<T>>> {
        self.indexed_map(index, value, |_, object| Some(object.clone()))
    }

    /// What `pick` makes of each object `index` files under `value` and of
    /// what its key names, in key order, leaving out what it returns `None`
    /// for: a reader takes the key's segments without parsing it again.
    pub fn indexed_map<V: IndexValue, R>(
        &self,
        index: &Index<T, V>,
        value: &V,
        mut pick: impl FnMut(&KeyPath, &Arc<Versioned<T>>) -> Option<R>,
    ) -> Vec<R> {
        let snapshot = self.read();
        let Some(keys) = snapshot.indexes.entries(index).and_then(|e| e.get(value)) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|key| snapshot.objects.get(key))
            .filter_map(|cached| pick(&cached.path, &cached.object))
            .collect()
    }

    /// What `pick` makes of every cached object and of what its key names,
    /// in key order, leaving out what it returns `None` for.
    pub fn list_map<R>(
        &self,
        mut pick: impl FnMut(&KeyPath, &Arc<Versioned<T>>) -> Option<R>,
    ) -> Vec<R> {
        self.read()
            .objects
            .values()
            .filter_map(|cached| pick(&cached.path, &cached.object))
            .collect()
    }

    /// How many objects `index` files under each value it has, by value.
    pub fn index_counts<V: IndexValue>(&self, index: &Index<T, V>) -> BTreeMap<V, usize> {
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
    pub fn has_indexed<V: IndexValue>(&self, index: &Index<T, V>, value: &V) -> bool {
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
/// The returned channel is a first subscriber to its changes, taken before
/// the cache starts, so it hears the first listing too; the cache stops when
/// `shutdown` is cancelled.
pub fn spawn<T>(
    registry: Registry,
    kind: Kind,
    prefix: String,
    indexes: Indexes<T>,
    metrics: CacheMetrics,
    shutdown: CancellationToken,
) -> (CacheReader<T>, mpsc::UnboundedReceiver<Change>)
where
    T: Codec + Clone + Send + Sync + 'static,
{
    let snapshot = Arc::new(RwLock::new(Snapshot::new(0, indexes)));
    let (progress_tx, progress) = watch::channel(None);
    let wanted = Arc::new(tokio::sync::Notify::new());
    let subscribers = Subscribers::default();
    let changes = subscribers.subscribe();
    let cache = Cache {
        registry,
        kind,
        prefix,
        metrics,
        snapshot: snapshot.clone(),
        progress: progress_tx,
        wanted: wanted.clone(),
        subscribers: subscribers.clone(),
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
            subscribers,
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
    subscribers: Subscribers,
}

impl<T: Codec + Clone + Send + Sync + 'static> Cache<T> {
    fn label(&self) -> &'static str {
        self.kind.label()
    }

    async fn run(self) {
        let mut watch = PrefixWatch::listing(self.registry.clone(), self.prefix.clone());
        loop {
            let watching = watch.is_watching();
            let step = tokio::select! {
                step = watch.next() => step,
                () = self.wanted.notified(), if watching => {
                    // A reader waits for a revision this prefix has not seen.
                    if let Err(error) = self.confirm_quiet().await {
                        tracing::debug!(cache = self.label(), %error, "cannot check whether the prefix is quiet");
                    }
                    continue;
                }
            };
            match step {
                WatchStep::List => match self.relist().await {
                    Ok(revision) => watch.listed(revision),
                    Err(error) => self.restart(error, watch.back_off()),
                },
                WatchStep::Changes { response, revision } => self.apply(&response, revision),
                // Counted and delayed like a failure: a relist is the costly path.
                WatchStep::Compacted(compaction) => {
                    self.restart(compaction.into(), watch.back_off());
                }
                WatchStep::Interrupted { error, delay } => self.restart(error, delay),
            }
        }
    }

    /// Counts and reports a restart of the watch (or listing) after `delay`.
    fn restart(&self, error: Error, delay: Duration) {
        self.metrics
            .restarts
            .with_label_values(&[self.label()])
            .inc();
        tracing::warn!(cache = self.label(), %error, ?delay, "cache watch interrupted; restarting");
    }

    /// Lists the prefix and swaps the snapshot in whole; returns its revision.
    async fn relist(&self) -> Result<i64, Error> {
        let listing = self
            .registry
            .list_objects::<T>(self.kind, &self.prefix)
            .await?;
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
        let keys = self.registry.keys();
        let objects = listing
            .items
            .into_iter()
            .map(|item| {
                let path = keys.parse(&item.key);
                let object = Arc::new(item);
                (object.key.clone(), Cached { object, path })
            })
            .collect();
        let unlisted = listing.skipped.iter().map(|m| m.key.clone()).collect();
        self.write().replace(listing.revision, objects, unlisted);
        self.progress.send_replace(Some(listing.revision));
        self.subscribers.send(&Change::Relisted);
        Ok(listing.revision)
    }

    /// Applies one watch response, delivered up to `revision`.
    fn apply(&self, response: &etcd_client::WatchResponse, revision: i64) {
        let mut snapshot = self.write();
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let path = self.registry.keys().parse(&key);
            let fits = path.kind() == Some(self.kind);
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
                    snapshot.upsert(path, item);
                    Change::Upserted(key)
                }
                None => {
                    snapshot.remove(&key, event.event_type() == EventType::Put);
                    Change::Deleted(key)
                }
            };
            self.subscribers.send(&change);
        }
        // The shared watch says how far the response proves the cache
        // current (never past events still to come).
        snapshot.revision = snapshot.revision.max(revision);
        let reached = snapshot.revision;
        drop(snapshot);
        // Readers waiting for a revision wake once the snapshot shows it.
        self.progress.send_replace(Some(reached));
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
    use crate::registry::watch::Compaction;
    use crate::registry::{LocalRegistry, RegistryConfig, Visor};

    /// The compaction path, deterministically: a watch asked to resume from a
    /// compacted revision goes back to `Listing`, and the
    /// relist swaps in a snapshot that is current.
    #[tokio::test]
    async fn a_compacted_resume_point_leads_to_a_relist() {
        let run = async {
            let etcd = LocalRegistry::start().await.expect("etcd");
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
            let prefix = registry.keys().apps();
            let mut watch = PrefixWatch::from_revision(registry.clone(), prefix.clone(), stale + 1);
            let cache: Cache<visor_controllers::App> = Cache {
                prefix,
                registry,
                kind: Kind::App,
                metrics,
                snapshot: Arc::new(RwLock::new(Snapshot::new(stale, Indexes::new()))),
                progress: watch::channel(None).0,
                wanted: Arc::default(),
                subscribers: Subscribers::default(),
            };
            match watch.next().await {
                WatchStep::Compacted(Compaction {
                    requested,
                    compacted,
                }) => {
                    assert_eq!((requested, compacted), (stale + 1, now));
                }
                other => panic!("expected a compaction, got {other:?}"),
            }
            assert!(
                matches!(watch.next().await, WatchStep::List),
                "expected a return to Listing on compaction"
            );
            let revision = cache.relist().await.expect("relist");
            assert_eq!(revision, now);
            let names: Vec<String> = cache
                .write()
                .objects
                .values()
                .map(|cached| cached.object.name().to_owned())
                .collect();
            assert_eq!(names, ["new"]);
        };
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("etcd start, watch or relist hangs");
    }
}
