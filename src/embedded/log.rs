//! The embedded registry's durable log: every change on disk, synced,
//! before it is acknowledged or seen.
//!
//! A batch is made durable by the write-ahead log (`wal.rs`: one short
//! synced append, by the writer), then committed to the database without a
//! sync (by the database thread, `committer.rs`); a synced commit every so
//! often (a checkpoint) lets the write-ahead log start over, and startup
//! first moves what the write-ahead log holds beyond the last checkpoint
//! into the database.
//!
//! The database, a redb database (pure Rust, ACID, crash-safe copy-on-write
//! B-trees), holds what the MVCC index holds: each record under its
//! revision, as etcd's backend keys them, encoded as etcd's own `KeyValue`
//! message (a tombstone is a key-value without a create revision); the
//! current and compacted revisions; and each lease with its TTL (keep-alives
//! are not logged, as in etcd: a restart grants every lease its whole TTL
//! again). A whole batch is one record of the write-ahead log and one redb
//! transaction, so it is on disk entirely or not at all. Startup replays
//! the records in revision order into a fresh index.

use std::path::{Path, PathBuf};
use std::time::Instant;

use etcd_client::proto::PbKeyValue;
use prost::Message;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::mvcc::{Key, Record, Revision, Store};
use super::state::State;
use super::wal::Wal;

/// Every record, by `(main, sub)` revision.
const RECORDS: TableDefinition<(i64, i64), &[u8]> = TableDefinition::new("records");
/// The store's revisions: [`REVISION`] and [`COMPACTED`].
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// Every live lease's granted TTL, by id.
const LEASES: TableDefinition<i64, i64> = TableDefinition::new("leases");

const REVISION: &str = "revision";
const COMPACTED: &str = "compacted";
/// The sequence number of the last write-ahead batch the database holds.
const APPLIED: &str = "applied_seq";
/// The member's and the cluster's ids, chosen when the log was created.
const MEMBER_ID: &str = "member_id";
const CLUSTER_ID: &str = "cluster_id";
/// The file in the data dir.
pub const FILE: &str = "registry.redb";

/// Why the log cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The data dir or its database cannot be opened.
    #[error("cannot open the registry's log {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb or the file system said.
        source: Box<redb::Error>,
    },
    /// Reading or writing the database failed.
    #[error("cannot {op} the registry's log {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The database file.
        path: PathBuf,
        /// What redb said.
        source: Box<redb::Error>,
    },
    /// The write-ahead log cannot be opened, read or written.
    #[error("cannot use the registry's write-ahead log {path}: {source}")]
    Wal {
        /// The write-ahead log file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// A thread of the registry cannot be started.
    #[error("cannot start a thread for the registry's log {path}: {source}")]
    Thread {
        /// The database file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A record that does not decode.
    #[error(
        "the registry's log {path} holds a record at revision {main}.{sub} that does not decode: {reason}"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The record's main revision.
        main: i64,
        /// The record's sub revision.
        sub: i64,
        /// What was wrong.
        reason: String,
    },
}

/// The last write-ahead batch `db` holds (0: none).
fn read_applied(db: &Database) -> Result<u64, redb::Error> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(error) => return Err(error.into()),
    };
    let applied = meta.get(APPLIED)?.map_or(0, |value| value.value());
    Ok(u64::try_from(applied).unwrap_or(0))
}

/// A random non-zero id (the random half of a UUIDv7).
fn random_id() -> i64 {
    let bits = uuid::Uuid::now_v7().as_u64_pair().1;
    i64::from_ne_bytes(bits.max(1).to_ne_bytes())
}

/// What one batch of transactions changed, to append at once.
#[derive(Debug, Default)]
pub struct Batch {
    /// The records written, in revision order.
    pub records: Vec<(Key, Record)>,
    /// Leases granted, with their TTLs.
    pub granted: Vec<(i64, i64)>,
    /// Leases revoked or expired.
    pub revoked: Vec<i64>,
    /// A compaction: the revision and the records it dropped.
    pub compacted: Option<(i64, Vec<Revision>)>,
    /// The store's revision after the batch.
    pub revision: i64,
}

impl Batch {
    /// Whether the batch changes nothing on disk.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.granted.is_empty()
            && self.revoked.is_empty()
            && self.compacted.is_none()
    }
}

/// The open database. The write-ahead log beside it is the writer's; the
/// database is the database thread's (`committer.rs`).
#[derive(Debug)]
pub struct Log {
    db: Database,
    path: PathBuf,
    /// The last write-ahead batch committed to the database.
    applied: u64,
}

impl Log {
    /// Opens (or creates) the log in `dir`: the database, the write-ahead
    /// log positioned for the next batch, and the state they hold, every
    /// lease granted afresh at `now`.
    pub fn open(dir: &Path, now: Instant) -> Result<(Self, Wal, State), LogError> {
        let path = dir.join(FILE);
        let open_error = |source: redb::Error| LogError::Open {
            path: path.clone(),
            source: Box::new(source),
        };
        std::fs::create_dir_all(dir)
            .map_err(|error| open_error(redb::StorageError::Io(error).into()))?;
        let db = Database::create(&path).map_err(|error| open_error(error.into()))?;
        let applied = read_applied(&db).map_err(open_error)?;
        let (mut wal, pending) = Wal::open(dir, applied).map_err(|error| LogError::Wal {
            path: dir.join(super::wal::FILE),
            source: error,
        })?;
        let mut log = Self { db, path, applied };
        // Batches acknowledged before a crash that the database had not
        // synced yet: into the database, synced at once, and the
        // write-ahead log starts over.
        if !pending.is_empty() {
            let batches: Vec<(Batch, u64)> = pending
                .iter()
                .map(|batch| (batch.batch(), batch.seq))
                .collect();
            log.apply(&batches)?;
            log.checkpoint()?;
            wal.restart();
        }
        let state = log.replay(now)?;
        Ok((log, wal, state))
    }

    /// The member's and the cluster's ids: chosen at random the first time,
    /// then kept, as etcd keeps them in its data dir.
    pub fn identity(&self) -> Result<(u64, u64), LogError> {
        let fail = self.io("write");
        let txn = self.db.begin_write().map_err(|e| fail(e.into()))?;
        let ids = {
            let mut meta = txn.open_table(META).map_err(|e| fail(e.into()))?;
            let mut ids = [0u64; 2];
            for (slot, name) in ids.iter_mut().zip([MEMBER_ID, CLUSTER_ID]) {
                let stored = meta
                    .get(name)
                    .map_err(|e| fail(e.into()))?
                    .map(|v| v.value());
                let id = match stored {
                    Some(id) => id,
                    None => {
                        let id = random_id();
                        meta.insert(name, id).map_err(|e| fail(e.into()))?;
                        id
                    }
                };
                // Stored as i64 bits; an id is any non-zero u64.
                *slot = u64::from_ne_bytes(id.to_ne_bytes());
            }
            ids
        };
        txn.commit().map_err(|e| fail(e.into()))?;
        Ok((ids[0], ids[1]))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, op: &'static str) -> impl Fn(redb::Error) -> LogError + '_ {
        move |source| LogError::Io {
            op,
            path: self.path.clone(),
            source: Box::new(source),
        }
    }

    fn replay(&self, now: Instant) -> Result<State, LogError> {
        let read_error = self.io("read");
        let txn = self.db.begin_read().map_err(|e| read_error(e.into()))?;
        let mut store = Store::new();
        let mut revision = 1;
        let mut compacted = 0;
        let mut leases = Vec::new();
        match txn.open_table(META) {
            Ok(meta) => {
                for (name, target) in [(REVISION, &mut revision), (COMPACTED, &mut compacted)] {
                    if let Some(value) = meta.get(name).map_err(|e| read_error(e.into()))? {
                        *target = value.value();
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(State::default()),
            Err(error) => return Err(read_error(error.into())),
        }
        // A table is made by the first write that needs it: one not made
        // yet holds nothing.
        let records = match txn.open_table(RECORDS) {
            Ok(records) => Some(records),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(error) => return Err(read_error(error.into())),
        };
        let entries = match &records {
            Some(records) => Some(records.iter().map_err(|e| read_error(e.into()))?),
            None => None,
        };
        for entry in entries.into_iter().flatten() {
            let (at, bytes) = entry.map_err(|e| read_error(e.into()))?;
            let (main, sub) = at.value();
            let kv = PbKeyValue::decode(bytes.value()).map_err(|error| LogError::Corrupt {
                path: self.path.clone(),
                main,
                sub,
                reason: error.to_string(),
            })?;
            let key = kv.key.clone();
            let kv = (kv.create_revision > 0).then_some(kv);
            store.restore(
                key,
                Record {
                    revision: Revision { main, sub },
                    kv,
                },
            );
        }
        match txn.open_table(LEASES) {
            Ok(table) => {
                for entry in table.iter().map_err(|e| read_error(e.into()))? {
                    let (id, ttl) = entry.map_err(|e| read_error(e.into()))?;
                    leases.push((id.value(), ttl.value()));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(error) => return Err(read_error(error.into())),
        }
        store.restore_revisions(revision, compacted);
        let mut state = State::new(store);
        for (id, ttl) in leases {
            state.restore_lease(id, ttl, now);
        }
        state.restore_attachments();
        Ok(state)
    }

    /// Commits `batches`, durable already in the write-ahead log with their
    /// sequence numbers, to the database in one transaction, without a
    /// sync: their answers need not wait for it, as a crash before the next
    /// [`checkpoint`](Self::checkpoint) is made up for by the write-ahead log.
    pub fn apply(&mut self, batches: &[(Batch, u64)]) -> Result<(), LogError> {
        let Some((_, last)) = batches.last() else {
            return Ok(());
        };
        self.commit(batches, Durability::None)?;
        self.applied = *last;
        Ok(())
    }

    /// Syncs the database with every batch committed to it (a synced
    /// commit recording the last one applied), so the write-ahead log may
    /// start again from its beginning; returns that batch's number.
    pub fn checkpoint(&mut self) -> Result<u64, LogError> {
        let fail = self.io("write");
        let mut txn = self.db.begin_write().map_err(|e| fail(e.into()))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| fail(e.into()))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| fail(e.into()))?;
            let applied = i64::try_from(self.applied).unwrap_or(i64::MAX);
            meta.insert(APPLIED, applied).map_err(|e| fail(e.into()))?;
        }
        txn.commit().map_err(|e| fail(e.into()))?;
        Ok(self.applied)
    }

    /// Commits `batches`, each with its write-ahead sequence number, to the
    /// database in one transaction, in order.
    fn commit(&self, batches: &[(Batch, u64)], durability: Durability) -> Result<(), LogError> {
        let write_error = self.io("write");
        let fail = |error: redb::Error| write_error(error);
        let mut txn = self.db.begin_write().map_err(|e| fail(e.into()))?;
        txn.set_durability(durability).map_err(|e| fail(e.into()))?;
        for (batch, seq) in batches {
            let mut records = txn.open_table(RECORDS).map_err(|e| fail(e.into()))?;
            for (key, record) in &batch.records {
                let bytes = match &record.kv {
                    Some(kv) => kv.encode_to_vec(),
                    None => PbKeyValue {
                        key: key.clone(),
                        mod_revision: record.revision.main,
                        ..PbKeyValue::default()
                    }
                    .encode_to_vec(),
                };
                records
                    .insert(
                        (record.revision.main, record.revision.sub),
                        bytes.as_slice(),
                    )
                    .map_err(|e| fail(e.into()))?;
            }
            if let Some((_, dropped)) = &batch.compacted {
                for at in dropped {
                    records
                        .remove((at.main, at.sub))
                        .map_err(|e| fail(e.into()))?;
                }
            }
            let mut leases = txn.open_table(LEASES).map_err(|e| fail(e.into()))?;
            for (id, ttl) in &batch.granted {
                leases.insert(id, ttl).map_err(|e| fail(e.into()))?;
            }
            for id in &batch.revoked {
                leases.remove(id).map_err(|e| fail(e.into()))?;
            }
            let mut meta = txn.open_table(META).map_err(|e| fail(e.into()))?;
            meta.insert(REVISION, batch.revision)
                .map_err(|e| fail(e.into()))?;
            let seq = i64::try_from(*seq).unwrap_or(i64::MAX);
            meta.insert(APPLIED, seq).map_err(|e| fail(e.into()))?;
            if let Some((compacted, _)) = &batch.compacted {
                meta.insert(COMPACTED, compacted)
                    .map_err(|e| fail(e.into()))?;
            }
        }
        txn.commit().map_err(|e| fail(e.into()))
    }

    /// The database file's size in bytes.
    pub fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |meta| meta.len())
    }

    /// Compacts the database file (redb's own compaction: gives free pages
    /// back), for Maintenance `Defragment`.
    pub fn defragment(&mut self) -> Result<(), LogError> {
        self.checkpoint()?;
        self.db
            .compact(redb::CompactionMode::Balanced)
            .map(|_| ())
            .map_err(|error| (self.io("defragment"))(error.into()))
    }
}
