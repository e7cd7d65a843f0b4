//! One resumable watch of a registry prefix, which every follower of a
//! prefix drives (the caches, endpoint subscriptions, notifications, the
//! event stream) and keeps only what it does with the changes.
//!
//! A state machine, stepped by [`PrefixWatch::next`]: `Listing` asks the
//! consumer to list the prefix ([`WatchStep::List`]) and to say at which
//! revision it did ([`PrefixWatch::listed`]); `Watching` opens a watch from
//! the revision after it, with progress notifications, and yields each
//! response. A broken watch (stream ended, cancelled, an error, no answer to
//! progress requests) is reopened from the revision after the last event
//! yielded, after a delay under [`WATCH_BACKOFF`]; history lost to
//! compaction is reported once ([`WatchStep::Compacted`]) and sends the
//! watch back to `Listing`.
//!
//! Invariants: the resume point only moves forward, past events already
//! yielded, so a resumed watch neither repeats nor skips one; the revision a
//! response reports as delivered ([`WatchStep::Changes`]) never runs ahead of
//! events still to come. [`PrefixWatch::next`] is cancel safe, so a consumer
//! can select on its own signals between steps.

use std::time::Duration;

use etcd_client::{WatchOptions, WatchResponse, WatchStream};
use tokio::time::{Instant, Interval};

use super::backoff::{Backoff, BackoffPolicy};
use super::client::Registry;
use super::error::Error;

/// How often an idle watch is asked to prove it is alive.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// How long a progress request may go unanswered before the watch counts as dead.
pub const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);
/// How a broken watch (or a failed listing) is retried: from 50ms doubling
/// to 5s, and from 50ms again after an attempt that ran for 30s.
pub const WATCH_BACKOFF: BackoffPolicy = BackoffPolicy {
    min: Duration::from_millis(50),
    max: Duration::from_secs(5),
    healthy: Duration::from_secs(30),
};

/// History a watch needed was compacted away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// The revision the watch asked for.
    pub requested: i64,
    /// The registry's compaction revision.
    pub compacted: i64,
}

impl From<Compaction> for Error {
    fn from(compaction: Compaction) -> Self {
        Error::Compacted {
            requested: compaction.requested,
            compacted: compaction.compacted,
        }
    }
}

/// What one step of a [`PrefixWatch`] found.
#[derive(Debug)]
pub enum WatchStep {
    /// List the prefix, then call [`PrefixWatch::listed`] with the
    /// listing's revision (or [`PrefixWatch::back_off`] if it failed).
    List,
    /// One watch response, its events in revision order; `revision` is the
    /// revision the watch has delivered everything up to.
    Changes {
        /// The response (events with their previous values if asked for).
        response: WatchResponse,
        /// Everything up to this revision has been delivered.
        revision: i64,
    },
    /// History was lost: the next step is [`WatchStep::List`].
    Compacted(Compaction),
    /// The watch broke; it is opened again from where it was after `delay`.
    Interrupted {
        /// Why it broke.
        error: Error,
        /// How long the next step waits.
        delay: Duration,
    },
}

/// Where the watch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The consumer must list the prefix.
    Listing,
    /// Watch from the resume point on.
    Watching,
}

/// An open watch stream and what tells whether it is still alive.
struct Open {
    stream: WatchStream,
    progress: Interval,
    last_heard: Instant,
}

/// A resumable watch of one prefix; see the module docs.
pub struct PrefixWatch {
    registry: Registry,
    prefix: String,
    prev_kv: bool,
    phase: Phase,
    /// The revision the watch (re)opens at; 0 means "from now".
    next: i64,
    open: Option<Open>,
    backoff: Backoff,
    /// When the current attempt (a listing or a watch) started.
    attempt_started: Instant,
    /// The next step waits until then.
    resume_at: Option<Instant>,
    /// A step was handed to the consumer since the last `next` began.
    stepped: bool,
}

impl std::fmt::Debug for PrefixWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixWatch")
            .field("prefix", &self.prefix)
            .field("phase", &self.phase)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl PrefixWatch {
    /// A watch of `prefix` whose first step asks for a listing.
    pub fn listing(registry: Registry, prefix: String) -> Self {
        Self::new(registry, prefix, Phase::Listing, 0)
    }

    /// A watch of `prefix` from revision `from` on (0: from now).
    pub fn from_revision(registry: Registry, prefix: String, from: i64) -> Self {
        Self::new(registry, prefix, Phase::Watching, from)
    }

    fn new(registry: Registry, prefix: String, phase: Phase, next: i64) -> Self {
        Self {
            registry,
            prefix,
            prev_kv: false,
            phase,
            next,
            open: None,
            backoff: WATCH_BACKOFF.start(),
            attempt_started: Instant::now(),
            resume_at: None,
            stepped: false,
        }
    }

    /// Asks for each event's previous value as well.
    #[must_use]
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// Whether the watch follows the prefix from a listing or revision (as
    /// opposed to waiting for a listing).
    pub fn is_watching(&self) -> bool {
        self.phase == Phase::Watching
    }

    /// Records a listing of the prefix at `revision`: watch after it.
    pub fn listed(&mut self, revision: i64) {
        self.phase = Phase::Watching;
        self.next = revision + 1;
        self.open = None;
    }

    /// Delays the next step under the backoff policy (after a listing that
    /// failed, or whatever the consumer counts as a failure); returns the delay.
    pub fn back_off(&mut self) -> Duration {
        self.open = None;
        let delay = self.backoff.next_delay(self.attempt_started.elapsed());
        self.resume_at = Some(Instant::now() + delay);
        delay
    }

    /// Closes the stream, if open; the next step opens it again from where
    /// it was (for a consumer that cannot take more events for now).
    pub fn pause(&mut self) {
        self.open = None;
    }

    /// Opens the watch now if it is not open, so that an error is the
    /// caller's; [`next`](Self::next) does it otherwise.
    pub async fn open(&mut self) -> Result<(), Error> {
        if self.open.is_none() {
            let mut options = WatchOptions::new().with_prefix().with_progress_notify();
            if self.next > 0 {
                options = options.with_start_revision(self.next);
            }
            if self.prev_kv {
                options = options.with_prev_key();
            }
            let mut client = self.registry.watch_client();
            let stream = self
                .registry
                .call("watch", client.watch(self.prefix.as_str(), Some(options)))
                .await?;
            self.attempt_started = Instant::now();
            self.open = Some(Open {
                stream,
                progress: tokio::time::interval_at(
                    Instant::now() + PROGRESS_INTERVAL,
                    PROGRESS_INTERVAL,
                ),
                last_heard: Instant::now(),
            });
        }
        Ok(())
    }

    /// The next step; cancel safe.
    pub async fn next(&mut self) -> WatchStep {
        // Silence counts only while a consumer waits: the time it spent with
        // the last step (a lagging subscriber) leaves responses queued on the
        // stream, which says nothing about whether etcd answers.
        if std::mem::take(&mut self.stepped)
            && let Some(open) = self.open.as_mut()
        {
            open.last_heard = Instant::now();
        }
        let step = self.step().await;
        self.stepped = true;
        step
    }

    async fn step(&mut self) -> WatchStep {
        loop {
            if let Some(at) = self.resume_at {
                tokio::time::sleep_until(at).await;
                self.resume_at = None;
            }
            if self.phase == Phase::Listing {
                self.attempt_started = Instant::now();
                return WatchStep::List;
            }
            if let Some(step) = self.watch().await {
                return step;
            }
        }
    }

    /// Reads one response (or runs one progress check); `None` when there
    /// is nothing to yield.
    async fn watch(&mut self) -> Option<WatchStep> {
        if let Err(error) = self.open().await {
            return Some(self.interrupt(error));
        }
        let open = self.open.as_mut().expect("invariant: opened just above");
        // Both branches are cancel safe; the stream keeps what it has read.
        let message = tokio::select! {
            // A response waiting on the stream is heard before any check.
            biased;
            message = open.stream.message() => message,
            _ = open.progress.tick() => {
                if open.last_heard.elapsed() > PROGRESS_TIMEOUT {
                    let error = self.registry.unavailable("watch", "no answer to progress requests");
                    return Some(self.interrupt(error));
                }
                // A dead stream would not answer; an answer updates `last_heard`.
                let _ = open.stream.request_progress().await;
                return None;
            }
        };
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => {
                let error = self.registry.unavailable("watch", "the watch stream ended");
                return Some(self.interrupt(error));
            }
            Err(error) => {
                let error = self.registry.error("watch", error);
                return Some(self.interrupt(error));
            }
        };
        open.last_heard = Instant::now();
        if response.compact_revision() > 0 {
            let compaction = Compaction {
                requested: self.next,
                compacted: response.compact_revision(),
            };
            self.open = None;
            self.phase = Phase::Listing;
            return Some(WatchStep::Compacted(compaction));
        }
        if response.canceled() {
            let error = Error::Request {
                op: "watch",
                message: format!("watch canceled: {}", response.cancel_reason()),
            };
            return Some(self.interrupt(error));
        }
        for event in response.events() {
            if let Some(kv) = event.kv() {
                self.next = self.next.max(kv.mod_revision() + 1);
            }
        }
        let periodic = is_periodic_progress(&response);
        // A creation response or a requested progress notification only
        // proves the stream alive: there is nothing to yield.
        if response.events().is_empty() && !periodic {
            return None;
        }
        let header_revision = match periodic {
            true => response.header().map_or(0, |h| h.revision()),
            false => 0,
        };
        let revision = header_revision.max(self.next - 1);
        Some(WatchStep::Changes { response, revision })
    }

    fn interrupt(&mut self, error: Error) -> WatchStep {
        let delay = self.back_off();
        WatchStep::Interrupted { error, delay }
    }
}

/// Whether `response` is a periodic progress notification: the only one
/// whose header revision says how far the watch has delivered.
///
/// What the watch has delivered is known from its events. A response's
/// header revision says more only in a periodic progress notification,
/// which etcd sends to a watch that has caught up. Elsewhere it is the
/// store's revision when the response was made, ahead of events still to
/// come: on the response that confirms a watch's creation, and on each
/// batch of a watch catching up from an older revision (etcd sends at most
/// 1,000 revisions a batch). A requested progress notification (watch id
/// -1) is not trusted either: before etcd 3.4.25 and 3.5.8
/// (etcd-io/etcd#15697) it is not ordered with the events on their way
/// (etcd-io/etcd#15220). It proves the stream alive, nothing more.
fn is_periodic_progress(response: &WatchResponse) -> bool {
    response.events().is_empty() && !response.created() && response.watch_id() != -1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{LocalRegistry, RegistryConfig, Visor};

    /// Bounds every test: etcd start, writes and the watch's own retries.
    const LIMIT: Duration = Duration::from_secs(60);

    /// A fresh etcd, a registry on it and a prefix to watch.
    async fn start() -> (LocalRegistry, Registry, String) {
        let etcd = LocalRegistry::start().await.expect("etcd");
        let registry = Visor::connect(&RegistryConfig::new([etcd.endpoint()]))
            .await
            .expect("connect")
            .registry()
            .clone();
        let prefix = format!("{}test/", registry.keys().all());
        (etcd, registry, prefix)
    }

    /// Runs `test` within [`LIMIT`].
    async fn bounded(test: impl Future<Output = ()>) {
        tokio::time::timeout(LIMIT, test)
            .await
            .expect("etcd, a write or the watch hangs");
    }

    async fn put(registry: &Registry, key: &str) -> i64 {
        let mut kv = registry.kv_client();
        registry
            .call("put", kv.put(key, "x", None))
            .await
            .expect("put")
            .header()
            .expect("a header")
            .revision()
    }

    /// The keys of the events in the next step that has any; interruptions
    /// are skipped (the watch resumes by itself).
    async fn next_keys(watch: &mut PrefixWatch) -> Vec<String> {
        loop {
            match watch.next().await {
                WatchStep::Changes { response, .. } if !response.events().is_empty() => {
                    return response
                        .events()
                        .iter()
                        .filter_map(|e| e.kv())
                        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                        .collect();
                }
                WatchStep::Changes { .. } | WatchStep::Interrupted { .. } => {}
                other => panic!("expected changes, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_broken_watch_resumes_after_the_last_event_it_yielded() {
        bounded(async {
            let (mut etcd, registry, prefix) = start().await;
            let first = put(&registry, &format!("{prefix}a")).await;
            let mut watch = PrefixWatch::from_revision(registry.clone(), prefix.clone(), first);
            assert_eq!(next_keys(&mut watch).await, [format!("{prefix}a")]);
            etcd.restart().await.expect("etcd restarts on its data");
            put(&registry, &format!("{prefix}b")).await;
            assert_eq!(
                next_keys(&mut watch).await,
                [format!("{prefix}b")],
                "resumed past `a`, not from the start"
            );
        })
        .await;
    }

    /// etcd sends a catching-up watch at most 1,000 revisions a batch, each
    /// batch's header carrying the store's revision: no step may claim more
    /// than the events it has delivered.
    #[tokio::test]
    async fn no_step_claims_a_revision_before_its_events_arrive() {
        bounded(async {
            let (_etcd, registry, prefix) = start().await;
            let from = put(&registry, &format!("{prefix}first")).await;
            let mut last = from;
            for i in 0..1_500 {
                last = put(&registry, &format!("{prefix}{i}")).await;
            }
            let mut watch = PrefixWatch::from_revision(registry, prefix, from);
            let mut delivered = from - 1;
            while delivered < last {
                match watch.next().await {
                    WatchStep::Changes { response, revision } => {
                        for kv in response.events().iter().filter_map(|e| e.kv()) {
                            delivered = delivered.max(kv.mod_revision());
                        }
                        assert!(
                            revision <= delivered,
                            "claims {revision} with events up to {delivered} delivered"
                        );
                    }
                    WatchStep::Interrupted { .. } => {}
                    other => panic!("expected changes, got {other:?}"),
                }
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_consumer_away_longer_than_the_progress_timeout_finds_the_watch_alive() {
        bounded(async {
            let (_etcd, registry, prefix) = start().await;
            let from = put(&registry, &format!("{prefix}a")).await;
            let mut watch = PrefixWatch::from_revision(registry, prefix, from);
            assert_eq!(next_keys(&mut watch).await.len(), 1);
            // The consumer is busy with its step: the time under test, not a
            // wait for anything.
            tokio::time::sleep(PROGRESS_TIMEOUT + Duration::from_secs(1)).await;
            let after = tokio::time::timeout(Duration::from_secs(1), watch.next()).await;
            assert!(
                !matches!(after, Ok(WatchStep::Interrupted { .. })),
                "a live watch judged dead for its consumer's absence: {after:?}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn compaction_is_reported_once_then_a_listing_resumes_the_watch() {
        bounded(async {
            let (_etcd, registry, prefix) = start().await;
            let stale = put(&registry, &format!("{prefix}old")).await;
            let now = put(&registry, &format!("{prefix}new")).await;
            registry.etcd().compact(now, None).await.expect("compact");
            let mut watch = PrefixWatch::from_revision(registry.clone(), prefix.clone(), stale);
            match watch.next().await {
                WatchStep::Compacted(compaction) => assert_eq!(
                    compaction,
                    Compaction {
                        requested: stale,
                        compacted: now
                    }
                ),
                other => panic!("expected a compaction, got {other:?}"),
            }
            assert!(!watch.is_watching());
            assert!(matches!(watch.next().await, WatchStep::List));
            assert!(
                matches!(watch.next().await, WatchStep::List),
                "asks again until told of a listing"
            );
            watch.listed(now);
            put(&registry, &format!("{prefix}later")).await;
            assert_eq!(next_keys(&mut watch).await, [format!("{prefix}later")]);
        })
        .await;
    }
}
