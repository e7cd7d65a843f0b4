//! The bookkeeping behind [`WorkQueue`](super::WorkQueue): which keys wait,
//! which are being processed, which are due later. Synchronous and clock-free
//! (the caller holds the lock and passes `now`), so every rule is testable alone.
//!
//! Invariants, as in client-go's `workqueue.Type`:
//! - a waiting key is queued once: `ready` holds each key at most once, and
//!   exactly the dirty keys that are not being processed;
//! - a key is never handed out twice at once: a key added while processing is
//!   only marked dirty, and goes back to `ready` when it is done;
//! - a key has at most one timer, the earliest asked for.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// What [`State::add`] did with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Added {
    /// Queued for the next `pop`.
    Queued,
    /// Marked dirty while being processed: queued again when it is done.
    Deferred,
    /// Already waiting; nothing changed.
    Duplicate,
    /// The queue is shutting down and takes no new keys.
    Refused,
}

impl Added {
    /// Whether the key is newly waiting (what `workqueue_adds_total` counts).
    pub(super) fn is_new(self) -> bool {
        matches!(self, Self::Queued | Self::Deferred)
    }
}

/// What [`State::promote`] moved from the timers into the queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Promoted {
    /// Keys newly waiting (queued or deferred).
    pub(super) added: usize,
    /// Keys put in `ready`, each needing a getter woken.
    pub(super) queued: usize,
}

/// A key that was done: how long it was processed and whether it is queued again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Done {
    pub(super) worked: Duration,
    pub(super) requeued: bool,
}

/// Timers are ordered by deadline, then by arrival, so `K` needs no `Ord`.
type TimerId = (Instant, u64);

#[derive(Debug)]
pub(super) struct State<K> {
    /// Keys to hand out, in order.
    ready: VecDeque<K>,
    /// Keys that need processing, with the time each started waiting.
    dirty: HashMap<K, Instant>,
    /// Keys handed out and not yet done, with the time each was handed out.
    processing: HashMap<K, Instant>,
    timers: BTreeMap<TimerId, K>,
    /// The timer of each key in `timers`.
    timer_of: HashMap<K, TimerId>,
    next_timer: u64,
    shutting_down: bool,
}

impl<K> Default for State<K> {
    fn default() -> Self {
        Self {
            ready: VecDeque::new(),
            dirty: HashMap::new(),
            processing: HashMap::new(),
            timers: BTreeMap::new(),
            timer_of: HashMap::new(),
            next_timer: 0,
            shutting_down: false,
        }
    }
}

impl<K: Clone + Eq + Hash> State<K> {
    /// Marks `key` as needing processing since `since`.
    pub(super) fn add(&mut self, key: K, since: Instant) -> Added {
        if self.shutting_down {
            return Added::Refused;
        }
        if self.dirty.contains_key(&key) {
            return Added::Duplicate;
        }
        self.dirty.insert(key.clone(), since);
        if self.processing.contains_key(&key) {
            return Added::Deferred;
        }
        self.ready.push_back(key);
        Added::Queued
    }

    /// Arranges for `key` to be added at `at`, unless it is already due
    /// earlier. Returns whether `at` became the earliest deadline (so sleeping
    /// getters must look again).
    pub(super) fn add_at(&mut self, key: K, at: Instant) -> bool {
        if self.shutting_down {
            return false;
        }
        if let Some(&(due, seq)) = self.timer_of.get(&key) {
            if due <= at {
                return false;
            }
            self.timers.remove(&(due, seq));
        }
        let id = (at, self.next_timer);
        self.next_timer += 1;
        self.timers.insert(id, key.clone());
        self.timer_of.insert(key, id);
        self.timers.keys().next() == Some(&id)
    }

    /// Adds every key whose timer is due by `now`, as waiting since its deadline.
    pub(super) fn promote(&mut self, now: Instant) -> Promoted {
        let mut promoted = Promoted::default();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((due, _), key) = entry.remove_entry();
            self.timer_of.remove(&key);
            let added = self.add(key, due);
            promoted.added += usize::from(added.is_new());
            promoted.queued += usize::from(added == Added::Queued);
        }
        promoted
    }

    /// Hands out the next key, returning how long it waited.
    pub(super) fn pop(&mut self, now: Instant) -> Option<(K, Duration)> {
        let key = self.ready.pop_front()?;
        // Every ready key is dirty (see the module invariants).
        let since = self.dirty.remove(&key).unwrap_or(now);
        self.processing.insert(key.clone(), now);
        Some((key, now.saturating_duration_since(since)))
    }

    /// Ends the processing of `key`, queueing it again if it was added
    /// meanwhile. `None` if `key` was not being processed.
    pub(super) fn done(&mut self, key: &K, now: Instant) -> Option<Done> {
        let started = self.processing.remove(key)?;
        let requeued = self.dirty.contains_key(key);
        if requeued {
            self.ready.push_back(key.clone());
        }
        Some(Done {
            worked: now.saturating_duration_since(started),
            requeued,
        })
    }

    /// The earliest timer's deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.timers.keys().next().map(|&(due, _)| due)
    }

    /// Refuses new keys and drops the timers; queued keys stay to be drained.
    pub(super) fn shut_down(&mut self) {
        self.shutting_down = true;
        self.timers.clear();
        self.timer_of.clear();
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Keys ready to be handed out.
    pub(super) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Keys waiting to be processed at `now`: dirty ones, and those whose
    /// timer is due but not yet promoted (promotion is lazy).
    pub(super) fn depth(&self, now: Instant) -> usize {
        let due = self
            .timers
            .range(..=(now, u64::MAX))
            .filter(|(_, key)| !self.dirty.contains_key(*key))
            .count();
        self.dirty.len() + due
    }

    /// The summed and the longest processing time so far of keys in progress.
    pub(super) fn in_progress(&self, now: Instant) -> (Duration, Duration) {
        self.processing
            .values()
            .map(|&started| now.saturating_duration_since(started))
            .fold((Duration::ZERO, Duration::ZERO), |(sum, longest), d| {
                (sum + d, longest.max(d))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn waiting_key_is_queued_once() {
        let t = Instant::now();
        let mut state = State::default();
        assert_eq!(state.add("a", t), Added::Queued);
        assert_eq!(state.add("a", t), Added::Duplicate);
        assert_eq!(state.add("b", t), Added::Queued);
        assert_eq!(state.ready_len(), 2);
        assert_eq!(state.pop(t + SEC), Some(("a", SEC)));
        assert_eq!(state.pop(t).map(|(k, _)| k), Some("b"));
        assert_eq!(state.pop(t), None);
    }

    #[test]
    fn key_added_while_processing_is_deferred_until_done() {
        let t = Instant::now();
        let mut state = State::default();
        state.add("a", t);
        state.pop(t);
        assert_eq!(state.add("a", t), Added::Deferred);
        assert_eq!(state.add("a", t), Added::Duplicate);
        assert_eq!(state.pop(t), None, "never handed out while processing");
        assert_eq!(state.depth(t), 1);
        let done = state.done(&"a", t + SEC);
        assert_eq!(
            done,
            Some(Done {
                worked: SEC,
                requeued: true
            })
        );
        assert_eq!(state.pop(t).map(|(k, _)| k), Some("a"));
        assert_eq!(state.done(&"a", t).map(|d| d.requeued), Some(false));
        assert_eq!(state.done(&"a", t), None, "done twice is a no-op");
    }

    #[test]
    fn timers_keep_the_earliest_deadline_and_promote_in_order() {
        let t = Instant::now();
        let mut state = State::default();
        assert!(state.add_at("a", t + 5 * SEC));
        assert!(!state.add_at("a", t + 9 * SEC), "later deadline ignored");
        assert!(state.add_at("b", t + 2 * SEC));
        assert!(state.add_at("a", t + SEC), "earlier deadline replaces");
        assert_eq!(state.next_deadline(), Some(t + SEC));
        assert_eq!(state.depth(t), 0);
        assert_eq!(state.depth(t + 2 * SEC), 2, "due timers count as depth");
        assert_eq!(
            state.promote(t + 3 * SEC),
            Promoted {
                added: 2,
                queued: 2
            }
        );
        let (first, waited) = state.pop(t + 3 * SEC).expect("a is due");
        assert_eq!((first, waited), ("a", 2 * SEC), "waited since its deadline");
        assert_eq!(state.pop(t).map(|(k, _)| k), Some("b"));
        assert_eq!(state.next_deadline(), None);
    }

    #[test]
    fn shut_down_refuses_adds_drops_timers_keeps_ready() {
        let t = Instant::now();
        let mut state = State::default();
        state.add("a", t);
        state.add_at("b", t + SEC);
        state.shut_down();
        assert_eq!(state.add("c", t), Added::Refused);
        assert!(!state.add_at("d", t));
        assert_eq!(state.promote(t + SEC), Promoted::default());
        assert_eq!(state.pop(t).map(|(k, _)| k), Some("a"));
        assert_eq!(state.pop(t), None);
    }

    #[test]
    fn in_progress_sums_and_finds_longest() {
        let t = Instant::now();
        let mut state = State::default();
        state.add("a", t);
        state.add("b", t);
        state.pop(t);
        state.pop(t + SEC);
        assert_eq!(state.in_progress(t + 3 * SEC), (5 * SEC, 3 * SEC));
    }
}
