//! The work queue between change notifications and reconciles, with
//! client-go's `workqueue` semantics: deduplicating, per-key exclusive,
//! delaying, and rate-limited per key.
//!
//! Invariants: a waiting key is queued once, however often it is added; a key
//! is never processed by two workers at once (a key added while processing is
//! handed out again, once, after [`WorkQueue::done`]).
//!
//! Delayed keys are promoted lazily, by whichever call comes first after their
//! deadline (a getter sleeps until the earliest one), so the queue needs no
//! background task and stops with its last handle.

mod backoff;
mod state;
#[cfg(test)]
mod tests;

use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use prometheus::Registry;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};

use backoff::Retries;
pub use backoff::RetryBackoff;
use state::State;

use super::error::{Error, Result};
use super::metrics::{QueueMetrics, Registration, Snapshot};

/// What a work queue key must be: cheap to clone, hashable, printable in logs.
pub trait Key: Clone + Eq + Hash + Send + Sync + fmt::Debug + 'static {}

impl<T: Clone + Eq + Hash + Send + Sync + fmt::Debug + 'static> Key for T {}

/// A deduplicating, per-key exclusive work queue with delays and per-key
/// retry backoff. Clones share one queue.
pub struct WorkQueue<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    name: String,
    registry: Registry,
    /// Its own `Arc` so that the metrics collector holds it weakly: a scrape
    /// then never drops the last queue handle (which would unregister the
    /// collector while the registry is locked for the scrape).
    inner: Arc<Mutex<Inner<K>>>,
    /// Wakes getters: one per queued key, all when a deadline moves earlier
    /// or the queue shuts down.
    notify: Notify,
    metrics: QueueMetrics,
    _registration: Registration,
}

struct Inner<K> {
    state: State<K>,
    retries: Retries<K>,
}

/// What a getter found.
enum Next<K> {
    Key(K),
    Closed,
    /// Nothing ready: wait for an add, or until the earliest deadline if any.
    Wait(Option<Instant>),
}

fn lock<K>(inner: &Mutex<Inner<K>>) -> MutexGuard<'_, Inner<K>> {
    // Nothing under this lock calls out to user code but `K`'s `Hash`/`Eq`,
    // and the state stays consistent between statements, so a poisoned lock
    // (a panic in one of those) is safe to keep using.
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: Key> fmt::Debug for WorkQueue<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkQueue")
            .field("name", &self.shared.name)
            .field("len", &lock(&self.shared.inner).state.ready_len())
            .finish_non_exhaustive()
    }
}

impl<K: Key> WorkQueue<K> {
    /// A queue named `name` (its metrics' `name` label) with the default
    /// [`RetryBackoff`], its metrics registered on `registry`.
    ///
    /// Fails if a queue of that name is already registered there.
    pub fn new(name: impl Into<String>, registry: &Registry) -> Result<Self> {
        Self::with_backoff(name, registry, RetryBackoff::default())
    }

    /// [`new`](Self::new) with the given per-key retry backoff.
    pub fn with_backoff(
        name: impl Into<String>,
        registry: &Registry,
        backoff: RetryBackoff,
    ) -> Result<Self> {
        let name = name.into();
        let backoff = backoff.validate()?;
        let inner = Arc::new(Mutex::new(Inner {
            state: State::default(),
            retries: Retries::new(backoff),
        }));
        let weak: Weak<Mutex<Inner<K>>> = Arc::downgrade(&inner);
        let probe = Arc::new(move || {
            let inner = weak.upgrade()?;
            let now = Instant::now();
            let inner = lock(&inner);
            let (unfinished, longest) = inner.state.in_progress(now);
            Some(Snapshot {
                depth: inner.state.depth(now),
                unfinished,
                longest,
            })
        });
        let metrics = QueueMetrics::new(&name, probe)?;
        let registration = Registration::new(registry, metrics.clone(), |source| {
            Error::RegisterQueueMetrics {
                queue: name.clone(),
                source,
            }
        })?;
        Ok(Self {
            shared: Arc::new(Shared {
                name,
                registry: registry.clone(),
                inner,
                notify: Notify::new(),
                metrics,
                _registration: registration,
            }),
        })
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The registry the queue's metrics are on (the runner puts its own there).
    pub(crate) fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// Runs `op` under the lock after promoting due timers, then updates the
    /// depth gauge and wakes one getter per newly queued key.
    fn with_state<R>(&self, op: impl FnOnce(&mut Inner<K>, Instant) -> (R, usize)) -> R {
        let now = Instant::now();
        let (result, queued, depth) = {
            let mut inner = lock(&self.shared.inner);
            let promoted = inner.state.promote(now);
            let (result, queued) = op(&mut inner, now);
            let added = u64::try_from(promoted.added).unwrap_or(u64::MAX);
            self.shared.metrics.adds.inc_by(added);
            (result, queued + promoted.queued, inner.state.depth(now))
        };
        let depth = i64::try_from(depth).unwrap_or(i64::MAX);
        self.shared.metrics.depth.set(depth);
        for _ in 0..queued {
            self.shared.notify.notify_one();
        }
        result
    }

    /// Marks `key` as needing processing. A key already waiting is not queued
    /// again; a key being processed is handed out again after its `done`.
    /// Ignored once the queue is shutting down.
    pub fn add(&self, key: K) {
        self.with_state(|inner, now| {
            let added = inner.state.add(key, now);
            if added.is_new() {
                self.shared.metrics.adds.inc();
            }
            ((), usize::from(added == state::Added::Queued))
        });
    }

    /// [`add`](Self::add)s every key, e.g. for a periodic resync.
    pub fn add_all(&self, keys: impl IntoIterator<Item = K>) {
        for key in keys {
            self.add(key);
        }
    }

    /// Adds `key` once `delay` has passed (at once if it is zero). A key
    /// already due earlier keeps its earlier deadline.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let earliest = self.with_state(|inner, now| match now.checked_add(delay) {
            Some(at) => (inner.state.add_at(key, at), 0),
            // Beyond the clock's range: never due, like a timer never fired.
            None => {
                tracing::warn!(queue = %self.shared.name, ?key, ?delay, "delay out of range; key dropped");
                (false, 0)
            }
        });
        if earliest {
            // Sleeping getters wait for a later deadline; make them look again.
            self.shared.notify.notify_waiters();
        }
    }

    /// Adds `key` after its next retry delay (see [`RetryBackoff`]), which
    /// grows with every call until [`forget`](Self::forget).
    pub fn add_rate_limited(&self, key: K) {
        if self.is_shutting_down() {
            return;
        }
        let delay = lock(&self.shared.inner).retries.next_delay(key.clone());
        self.shared.metrics.retries.inc();
        self.add_after(key, delay);
    }

    /// Resets `key`'s retry backoff (call it when `key` was processed well).
    pub fn forget(&self, key: &K) {
        lock(&self.shared.inner).retries.forget(key);
    }

    /// How often `key` was [`add_rate_limited`](Self::add_rate_limited)
    /// since it was last forgotten.
    pub fn num_requeues(&self, key: &K) -> u32 {
        lock(&self.shared.inner).retries.retries(key)
    }

    /// Waits for the next key to process; the caller owns it until it calls
    /// [`done`](Self::done). `None` once the queue is shut down and no key is
    /// ready (keys still being processed are not waited for).
    ///
    /// Cancel-safe: a key is taken only in the poll that returns it.
    pub async fn get(&self) -> Option<K> {
        loop {
            // Registered before looking, so an add between the look and the
            // wait still wakes us.
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = self.with_state(|inner, now| {
                let next = match inner.state.pop(now) {
                    Some((key, waited)) => {
                        let waited = waited.as_secs_f64();
                        self.shared.metrics.queue_duration.observe(waited);
                        Next::Key(key)
                    }
                    None if inner.state.is_shutting_down() => Next::Closed,
                    None => Next::Wait(inner.state.next_deadline()),
                };
                (next, 0)
            });
            match next {
                Next::Key(key) => return Some(key),
                Next::Closed => return None,
                Next::Wait(None) => notified.await,
                Next::Wait(Some(deadline)) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = sleep_until(deadline) => {}
                    }
                }
            }
        }
    }

    /// Ends the processing of `key` (from [`get`](Self::get)); if it was added
    /// meanwhile, it is queued again now. A key not being processed is ignored.
    pub fn done(&self, key: &K) {
        self.with_state(|inner, now| match inner.state.done(key, now) {
            Some(done) => {
                let worked = done.worked.as_secs_f64();
                self.shared.metrics.work_duration.observe(worked);
                ((), usize::from(done.requeued))
            }
            None => {
                tracing::debug!(queue = %self.shared.name, ?key, "done for a key not in progress");
                ((), 0)
            }
        });
    }

    /// Keys ready to be handed out (not those due later or being processed).
    pub fn len(&self) -> usize {
        self.with_state(|inner, _| (inner.state.ready_len(), 0))
    }

    /// Whether no key is ready to be handed out.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops taking keys and drops delayed ones; getters drain the keys
    /// already queued, then get `None`. Idempotent.
    pub fn shut_down(&self) {
        lock(&self.shared.inner).state.shut_down();
        self.shared.notify.notify_waiters();
    }

    /// Whether [`shut_down`](Self::shut_down) was called.
    pub fn is_shutting_down(&self) -> bool {
        lock(&self.shared.inner).state.is_shutting_down()
    }
}
