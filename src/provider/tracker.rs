//! The caller's tracker: the requests awaiting a response on its hook.
//!
//! Invariants: a request id is tracked at most once at a time (a second
//! `track` of the same id is refused); every tracked request ends, with the
//! response delivered for it or, at its deadline, a timeout response (acomm's
//! tracker parsed timeouts, the framework enforces them); a request stops
//! being tracked when its [`Pending`] ends or is dropped, so a late response
//! finds nobody and is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use super::wire::{RequestId, Response};

/// The requests awaiting a response.
#[derive(Debug, Default)]
pub struct Tracker {
    pending: Mutex<HashMap<RequestId, oneshot::Sender<Response>>>,
}

/// A request id already tracked.
#[derive(Debug, thiserror::Error)]
#[error("request id {0} is already tracked")]
pub struct DuplicateId(pub RequestId);

/// How a tracked request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its response arrived.
    Responded,
    /// Its deadline passed first; the response is the tracker's.
    TimedOut,
}

impl Tracker {
    /// An empty tracker.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Starts awaiting `id`'s response.
    pub fn track(self: &Arc<Self>, id: RequestId) -> Result<Pending, DuplicateId> {
        let (sender, receiver) = oneshot::channel();
        let mut pending = self.lock();
        if pending.contains_key(&id) {
            return Err(DuplicateId(id));
        }
        pending.insert(id.clone(), sender);
        Ok(Pending {
            id,
            receiver,
            tracker: Arc::clone(self),
        })
    }

    /// Hands `response` to the request awaiting it; false when none is (it
    /// ended already, or was never tracked).
    pub fn deliver(&self, response: Response) -> bool {
        let Some(sender) = self.lock().remove(&response.id) else {
            return false;
        };
        // A receiver gone between the removal and here has ended on its own.
        sender.send(response).is_ok()
    }

    /// How many requests await their response.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no request awaits its response.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RequestId, oneshot::Sender<Response>>> {
        // The map is never left half-updated (each critical section is one
        // insert or remove), so a panic elsewhere while holding it is harmless.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A tracked request awaiting its response; untracked when dropped.
#[derive(Debug)]
pub struct Pending {
    id: RequestId,
    receiver: oneshot::Receiver<Response>,
    tracker: Arc<Tracker>,
}

impl Pending {
    /// The request's id.
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// The response, or a timeout response once `timeout` has passed.
    pub async fn wait(mut self, timeout: Duration) -> (Response, Ending) {
        match tokio::time::timeout(timeout, &mut self.receiver).await {
            Ok(Ok(response)) => (response, Ending::Responded),
            // The sender only goes away with a delivery (handled above) or
            // with this request's own entry, which only `self` removes.
            Ok(Err(_)) | Err(_) => (
                Response::failure(
                    self.id.clone(),
                    format!("no response within {}", humantime::format_duration(timeout)),
                ),
                Ending::TimedOut,
            ),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.tracker.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test(start_paused = true)]
    async fn a_delivered_response_ends_its_request() {
        let tracker = Tracker::new();
        let pending = tracker.track("a".into()).expect("track");
        assert_eq!(tracker.len(), 1);
        assert!(tracker.deliver(Response::success("a".into(), json!(1))));
        let (response, ending) = pending.wait(Duration::from_secs(1)).await;
        assert_eq!(ending, Ending::Responded);
        assert_eq!(response.result, json!(1));
        assert!(tracker.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_without_response_ends_with_a_timeout_response_at_its_deadline() {
        let tracker = Tracker::new();
        let pending = tracker.track("a".into()).expect("track");
        let started = tokio::time::Instant::now();
        let (response, ending) = pending.wait(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(ending, Ending::TimedOut);
        assert_eq!(response.id, RequestId::from("a"));
        assert_eq!(response.error.as_deref(), Some("no response within 5s"));
        assert!(tracker.is_empty());
        assert!(
            !tracker.deliver(Response::success("a".into(), json!(1))),
            "a late response finds nobody"
        );
    }

    #[tokio::test]
    async fn ids_are_tracked_once_and_a_dropped_request_is_untracked() {
        let tracker = Tracker::new();
        let pending = tracker.track("a".into()).expect("track");
        assert!(
            tracker.track("a".into()).is_err(),
            "a duplicate id is refused"
        );
        drop(pending);
        assert!(tracker.is_empty());
        assert!(!tracker.deliver(Response::success("a".into(), json!(1))));
        let _again = tracker
            .track("a".into())
            .expect("an ended id can be tracked again");
    }

    #[test]
    fn unknown_ids_are_not_delivered() {
        let tracker = Tracker::new();
        let _pending = tracker.track("a".into()).expect("track");
        assert!(!tracker.deliver(Response::success("b".into(), json!(1))));
        assert_eq!(tracker.len(), 1);
    }
}
