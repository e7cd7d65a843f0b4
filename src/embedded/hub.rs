//! Who gets a published batch: each watch stream's subscription, with the
//! key ranges its watches cover.
//!
//! The writer hands a batch only to the streams with a watch on one of its
//! keys, as etcd's watchable store notifies only the matching watchers, so a
//! put wakes the stream that wants it and no other. A stream whose queue is
//! full is marked lagged and woken; it catches up from history.
//!
//! Invariant: the writer publishes, and a stream changes its ranges and reads
//! the visible revision, under the node's lock; so a batch after the
//! revision a stream read reaches it if one of its ranges (as of that read)
//! wants it, and every batch up to that revision that it wanted is in its
//! queue already, or it is marked lagged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, mpsc};

use super::mvcc::KeyRange;
use super::node::Published;

/// How many batches a stream may have waiting before it is marked lagged.
const QUEUE: usize = 4096;

/// The streams subscribed.
#[derive(Debug, Default)]
pub struct Hub {
    subscribers: Mutex<BTreeMap<u64, Arc<Subscriber>>>,
    next_id: AtomicU64,
}

/// One stream's side, as the writer sees it.
#[derive(Debug)]
struct Subscriber {
    /// `(key, range_end)` of each of its watches.
    ranges: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
    queue: mpsc::Sender<Arc<Published>>,
    lagged: AtomicBool,
    wake: Notify,
}

impl Subscriber {
    fn wants(&self, batch: &Published) -> bool {
        let ranges = self.ranges.lock().unwrap_or_else(PoisonError::into_inner);
        batch
            .changes
            .iter()
            .flat_map(|changes| &changes.events)
            .any(|event| {
                let key = event.kv.as_ref().map_or(&[][..], |kv| kv.key.as_slice());
                ranges
                    .iter()
                    .any(|(start, end)| KeyRange::new(start, end).contains(key))
            })
    }
}

impl Hub {
    /// A new subscription, with no ranges yet, and the queue of the
    /// batches it will be handed.
    pub fn subscribe(self: &Arc<Self>) -> (Subscription, mpsc::Receiver<Arc<Published>>) {
        let (queue, batches) = mpsc::channel(QUEUE);
        let subscriber = Arc::new(Subscriber {
            ranges: Mutex::new(Vec::new()),
            queue,
            lagged: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&subscriber));
        let subscription = Subscription {
            id,
            subscriber,
            hub: Arc::clone(self),
        };
        (subscription, batches)
    }

    /// Hands `batch` to every stream that wants it (under the node's lock).
    pub fn publish(&self, batch: &Arc<Published>) {
        let subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for subscriber in subscribers.values() {
            if !subscriber.wants(batch) {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) =
                subscriber.queue.try_send(Arc::clone(batch))
            {
                subscriber.lagged.store(true, Ordering::Release);
                subscriber.wake.notify_one();
            }
        }
    }
}

/// A stream's subscription: its ranges and its lag mark (its queue is
/// handed out beside it).
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    subscriber: Arc<Subscriber>,
    hub: Arc<Hub>,
}

impl Subscription {
    /// Sets the ranges its watches cover (under the node's lock).
    pub fn set_ranges(&self, ranges: Vec<(Vec<u8>, Vec<u8>)>) {
        *self
            .subscriber
            .ranges
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = ranges;
    }

    /// Whether it was marked lagged since last asked; clears the mark.
    pub fn take_lagged(&self) -> bool {
        self.subscriber.lagged.swap(false, Ordering::AcqRel)
    }

    /// Resolves once it is marked lagged.
    pub async fn lagged(&self) {
        self.subscriber.wake.notified().await;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use etcd_client::proto::{PbEvent, PbKeyValue};

    use super::*;
    use crate::embedded::mvcc::Changes;

    fn batch(key: &str, revision: i64) -> Arc<Published> {
        let event = PbEvent {
            kv: Some(PbKeyValue {
                key: key.into(),
                mod_revision: revision,
                ..PbKeyValue::default()
            }),
            ..PbEvent::default()
        };
        Arc::new(Published {
            changes: vec![Changes {
                revision,
                events: vec![event],
                records: Vec::new(),
            }],
            revision,
        })
    }

    #[test]
    fn a_stream_is_handed_only_what_its_watches_want_and_marked_when_it_falls_behind() {
        let hub = Arc::new(Hub::default());
        let (prefix, mut prefix_batches) = hub.subscribe();
        let (single, mut single_batches) = hub.subscribe();
        prefix.set_ranges(vec![(b"a/".to_vec(), b"a0".to_vec())]);
        single.set_ranges(vec![(b"b".to_vec(), Vec::new())]);
        hub.publish(&batch("a/1", 2));
        hub.publish(&batch("b", 3));
        hub.publish(&batch("c", 4));
        assert_eq!(prefix_batches.try_recv().map(|b| b.revision).ok(), Some(2));
        assert!(prefix_batches.try_recv().is_err(), "b and c are not its");
        assert_eq!(single_batches.try_recv().map(|b| b.revision).ok(), Some(3));
        assert!(single_batches.try_recv().is_err());

        for revision in 0..=QUEUE as i64 {
            hub.publish(&batch("b", 10 + revision));
        }
        assert!(single.take_lagged(), "one batch more than its queue holds");
        assert!(!single.take_lagged(), "the mark is taken once");
        assert!(!prefix.take_lagged());
        drop(single);
        hub.publish(&batch("b", 99_999));
        assert_eq!(
            hub.subscribers.lock().expect("lock").len(),
            1,
            "dropped, unsubscribed"
        );
    }
}
