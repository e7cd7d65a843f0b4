//! The embedded registry's write-ahead log: what makes a batch durable.
//!
//! A synced commit of the B-tree database rewrites pages all over its file;
//! an append to a preallocated file synced with `fdatasync` is one short
//! sequential write, as in etcd's own WAL. So each batch is appended here
//! and synced before it is acknowledged, then committed to the database
//! without a sync; every so often a synced database commit (a checkpoint)
//! makes those durable at once and the log starts again from its beginning.
//!
//! A record is `[length u32][crc32 u32][WalBatch]`, little endian, and each
//! batch carries a sequence number one above the last. Reading stops at the
//! first record that is torn, fails its checksum, or does not follow its
//! predecessor's number: what lies beyond is a record never acknowledged,
//! or one of an earlier pass over the file, already checkpointed.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use etcd_client::proto::PbKeyValue;
use prost::Message;

use super::log::Batch;
use super::mvcc::{Record, Revision};

/// The log file in the data dir.
pub const FILE: &str = "registry.wal";
/// How much of the file is allocated ahead, so a sync writes no metadata.
const PREALLOCATED: u64 = 64 * 1024 * 1024;
/// Past this many bytes the log asks for a checkpoint.
pub const CHECKPOINT_BYTES: u64 = 16 * 1024 * 1024;
/// Bytes before each record: its length and checksum.
const HEADER: usize = 8;

/// One batch as the log records it.
#[derive(Clone, PartialEq, Message)]
pub struct WalBatch {
    /// One above the previous batch's.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// The store's revision after the batch.
    #[prost(int64, tag = "2")]
    pub revision: i64,
    /// The versions written, in revision order.
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<WalRecord>,
    /// Leases granted.
    #[prost(message, repeated, tag = "4")]
    pub granted: Vec<WalLease>,
    /// Leases revoked or expired.
    #[prost(int64, repeated, tag = "5")]
    pub revoked: Vec<i64>,
    /// The revision compacted at, if the batch compacted.
    #[prost(int64, optional, tag = "6")]
    pub compacted: Option<i64>,
    /// The versions that compaction dropped.
    #[prost(message, repeated, tag = "7")]
    pub dropped: Vec<WalRevision>,
}

/// A version and where it sits in history.
#[derive(Clone, PartialEq, Message)]
pub struct WalRecord {
    /// Its revision.
    #[prost(message, optional, tag = "1")]
    pub at: Option<WalRevision>,
    /// The key-value; a deletion has no create revision.
    #[prost(message, optional, tag = "2")]
    pub kv: Option<PbKeyValue>,
}

/// A `(main, sub)` revision.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct WalRevision {
    /// The transaction's revision.
    #[prost(int64, tag = "1")]
    pub main: i64,
    /// The change's place in it.
    #[prost(int64, tag = "2")]
    pub sub: i64,
}

/// A lease granted.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct WalLease {
    /// Its id.
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// Its TTL in seconds.
    #[prost(int64, tag = "2")]
    pub ttl: i64,
}

impl WalBatch {
    /// `batch` as the log records it, numbered `seq`.
    pub fn of(seq: u64, batch: &Batch) -> Self {
        Self {
            seq,
            revision: batch.revision,
            records: batch
                .records
                .iter()
                .map(|(key, record)| WalRecord {
                    at: Some(WalRevision {
                        main: record.revision.main,
                        sub: record.revision.sub,
                    }),
                    kv: Some(record.kv.clone().unwrap_or_else(|| PbKeyValue {
                        key: key.clone(),
                        mod_revision: record.revision.main,
                        ..PbKeyValue::default()
                    })),
                })
                .collect(),
            granted: batch
                .granted
                .iter()
                .map(|(id, ttl)| WalLease { id: *id, ttl: *ttl })
                .collect(),
            revoked: batch.revoked.clone(),
            compacted: batch.compacted.as_ref().map(|(revision, _)| *revision),
            dropped: batch
                .compacted
                .iter()
                .flat_map(|(_, dropped)| dropped)
                .map(|at| WalRevision {
                    main: at.main,
                    sub: at.sub,
                })
                .collect(),
        }
    }

    /// The batch it records.
    pub fn batch(&self) -> Batch {
        Batch {
            records: self
                .records
                .iter()
                .map(|record| {
                    let at = record.at.unwrap_or_default();
                    let kv = record.kv.clone().unwrap_or_default();
                    let key = kv.key.clone();
                    let record = Record {
                        revision: Revision {
                            main: at.main,
                            sub: at.sub,
                        },
                        kv: (kv.create_revision > 0).then_some(kv),
                    };
                    (key, record)
                })
                .collect(),
            granted: self
                .granted
                .iter()
                .map(|lease| (lease.id, lease.ttl))
                .collect(),
            revoked: self.revoked.clone(),
            compacted: self.compacted.map(|revision| {
                let dropped = self
                    .dropped
                    .iter()
                    .map(|at| Revision {
                        main: at.main,
                        sub: at.sub,
                    })
                    .collect();
                (revision, dropped)
            }),
            revision: self.revision,
        }
    }
}

/// The open log, positioned after its last record.
#[derive(Debug)]
pub struct Wal {
    file: File,
    path: PathBuf,
    /// Where the next record goes.
    end: u64,
    /// The sequence number of the last record written or read.
    last_seq: u64,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, returning it with every batch
    /// after `applied` (the last one the database holds), in order. The log
    /// is left positioned for the next batch, numbered after those.
    pub fn open(dir: &Path, applied: u64) -> std::io::Result<(Self, Vec<WalBatch>)> {
        let path = dir.join(FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let length = file.metadata()?.len();
        if length < PREALLOCATED {
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, PREALLOCATED)?;
            file.sync_all()?;
            crate::durable::sync_dir(dir)?;
        }
        let mut wal = Self {
            file,
            path,
            end: 0,
            last_seq: applied,
        };
        let mut pending = Vec::new();
        let mut previous: Option<u64> = None;
        while let Some((batch, next)) = wal.read_at(wal.end)? {
            if previous.is_some_and(|seq| batch.seq != seq + 1) {
                break;
            }
            previous = Some(batch.seq);
            wal.end = next;
            if batch.seq > applied {
                wal.last_seq = batch.seq;
                pending.push(batch);
            }
        }
        // Records of an earlier pass (all checkpointed) are not worth keeping
        // the position for: start again at the beginning when none is new.
        if pending.is_empty() {
            wal.end = 0;
        }
        Ok((wal, pending))
    }

    /// The record at `offset` and where the next one starts, if it is whole
    /// and sound.
    fn read_at(&self, offset: u64) -> std::io::Result<Option<(WalBatch, u64)>> {
        let mut header = [0u8; HEADER];
        if self.file.read_exact_at(&mut header, offset).is_err() {
            return Ok(None);
        }
        let (length, crc) = header.split_at(4);
        let length = u32::from_le_bytes(length.try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(crc.try_into().unwrap_or_default());
        let Ok(length) = usize::try_from(length) else {
            return Ok(None);
        };
        if length == 0 {
            return Ok(None);
        }
        let mut payload = vec![0u8; length];
        if self
            .file
            .read_exact_at(&mut payload, offset + HEADER as u64)
            .is_err()
            || crc32fast::hash(&payload) != crc
        {
            return Ok(None);
        }
        let Ok(batch) = WalBatch::decode(payload.as_slice()) else {
            return Ok(None);
        };
        Ok(Some((batch, offset + (HEADER + length) as u64)))
    }

    /// Appends `batch` as the next record and syncs it; returns its
    /// sequence number.
    pub fn append(&mut self, batch: &Batch) -> std::io::Result<u64> {
        let seq = self.last_seq + 1;
        let payload = WalBatch::of(seq, batch).encode_to_vec();
        let length = u32::try_from(payload.len()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "a batch over 4 GiB")
        })?;
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&length.to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        self.file.write_all_at(&record, self.end)?;
        let end = self.end + record.len() as u64;
        if end > PREALLOCATED {
            // Past the preallocated part the file grew: its size must be synced too.
            self.file.sync_all()?;
        } else {
            self.file.sync_data()?;
        }
        self.end = end;
        self.last_seq = seq;
        Ok(seq)
    }

    /// Whether the log has grown enough to want a checkpoint.
    pub fn wants_checkpoint(&self) -> bool {
        self.end >= CHECKPOINT_BYTES
    }

    /// Starts again at the beginning: everything in the log is durable in
    /// the database now (its records stay until overwritten; their numbers
    /// stop a reader after the new ones).
    pub fn restart(&mut self) {
        self.end = 0;
    }

    /// The last sequence number given.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(revision: i64, value: &str) -> Batch {
        let kv = PbKeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: revision,
            version: revision - 1,
            value: value.as_bytes().to_vec(),
            lease: 0,
        };
        Batch {
            records: vec![(
                b"k".to_vec(),
                Record {
                    revision: Revision {
                        main: revision,
                        sub: 0,
                    },
                    kv: Some(kv),
                },
            )],
            revision,
            ..Batch::default()
        }
    }

    fn revisions(batches: &[WalBatch]) -> Vec<(u64, i64)> {
        batches.iter().map(|b| (b.seq, b.revision)).collect()
    }

    #[test]
    fn batches_after_the_applied_one_come_back_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let (mut wal, pending) = Wal::open(dir.path(), 0).expect("open");
        assert!(pending.is_empty());
        for revision in 2..6 {
            wal.append(&batch(revision, "v")).expect("append");
        }
        let (_, pending) = Wal::open(dir.path(), 2).expect("reopen");
        assert_eq!(revisions(&pending), [(3, 4), (4, 5)]);
        assert_eq!(pending[0].batch().records, batch(4, "v").records);
    }

    #[test]
    fn after_a_restart_the_records_of_the_earlier_pass_are_not_read() {
        let dir = tempfile::tempdir().expect("dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        // A long first pass, then a checkpoint at seq 3.
        for revision in 2..5 {
            wal.append(&batch(revision, &"long value ".repeat(20)))
                .expect("append");
        }
        wal.restart();
        wal.append(&batch(5, "short")).expect("append");
        let (reopened, pending) = Wal::open(dir.path(), 3).expect("reopen");
        assert_eq!(revisions(&pending), [(4, 5)], "only the new pass's batch");
        assert_eq!(reopened.last_seq(), 4);
        // Everything checkpointed: nothing comes back, numbering goes on.
        let (mut wal, pending) = Wal::open(dir.path(), 4).expect("reopen");
        assert!(pending.is_empty());
        assert_eq!(wal.append(&batch(6, "v")).expect("append"), 5);
    }

    #[test]
    fn a_torn_last_record_is_not_read() {
        let dir = tempfile::tempdir().expect("dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        wal.append(&batch(2, "kept")).expect("append");
        let torn_at = wal.end;
        wal.append(&batch(3, "torn")).expect("append");
        // The second record's last bytes never reached the disk.
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join(FILE))
            .expect("open the file");
        file.write_all_at(&[0xff; 4], torn_at + HEADER as u64 + 2)
            .expect("tear it");
        let (_, pending) = Wal::open(dir.path(), 0).expect("reopen");
        assert_eq!(revisions(&pending), [(1, 2)]);
    }
}
