//! Runs a reconcile function over the keys of a [`WorkQueue`], the way
//! controller-runtime's controller workers do.
//!
//! Invariants: at most `concurrency` reconciles run at once; a key is never
//! reconciled by two workers at once (the queue hands it out once until done);
//! every key handed out is settled — forgotten or retried, then done — even if
//! its reconcile panics or is cancelled; once the shutdown token is cancelled
//! no reconcile of this runner makes progress past its next await.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::error::{Error, Result};
use super::metrics::{ControllerMetrics, Outcome, Registration};
use super::queue::{Key, WorkQueue};

/// What a successful reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the key is added again.
    Done,
    /// Reconcile the key again after this long (e.g. to poll something).
    RequeueAfter(Duration),
}

/// What a reconcile task hands back: its result and how long it took.
type Finished<E> = (std::result::Result<Action, E>, Duration);

/// Takes keys from `queue` and runs `reconcile` on each, at most `concurrency`
/// at a time, until `shutdown` is cancelled or the queue is shut down.
///
/// The controller is named after the queue: that name labels the
/// `controller_runtime_*` metrics (registered on the queue's registry while
/// this runs) and the `reconcile` span each call runs in.
///
/// On `Ok(Action::Done)` the key's backoff is forgotten; on
/// `Ok(Action::RequeueAfter(d))` it is forgotten and the key added after `d`;
/// on `Err` (or a panic) the key is logged and added rate-limited. Then it is
/// done.
///
/// When `shutdown` is cancelled it stops taking keys, shuts the queue down,
/// and cancels the reconciles in flight: they are dropped at their next await
/// point. A leader whose term ended must stop acting at once, not when its
/// reconciles happen to finish, and every reconcile is written to be safe to
/// cut short (each registry write is one transaction). When the queue is shut
/// down by someone else, the reconciles in flight are let finish.
///
/// Fails only at start: zero concurrency, or metrics that cannot be
/// registered (e.g. another runner is running on the same queue).
pub async fn run<K, F, Fut, E>(
    queue: WorkQueue<K>,
    concurrency: usize,
    reconcile: F,
    shutdown: CancellationToken,
) -> Result<()>
where
    K: Key,
    F: Fn(K) -> Fut,
    Fut: Future<Output = std::result::Result<Action, E>> + Send + 'static,
    E: Display + Send + 'static,
{
    if concurrency == 0 {
        return Err(Error::ZeroConcurrency);
    }
    let name = queue.name().to_owned();
    let metrics = ControllerMetrics::new(&name)?;
    let _registration = Registration::new(queue.registry(), metrics.clone(), |source| {
        Error::RegisterControllerMetrics {
            controller: name.clone(),
            source,
        }
    })?;
    metrics
        .max_concurrent
        .set(i64::try_from(concurrency).unwrap_or(i64::MAX));
    let mut workers = Workers {
        queue: &queue,
        name: &name,
        metrics: &metrics,
        tasks: JoinSet::new(),
        keys: HashMap::new(),
    };
    loop {
        tokio::select! {
            // Shutdown first, then settling finished keys, then new keys.
            biased;
            () = shutdown.cancelled() => {
                workers.tasks.abort_all();
                break;
            }
            Some(joined) = workers.tasks.join_next_with_id() => workers.settle(joined),
            key = queue.get(), if workers.tasks.len() < concurrency => match key {
                Some(key) => workers.start(key, &reconcile),
                None => break,
            },
        }
    }
    queue.shut_down();
    tracing::debug!(controller = %name, in_flight = workers.tasks.len(), "draining reconciles");
    while let Some(joined) = workers.tasks.join_next_with_id().await {
        workers.settle(joined);
    }
    Ok(())
}

/// The reconciles in flight and the key each one is for.
struct Workers<'a, K, E> {
    queue: &'a WorkQueue<K>,
    name: &'a str,
    metrics: &'a ControllerMetrics,
    tasks: JoinSet<Finished<E>>,
    /// The key of every task in `tasks`, so a panicked one can be settled too.
    keys: HashMap<Id, K>,
}

impl<K: Key, E: Display + Send + 'static> Workers<'_, K, E> {
    fn start<F, Fut>(&mut self, key: K, reconcile: &F)
    where
        F: Fn(K) -> Fut,
        Fut: Future<Output = std::result::Result<Action, E>> + Send + 'static,
    {
        let span = tracing::info_span!("reconcile", controller = self.name, key = ?key);
        let call = span.in_scope(|| reconcile(key.clone()));
        let task = async move {
            let started = Instant::now();
            let result = call.await;
            (result, started.elapsed())
        };
        let handle = self.tasks.spawn(task.instrument(span));
        self.keys.insert(handle.id(), key);
        self.metrics.active_workers.inc();
    }

    fn settle(&mut self, joined: std::result::Result<(Id, Finished<E>), JoinError>) {
        let (id, finished) = match joined {
            Ok((id, finished)) => (id, Ok(finished)),
            Err(error) => (error.id(), Err(error)),
        };
        // Every spawned task's id was recorded in `start`.
        let Some(key) = self.keys.remove(&id) else {
            return;
        };
        self.metrics.active_workers.dec();
        let (name, queue) = (self.name, self.queue);
        let outcome = match finished {
            Ok((result, took)) => {
                self.metrics.reconcile_time.observe(took.as_secs_f64());
                match result {
                    Ok(Action::Done) => {
                        queue.forget(&key);
                        Outcome::Success
                    }
                    Ok(Action::RequeueAfter(delay)) => {
                        queue.forget(&key);
                        queue.add_after(key.clone(), delay);
                        Outcome::RequeueAfter
                    }
                    Err(error) => {
                        let retries = queue.num_requeues(&key);
                        tracing::warn!(controller = name, ?key, %error, retries, "reconcile failed");
                        queue.add_rate_limited(key.clone());
                        Outcome::Error
                    }
                }
            }
            Err(error) if error.is_cancelled() => {
                // Only shutdown cancels, and the queue is shut down with it.
                tracing::debug!(controller = name, ?key, "reconcile cancelled by shutdown");
                queue.done(&key);
                return;
            }
            Err(error) => {
                tracing::error!(controller = name, ?key, %error, "reconcile panicked");
                queue.add_rate_limited(key.clone());
                Outcome::Error
            }
        };
        self.metrics.reconciled(outcome);
        queue.done(&key);
    }
}
