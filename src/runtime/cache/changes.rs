//! Who hears a cache's changes: any number of subscribers, each on its own
//! unbounded channel, so every reconcile loop maps the changes it watches
//! itself rather than one switchboard mapping them for all.
//!
//! Invariant: a subscriber hears every change made after it subscribed, in
//! order; one that went away is dropped at the next change, never waited on.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use super::Change;

/// The subscribers of one cache; clones share them.
#[derive(Debug, Clone, Default)]
pub(super) struct Subscribers(Arc<Mutex<Vec<mpsc::UnboundedSender<Change>>>>);

impl Subscribers {
    /// A new subscriber: it hears every change from now on.
    pub(super) fn subscribe(&self) -> mpsc::UnboundedReceiver<Change> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().push(sender);
        receiver
    }

    /// Tells every subscriber still listening.
    pub(super) fn send(&self, change: &Change) {
        self.lock()
            .retain(|subscriber| subscriber.send(change.clone()).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<Change>>> {
        // Sending or pushing cannot leave the list half-changed.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
