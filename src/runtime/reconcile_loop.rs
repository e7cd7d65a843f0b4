//! A reconcile loop declared in one place, as kube-runtime's
//! `Controller::new(..).watches(api, mapper)` is: its name, its keys, which
//! changes (of caches, or of any stream) touch which keys, how often every key is looked at again, how
//! many reconciles run at once, and the reconcile itself. [`ReconcileLoop::run`]
//! wires that to one [`WorkQueue`], one feed of changes, one [`resync()`] and
//! one [`runner::run`], so a loop's module says what it is and never how the
//! pieces are connected.
//!
//! Invariants: every key is queued once when the loop starts, after its
//! change streams were subscribed, so a change is either seen by a trigger
//! or reflected in the keys listed; changes that touch every key queue them
//! once per gathering window, however many arrive in it; the feed and the
//! resync stop with the runner, whatever ends it.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::cache::Change;
use super::error::Result;
use super::queue::{Key, WorkQueue};
use super::resync::resync;
use super::runner::{self, Action};

/// The keys a change touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched<K> {
    /// None of this loop's keys.
    Nothing,
    /// One key.
    Key(K),
    /// These keys.
    Keys(Vec<K>),
    /// Possibly any key: every key is queued (after the gathering window).
    All,
}

impl<K> Touched<K> {
    /// `key` when `touches`, else nothing.
    pub fn only_if(touches: bool, key: K) -> Self {
        match touches {
            true => Self::Key(key),
            false => Self::Nothing,
        }
    }
}

impl<K> From<Option<K>> for Touched<K> {
    /// A key when the change names one, every key when it cannot be known.
    fn from(key: Option<K>) -> Self {
        key.map_or(Self::All, Self::Key)
    }
}

/// Every key of a loop, listed now.
type AllKeys<K> = Arc<dyn Fn() -> Vec<K> + Send + Sync>;
/// One reconcile of a key.
type Reconcile<K, E> = Box<dyn Fn(K) -> BoxFuture<'static, std::result::Result<Action, E>> + Send>;

/// A reconcile loop's declaration; [`run`](Self::run) runs it.
pub struct ReconcileLoop<K, E> {
    name: &'static str,
    all_keys: AllKeys<K>,
    reconcile: Reconcile<K, E>,
    concurrency: usize,
    resync: Duration,
    gather_all: Duration,
    triggers: Vec<BoxStream<'static, Touched<K>>>,
}

impl<K: Key, E: Display + Send + 'static> ReconcileLoop<K, E> {
    /// A loop named `name` (its queue, metrics label and span) over the keys
    /// `all_keys` lists, reconciling one key with `reconcile`: one at a time,
    /// no resync, no trigger until declared.
    pub fn new<I, F, Fut>(
        name: &'static str,
        all_keys: impl Fn() -> I + Send + Sync + 'static,
        reconcile: F,
    ) -> Self
    where
        I: IntoIterator<Item = K>,
        F: Fn(K) -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Action, E>> + Send + 'static,
    {
        Self {
            name,
            all_keys: Arc::new(move || all_keys().into_iter().collect()),
            reconcile: Box::new(move |key| Box::pin(reconcile(key))),
            concurrency: 1,
            resync: Duration::ZERO,
            gather_all: Duration::ZERO,
            triggers: Vec::new(),
        }
    }

    /// Runs up to `concurrency` reconciles at once (never two of one key).
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Queues every key each `period`, to see drift no change announced
    /// (zero: never).
    #[must_use]
    pub fn resync_every(mut self, period: Duration) -> Self {
        self.resync = period;
        self
    }

    /// Gathers changes that touch every key for `window` before listing the
    /// keys once for all of them: for loops whose listing is costly.
    #[must_use]
    pub fn gather_all_for(mut self, window: Duration) -> Self {
        self.gather_all = window;
        self
    }

    /// Maps every change of one cache to the keys it touches.
    #[must_use]
    pub fn watches(
        self,
        changes: UnboundedReceiver<Change>,
        mut touched: impl FnMut(&Change) -> Touched<K> + Send + 'static,
    ) -> Self {
        let stream = futures::stream::unfold(changes, |mut changes| async move {
            let change = changes.recv().await?;
            Some((change, changes))
        });
        self.triggered_by(stream.map(move |change| touched(&change)))
    }

    /// Queues the keys each item of `touched` names: for what touches keys
    /// without being a cache (the units an agent serves, say).
    #[must_use]
    pub fn triggered_by(
        mut self,
        touched: impl futures::Stream<Item = Touched<K>> + Send + 'static,
    ) -> Self {
        self.triggers.push(touched.boxed());
        self
    }

    /// Runs the loop until `shutdown` is cancelled; its queue's metrics are
    /// registered on `prometheus`. Fails only at start (see [`runner::run`]).
    pub async fn run(
        self,
        prometheus: prometheus::Registry,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let Self {
            name,
            all_keys,
            reconcile,
            concurrency,
            resync: period,
            gather_all,
            triggers,
        } = self;
        let queue = WorkQueue::new(name, &prometheus)?;
        queue.add_all(all_keys());
        // The runner's end is the loop's, however it comes.
        let stop = shutdown.child_token();
        let worked = queue.clone();
        let running = async {
            let outcome = runner::run(worked, concurrency, reconcile, shutdown).await;
            stop.cancel();
            outcome
        };
        let listed = all_keys.clone();
        let resyncing = resync(queue.clone(), period, move || listed(), stop.clone());
        let feeding = feed(queue, triggers, all_keys, gather_all, stop.clone());
        let (outcome, (), ()) = tokio::join!(running, resyncing, feeding);
        outcome
    }
}

/// Queues the keys each change touches, until `stop` is cancelled.
async fn feed<K: Key>(
    queue: WorkQueue<K>,
    triggers: Vec<BoxStream<'static, Touched<K>>>,
    all_keys: AllKeys<K>,
    gather_all: Duration,
    stop: CancellationToken,
) {
    let mut touched = futures::stream::select_all(triggers);
    // When set, every key is queued once this deadline passes.
    let mut all_at: Option<Instant> = None;
    loop {
        let all_due = async {
            match all_at {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = all_due => {
                all_at = None;
                queue.add_all(all_keys());
            }
            Some(touched) = touched.next() => match touched {
                Touched::Nothing => {}
                Touched::Key(key) => queue.add(key),
                Touched::Keys(keys) => queue.add_all(keys),
                Touched::All if gather_all.is_zero() => queue.add_all(all_keys()),
                Touched::All => {
                    all_at.get_or_insert_with(|| Instant::now() + gather_all);
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use prometheus::Registry;
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;
    use tokio::time::{advance, timeout};

    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    type Seen = Arc<Mutex<Vec<&'static str>>>;
    type TestLoop = ReconcileLoop<&'static str, std::convert::Infallible>;

    /// A loop over the keys `all` lists, recording what it reconciles.
    fn recording(all: impl Fn() -> Vec<&'static str> + Send + Sync + 'static) -> (TestLoop, Seen) {
        let seen = Seen::default();
        let recorded = seen.clone();
        let declared = ReconcileLoop::new("test", all, move |key| {
            let recorded = recorded.clone();
            async move {
                recorded.lock().expect("test lock").push(key);
                Ok(Action::Done)
            }
        });
        (declared, seen)
    }

    /// Runs `declared` until the returned token is cancelled.
    fn start(declared: TestLoop) -> (JoinHandle<Result<()>>, CancellationToken) {
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(declared.run(Registry::new(), shutdown.clone()));
        (running, shutdown)
    }

    async fn stop(running: JoinHandle<Result<()>>, shutdown: CancellationToken) {
        shutdown.cancel();
        let stopped = timeout(SEC, running).await;
        assert!(
            matches!(stopped, Ok(Ok(Ok(())))),
            "deadlock: the loop ignored its shutdown token"
        );
    }

    /// Lets the runtime run every ready task on the paused clock.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// What was reconciled since the last look, sorted.
    fn taken(seen: &Seen) -> Vec<&'static str> {
        let mut seen = std::mem::take(&mut *seen.lock().expect("test lock"));
        seen.sort_unstable();
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn queues_every_key_at_start_then_what_changes_touch() {
        let (changes, rx) = mpsc::unbounded_channel();
        let (declared, seen) = recording(|| vec!["a", "b"]);
        let declared = declared.watches(rx, |change| match change {
            Change::Upserted(key) if key == "/a" => Touched::Key("a"),
            Change::Upserted(_) => Touched::Nothing,
            Change::Deleted(_) => Touched::Keys(vec!["a", "b"]),
            Change::Relisted => Touched::All,
        });
        let (running, shutdown) = start(declared);
        settle().await;
        assert_eq!(taken(&seen), ["a", "b"], "every key at start");
        changes
            .send(Change::Upserted("/a".into()))
            .expect("feed runs");
        changes
            .send(Change::Upserted("/c".into()))
            .expect("feed runs");
        settle().await;
        assert_eq!(taken(&seen), ["a"], "only the key a change touches");
        changes
            .send(Change::Deleted("/x".into()))
            .expect("feed runs");
        settle().await;
        assert_eq!(taken(&seen), ["a", "b"]);
        stop(running, shutdown).await;
    }

    #[tokio::test(start_paused = true)]
    async fn changes_touching_every_key_are_gathered_into_one_listing() {
        let listings = Arc::new(AtomicUsize::new(0));
        let counted = listings.clone();
        let (changes, rx) = mpsc::unbounded_channel();
        let (declared, seen) = recording(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            vec!["a"]
        });
        let (running, shutdown) = start(declared.gather_all_for(SEC).watches(rx, |_| Touched::All));
        settle().await;
        assert_eq!(taken(&seen), ["a"]);
        for _ in 0..5 {
            changes.send(Change::Relisted).expect("feed runs");
        }
        settle().await;
        assert!(taken(&seen).is_empty(), "nothing before the window ends");
        advance(SEC).await;
        settle().await;
        assert_eq!(taken(&seen), ["a"]);
        assert_eq!(
            listings.load(Ordering::SeqCst),
            2,
            "listed at start, then once for five changes"
        );
        stop(running, shutdown).await;
    }

    #[tokio::test(start_paused = true)]
    async fn resyncs_every_key_each_period() {
        let (declared, seen) = recording(|| vec!["a"]);
        let (running, shutdown) = start(declared.resync_every(10 * SEC));
        settle().await;
        assert_eq!(taken(&seen), ["a"]);
        advance(10 * SEC).await;
        settle().await;
        assert_eq!(taken(&seen), ["a"], "resynced after one period");
        stop(running, shutdown).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_cannot_start_fails_at_once() {
        let (declared, _) = recording(|| vec!["a"]);
        let outcome = timeout(
            SEC,
            declared
                .concurrency(0)
                .run(Registry::new(), CancellationToken::new()),
        )
        .await;
        assert!(
            matches!(outcome, Ok(Err(_))),
            "zero concurrency fails at start, without waiting for shutdown: {outcome:?}"
        );
    }
}
