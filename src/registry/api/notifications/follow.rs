//! Following the notifications: the retained ones after a sequence number,
//! then every new one as it is posted, as one stream.
//!
//! The first listing (in [`Visor::follow_notifications`], so its error is
//! the caller's) queues what it found; then the registry's resumable prefix
//! watch ([`PrefixWatch`]) follows the notifications prefix from the
//! revision after it, stepped lazily, once the queue is drained. The watch
//! reopens itself after a break (etcd restarted, stream ended, no answer to
//! progress requests) from past the last response applied; history lost to
//! compaction leads to a listing of the notifications after the last one
//! yielded, and a watch after that listing.
//!
//! Invariant: a notification is yielded only if its sequence number is
//! above the last one yielded, so none is yielded twice and they come in
//! sequence order; because the watch only moves past responses already queued,
//! and a relist starts from the last sequence number queued, none that is
//! still retained is skipped. Deletions (retention) are not notifications.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use etcd_client::{EventType, WatchResponse};
use futures::Stream;
use visor_controllers::Notification;

use super::super::Visor;
use crate::registry::Kind;
use crate::registry::error::{Error, Result};
use crate::registry::store::Codec;
use crate::registry::watch::{PrefixWatch, WatchStep};

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
        let prefix = self.keys().kind_prefix(Kind::Notification);
        let mut follower = Follower {
            visor: self.clone(),
            // Told of the first listing just below, so it watches after it.
            watch: PrefixWatch::listing(self.registry().clone(), prefix),
            last: after,
            pending: VecDeque::new(),
            relists: relists.clone(),
            finished: false,
        };
        let revision = follower.relist().await?;
        follower.watch.listed(revision);
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

struct Follower {
    visor: Visor,
    watch: PrefixWatch,
    /// The last sequence number queued (or the caller's `after`).
    last: u64,
    /// Notifications found but not yet yielded, in sequence order.
    pending: VecDeque<Notification>,
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
            let (error, delay) = match self.watch.next().await {
                WatchStep::List => match self.relist().await {
                    Ok(revision) => {
                        self.watch.listed(revision);
                        continue;
                    }
                    Err(error) => (error, None),
                },
                WatchStep::Changes { response, .. } => {
                    self.apply(&response);
                    continue;
                }
                WatchStep::Compacted(compaction) => {
                    self.relists.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        requested = compaction.requested,
                        compacted = compaction.compacted,
                        last = self.last,
                        "notification history compacted; listing again"
                    );
                    continue;
                }
                WatchStep::Interrupted { error, delay } => (error, Some(delay)),
            };
            if matches!(
                error,
                Error::Unauthorized { .. } | Error::Config(_) | Error::ReadFile { .. }
            ) {
                self.finished = true;
                return Some(Err(error));
            }
            let delay = delay.unwrap_or_else(|| self.watch.back_off());
            tracing::warn!(%error, ?delay, after = self.last, "following notifications interrupted; resuming");
        }
    }

    /// Lists the notifications after the last one queued and queues them;
    /// returns the listing's revision.
    async fn relist(&mut self) -> Result<i64> {
        let listing = self.visor.notifications(self.last).await?;
        self.queue(listing.items.into_iter().map(|n| n.value));
        tracing::debug!(
            revision = listing.revision,
            last = self.last,
            "notifications listed"
        );
        Ok(listing.revision)
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

    /// Queues the notifications one watch response posted.
    fn apply(&mut self, response: &WatchResponse) {
        let keys = self.visor.registry().keys();
        let mut found = Vec::new();
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
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
    }
}
