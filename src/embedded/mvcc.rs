//! The embedded registry's multi-version key index, as etcd defines it.
//!
//! Every write transaction that changes something gets the next main
//! revision; each change within it gets a sub revision (0, 1, …). A key
//! keeps every version written since the last compaction: a put is a record
//! holding the whole key-value (create and mod revision, version, lease), a
//! delete is a tombstone. A read at revision `r` sees, for each key, the
//! newest record at or before `r`. Compaction at `r` drops every record
//! superseded at `r` (and a tombstone that is the newest), so reads at `r`
//! and later are unchanged and reads before `r` are refused.
//!
//! Pure and single-threaded: the server holds it behind its single writer,
//! and the durable log (`log.rs`) stores the same records by revision, so
//! rebuilding the index at startup is replaying them.

use std::collections::BTreeMap;
use std::ops::Bound;

use etcd_client::proto::{PbEvent, PbKeyValue};

/// A key's bytes.
pub type Key = Vec<u8>;

/// A record's place in history: the transaction's main revision and the
/// change's order within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// The transaction's revision, the one clients see.
    pub main: i64,
    /// The change's position in its transaction.
    pub sub: i64,
}

/// One version of a key: what was put, or a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where in history it was written.
    pub revision: Revision,
    /// The key-value as put; `None` for a deletion.
    pub kv: Option<PbKeyValue>,
}

/// What one committed transaction changed, in order: for the durable log and
/// the watchers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The transaction's revision (unchanged from the store's before it when
    /// nothing changed).
    pub revision: i64,
    /// Each change with its key, as `(revision, key, record)`; the events
    /// carry the previous version.
    pub events: Vec<PbEvent>,
    /// The records written, in sub-revision order.
    pub records: Vec<(Key, Record)>,
}

/// Why a read or a compaction at a revision is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RevisionError {
    /// The revision's history was compacted away.
    #[error("mvcc: required revision has been compacted")]
    Compacted {
        /// The revision compacted at.
        compacted: i64,
    },
    /// The revision is ahead of the store.
    #[error("mvcc: required revision is a future revision")]
    Future,
}

/// A key range as etcd's requests name it: `end` empty is the single key
/// `start`, `end == [0]` is every key from `start` on, otherwise
/// `[start, end)`.
#[derive(Debug, Clone, Copy)]
pub struct KeyRange<'a> {
    /// The first key.
    pub start: &'a [u8],
    /// The end, as the request gave it.
    pub end: &'a [u8],
}

impl<'a> KeyRange<'a> {
    /// The range `start`..`end` as a request gives it.
    pub fn new(start: &'a [u8], end: &'a [u8]) -> Self {
        Self { start, end }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self.end {
            [] => key == self.start,
            [0] => key >= self.start,
            end => key >= self.start && key < end,
        }
    }

    /// The bounds of a B-tree range over keys, or `None` for an empty range.
    fn bounds(&self) -> Option<KeyBounds<'a>> {
        match self.end {
            [] => Some((Bound::Included(self.start), Bound::Included(self.start))),
            [0] => Some((Bound::Included(self.start), Bound::Unbounded)),
            end if end > self.start => Some((Bound::Included(self.start), Bound::Excluded(end))),
            _ => None,
        }
    }
}

/// The bounds of a B-tree range over keys.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The index: every key's versions since the last compaction.
#[derive(Debug, Default, Clone)]
pub struct Store {
    keys: BTreeMap<Key, Vec<Record>>,
    /// Every record's key by revision, for history in revision order.
    by_revision: BTreeMap<Revision, Key>,
    revision: i64,
    compacted: i64,
}

impl Store {
    /// An empty store at revision 1, as a new etcd is.
    pub fn new() -> Self {
        Self {
            revision: 1,
            ..Self::default()
        }
    }

    /// The revision of the last committed change.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The revision the store was last compacted at (0: never).
    pub fn compacted(&self) -> i64 {
        self.compacted
    }

    /// Checks that `revision` (0: the current one) can be read, and returns
    /// the one to read at.
    pub fn readable(&self, revision: i64) -> Result<i64, RevisionError> {
        match revision {
            r if r <= 0 => Ok(self.revision),
            r if r > self.revision => Err(RevisionError::Future),
            r if r < self.compacted => Err(RevisionError::Compacted {
                compacted: self.compacted,
            }),
            r => Ok(r),
        }
    }

    /// The live key-values in `range` at `revision` (already checked with
    /// [`readable`](Self::readable)), in key order.
    pub fn range(&self, range: KeyRange<'_>, revision: i64) -> impl Iterator<Item = &PbKeyValue> {
        range
            .bounds()
            .into_iter()
            .flat_map(|bounds| self.keys.range::<[u8], _>(bounds))
            .filter_map(move |(_, records)| live_at(records, revision))
    }

    /// The live key-value of `key` now.
    pub fn get(&self, key: &[u8]) -> Option<&PbKeyValue> {
        self.keys
            .get(key)
            .and_then(|records| live_at(records, self.revision))
    }

    /// Starts a write transaction on the current revision.
    pub fn write(&mut self) -> Write<'_> {
        Write {
            revision: self.revision + 1,
            store: self,
            changes: Changes::default(),
        }
    }

    /// The events in `range` at revisions `from` and later, in revision
    /// order, with their previous versions where history still holds them.
    pub fn history(&self, range: KeyRange<'_>, from: i64) -> Result<Vec<PbEvent>, RevisionError> {
        if from < self.compacted {
            return Err(RevisionError::Compacted {
                compacted: self.compacted,
            });
        }
        let start = Revision { main: from, sub: 0 };
        let mut events = Vec::new();
        for (revision, key) in self.by_revision.range(start..) {
            if !range.contains(key) {
                continue;
            }
            let Some(records) = self.keys.get(key) else {
                continue;
            };
            let Ok(at) = records.binary_search_by_key(revision, |record| record.revision) else {
                continue;
            };
            let prev_kv = at
                .checked_sub(1)
                .and_then(|before| records[before].kv.clone());
            events.push(event(key, &records[at], prev_kv));
        }
        Ok(events)
    }

    /// Compacts at `revision`: every record superseded at that revision is
    /// dropped, and so is a tombstone that is a key's newest record by then.
    /// Returns where the dropped records were, for the durable log.
    pub fn compact(&mut self, revision: i64) -> Result<Vec<Revision>, RevisionError> {
        if revision <= self.compacted {
            return Err(RevisionError::Compacted {
                compacted: self.compacted,
            });
        }
        if revision > self.revision {
            return Err(RevisionError::Future);
        }
        let doomed: Vec<Revision> = self
            .by_revision
            .range(
                ..=Revision {
                    main: revision,
                    sub: i64::MAX,
                },
            )
            .map(|(revision, _)| *revision)
            .collect();
        let mut dropped = Vec::new();
        for at in doomed {
            let Some(key) = self.by_revision.get(&at).cloned() else {
                continue;
            };
            let Some(records) = self.keys.get_mut(&key) else {
                continue;
            };
            let superseded = records
                .iter()
                .position(|record| record.revision == at)
                .is_some_and(|position| {
                    let newer = records
                        .get(position + 1)
                        .is_some_and(|next| next.revision.main <= revision);
                    newer || records[position].kv.is_none()
                });
            if superseded {
                records.retain(|record| record.revision != at);
                self.by_revision.remove(&at);
                dropped.push(at);
                if records.is_empty() {
                    self.keys.remove(&key);
                }
            }
        }
        self.compacted = revision;
        Ok(dropped)
    }

    /// Restores one record read back from the durable log (in revision
    /// order), at startup.
    pub fn restore(&mut self, key: Key, record: Record) {
        self.revision = self.revision.max(record.revision.main);
        self.by_revision.insert(record.revision, key.clone());
        self.keys.entry(key).or_default().push(record);
    }

    /// Restores the revision and compaction point the durable log recorded
    /// (a transaction's records may all be compacted away, or it deleted
    /// only what a later compaction dropped).
    pub fn restore_revisions(&mut self, revision: i64, compacted: i64) {
        self.revision = self.revision.max(revision);
        self.compacted = compacted;
    }
}

/// The newest record of `records` at or before `revision`, if it is live.
fn live_at(records: &[Record], revision: i64) -> Option<&PbKeyValue> {
    records
        .iter()
        .rev()
        .find(|record| record.revision.main <= revision)
        .and_then(|record| record.kv.as_ref())
}

/// The watch event of `record` on `key`.
fn event(key: &[u8], record: &Record, prev_kv: Option<PbKeyValue>) -> PbEvent {
    match &record.kv {
        Some(kv) => PbEvent {
            r#type: etcd_client::EventType::Put as i32,
            kv: Some(kv.clone()),
            prev_kv,
        },
        None => PbEvent {
            r#type: etcd_client::EventType::Delete as i32,
            kv: Some(PbKeyValue {
                key: key.to_vec(),
                mod_revision: record.revision.main,
                ..PbKeyValue::default()
            }),
            prev_kv,
        },
    }
}

/// A write transaction: its changes are visible to its own reads at once
/// and belong to one revision. Dropped without [`commit`](Write::commit),
/// it takes every change back, so a transaction refused halfway leaves the
/// store as it was.
#[derive(Debug)]
pub struct Write<'a> {
    store: &'a mut Store,
    revision: i64,
    changes: Changes,
}

impl Write<'_> {
    /// The store as this transaction sees it.
    pub fn store(&self) -> &Store {
        self.store
    }

    /// The revision the transaction's reads see: its own, once it changed
    /// something.
    pub fn read_revision(&self) -> i64 {
        if self.changes.records.is_empty() {
            self.store.revision
        } else {
            self.revision
        }
    }

    /// Puts `value` under `key` with `lease`, returning the previous live
    /// version.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Option<PbKeyValue> {
        let prev = self.current(key).cloned();
        let kv = PbKeyValue {
            key: key.to_vec(),
            create_revision: prev.as_ref().map_or(self.revision, |p| p.create_revision),
            mod_revision: self.revision,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value,
            lease,
        };
        self.record(key, Some(kv), prev.clone());
        prev
    }

    /// Deletes every live key in `range`, returning what was deleted.
    pub fn delete(&mut self, range: KeyRange<'_>) -> Vec<PbKeyValue> {
        let at = self.read_revision();
        let deleted: Vec<PbKeyValue> = self.store.range(range, at).cloned().collect();
        for prev in &deleted {
            self.record(&prev.key, None, Some(prev.clone()));
        }
        deleted
    }

    /// The live version of `key` as this transaction sees it.
    pub fn current(&self, key: &[u8]) -> Option<&PbKeyValue> {
        self.store
            .keys
            .get(key)
            .and_then(|records| live_at(records, self.read_revision()))
    }

    fn record(&mut self, key: &[u8], kv: Option<PbKeyValue>, prev_kv: Option<PbKeyValue>) {
        let revision = Revision {
            main: self.revision,
            sub: i64::try_from(self.changes.records.len()).unwrap_or(i64::MAX),
        };
        let record = Record { revision, kv };
        self.changes.events.push(event(key, &record, prev_kv));
        self.changes.records.push((key.to_vec(), record.clone()));
        self.store.by_revision.insert(revision, key.to_vec());
        self.store
            .keys
            .entry(key.to_vec())
            .or_default()
            .push(record);
    }

    /// Ends the transaction: the store moves to its revision if it changed
    /// anything. Returns what changed.
    pub fn commit(mut self) -> Changes {
        if !self.changes.records.is_empty() {
            self.store.revision = self.revision;
            self.changes.revision = self.revision;
        } else {
            self.changes.revision = self.store.revision;
        }
        std::mem::take(&mut self.changes)
    }
}

impl Drop for Write<'_> {
    fn drop(&mut self) {
        for (key, record) in self.changes.records.drain(..).rev() {
            self.store.by_revision.remove(&record.revision);
            if let Some(records) = self.store.keys.get_mut(&key) {
                records.pop();
                if records.is_empty() {
                    self.store.keys.remove(&key);
                }
            }
        }
    }
}
