//! Following the notifications: the retained ones after a sequence number,
//! then every new one as it is posted, as one stream.
//!
//! A state machine ([`Phase`]): the first listing (in
//! [`Visor::follow_notifications`], so its error is the caller's) queues
//! what it found and remembers its revision R; `Watching { from: R + 1 }`
//! watches the notifications prefix lazily, once the queue is drained, and
//! moves `from` past every response it applies; a broken watch (etcd
//! restarted, stream ended, no answer to progress requests) is opened again
//! from the same `from` after an exponential backoff with jitter; history
//! lost to compaction goes to `Relisting`, which lists the notifications
//! after the last one yielded and watches after that listing.
//!
//! Invariant: a notification is yielded only if its sequence number is
//! above the last one yielded, so none is yielded twice and they come in
//! sequence order; because `from` only moves past responses already queued,
//! and a relist starts from the last sequence number queued, none that is
//! still retained is skipped. Deletions (retention) are not notifications.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use etcd_client::{EventType, WatchOptions, WatchStream};
use futures::Stream;
use tokio::time::{Instant, Interval};
use visor_controllers::Notification;

use super::super::Visor;
use crate::registry::error::{Error, Kind, Result};
use crate::registry::store::Codec;

/// How often an idle watch is asked to prove it is alive (as the caches do).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// How long a progress request may go unanswered before the watch counts as dead.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the follower must go without trouble before its backoff starts over.
const HEALTHY_PERIOD: Duration = Duration::from_secs(30);
/// Longest wait between two attempts while the registry is unreachable.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Notifications in sequence order: the retained ones after the number
/// given, then new ones as they are posted, each once. Registry outages are
/// retried in the background (with a warning logged); the stream ends only
/// after a fatal error (refused credentials, unusable configuration), which
/// it yields first. Nothing runs while it is not polled, and dropping it
/// stops everything.
pub struct NotificationStream {
    inner: Pin<Box<dyn Stream<Item = Result<Notification>> + Send>>,
    relists: Arc<AtomicU64>,
}

impl std::fmt::Debug for NotificationStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationStream")
            .field("relists", &self.relists())
            .finish_non_exhaustive()
    }
}

impl NotificationStream {
    /// How many times history was lost to compaction and the notifications
    /// were listed again.
    pub fn relists(&self) -> u64 {
        self.relists.load(Ordering::Relaxed)
    }
}

impl Stream for NotificationStream {
    type Item = Result<Notification>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Visor {
    /// Follows the notifications numbered above `after` (all retained ones
    /// for 0): lists them now (an error here is returned), then yields them
    /// and every notification posted later, in sequence order, each once —
    /// across etcd restarts and compaction. See [`NotificationStream`].
    pub async fn follow_notifications(&self, after: u64) -> Result<NotificationStream> {
        let relists = Arc::new(AtomicU64::new(0));
        let builder = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(MAX_RETRY_DELAY)
            .without_max_times();
        let mut follower = Follower {
            visor: self.clone(),
            prefix: self.keys().kind_prefix(Kind::Notification),
            phase: Phase::Relisting,
            last: after,
            pending: VecDeque::new(),
            watch: None,
            backoff: builder.build(),
            builder,
            healthy_since: Instant::now(),
            relists: relists.clone(),
            finished: false,
        };
        follower.relist().await?;
        let inner = futures::stream::unfold(follower, |mut follower| async move {
            let next = follower.next().await?;
            Some((next, follower))
        });
        Ok(NotificationStream {
            inner: Box::pin(inner),
            relists,
        })
    }
}

/// Where the follower is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Apply the notifications posted from this revision on.
    Watching { from: i64 },
    /// History is gone: list what follows the last sequence number yielded.
    Relisting,
}

/// An open watch and what tells whether it is still alive.
struct Watch {
    stream: WatchStream,
    progress: Interval,
    last_heard: Instant,
}

struct Follower {
    visor: Visor,
    prefix: String,
    phase: Phase,
    /// The last sequence number queued (or the caller's `after`).
    last: u64,
    /// Notifications found but not yet yielded, in sequence order.
    pending: VecDeque<Notification>,
    watch: Option<Watch>,
    backoff: ExponentialBackoff,
    builder: ExponentialBuilder,
    /// When the last failure was recovered from (or the follower started).
    healthy_since: Instant,
    relists: Arc<AtomicU64>,
    finished: bool,
}

impl Follower {
    /// The next notification; `None` once a fatal error was yielded.
    async fn next(&mut self) -> Option<Result<Notification>> {
        loop {
            if let Some(notification) = self.pending.pop_front() {
                return Some(Ok(notification));
            }
            if self.finished {
                return None;
            }
            let step = match self.phase {
                Phase::Watching { from } => self.watch(from).await,
                Phase::Relisting => self.relist().await,
            };
            let Err(error) = step else { continue };
            self.watch = None;
            if matches!(error, Error::Unauthorized { .. } | Error::Config(_)) {
                self.finished = true;
                return Some(Err(error));
            }
            if self.healthy_since.elapsed() >= HEALTHY_PERIOD {
                self.backoff = self.builder.build();
            }
            let delay = self.backoff.next().unwrap_or(MAX_RETRY_DELAY);
            tracing::warn!(%error, ?delay, after = self.last, "following notifications interrupted; resuming");
            tokio::time::sleep(delay).await;
            self.healthy_since = Instant::now();
        }
    }

    /// Lists the notifications after the last one queued, queues them, and
    /// watches after the listing.
    async fn relist(&mut self) -> Result<()> {
        let listing = self.visor.notifications(self.last).await?;
        self.queue(listing.items.into_iter().map(|n| n.value));
        self.phase = Phase::Watching {
            from: listing.revision + 1,
        };
        tracing::debug!(
            revision = listing.revision,
            last = self.last,
            "notifications listed"
        );
        Ok(())
    }

    /// Queues, in sequence order, those of `found` numbered above the last one queued.
    fn queue(&mut self, found: impl IntoIterator<Item = Notification>) {
        let mut found: Vec<Notification> = found.into_iter().collect();
        found.sort_by_key(|n| n.seq);
        for notification in found {
            if notification.seq > self.last {
                self.last = notification.seq;
                self.pending.push_back(notification);
            }
        }
    }

    /// Opens a watch of the notifications prefix from revision `from`.
    async fn open(&self, from: i64) -> Result<Watch> {
        let registry = self.visor.registry();
        let options = WatchOptions::new().with_prefix().with_start_revision(from);
        let mut client = registry.watch_client();
        let stream = client
            .watch(self.prefix.as_str(), Some(options))
            .await
            .map_err(|error| registry.error("watch", error))?;
        Ok(Watch {
            stream,
            progress: tokio::time::interval_at(
                Instant::now() + PROGRESS_INTERVAL,
                PROGRESS_INTERVAL,
            ),
            last_heard: Instant::now(),
        })
    }

    /// Handles one watch response (or one progress check), opening the
    /// watch from `from` first if it is not open.
    async fn watch(&mut self, from: i64) -> Result<()> {
        let watch = match self.watch.take() {
            Some(watch) => watch,
            None => self.open(from).await?,
        };
        let watch = self.watch.insert(watch);
        let registry = self.visor.registry();
        // Both branches are cancel safe; the stream keeps what it has read.
        let message = tokio::select! {
            message = watch.stream.message() => message,
            _ = watch.progress.tick() => {
                if watch.last_heard.elapsed() > PROGRESS_TIMEOUT {
                    return Err(registry.unavailable("watch", "no answer to progress requests"));
                }
                // A dead stream would not answer; an answer updates `last_heard`.
                let _ = watch.stream.request_progress().await;
                return Ok(());
            }
        };
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => return Err(registry.unavailable("watch", "the watch stream ended")),
            Err(error) => return Err(registry.error("watch", error)),
        };
        watch.last_heard = Instant::now();
        if response.compact_revision() > 0 {
            self.relists.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                requested = from,
                compacted = response.compact_revision(),
                last = self.last,
                "notification history compacted; listing again"
            );
            self.watch = None;
            self.phase = Phase::Relisting;
            return Ok(());
        }
        if response.canceled() {
            return Err(Error::Request {
                op: "watch",
                message: format!("watch canceled: {}", response.cancel_reason()),
            });
        }
        let keys = registry.keys();
        let mut next = from;
        let mut found = Vec::new();
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            next = next.max(kv.mod_revision() + 1);
            // Retention deletes old notifications: not news.
            if event.event_type() == EventType::Delete {
                continue;
            }
            let key = String::from_utf8_lossy(kv.key());
            if keys.parse(&key).kind() != Some(Kind::Notification) {
                tracing::warn!(%key, "skipping a key outside the registry layout");
                continue;
            }
            match Notification::decode(kv.value()) {
                Ok(notification) => found.push(notification),
                // A listing would skip it too.
                Err(reason) => tracing::warn!(%key, %reason, "skipping malformed notification"),
            }
        }
        self.queue(found);
        self.phase = Phase::Watching { from: next };
        Ok(())
    }
}
