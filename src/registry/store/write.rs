//! Conditional writes: every create, update and delete is one etcd
//! transaction whose conditions (the object's own expected state, and the
//! existence of the objects it depends on) are checked atomically with it.
//!
//! Invariant: a write whose condition fails writes nothing, and its error names
//! the first condition that failed (missing dependency, already exists, not
//! found, or changed since read).

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::{Codec, Encode, Versioned};
use crate::registry::client::Registry;
use crate::registry::error::{Error, ObjectRef, Result};

/// What a write expects of its own key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expected {
    /// The key must not exist; it is created bound to `lease`, if given.
    Absent {
        /// Lease to bind the new key to.
        lease: Option<i64>,
    },
    /// The key must be at this mod revision.
    ModRevision(i64),
    /// The key must exist bound to this lease (its holder taking it back);
    /// it stays on the lease.
    Leased(i64),
    /// The key must be as it was last seen: absent (`None`) or at this mod
    /// revision. For writes that replace whatever is there ("set"), where any
    /// change in between, even a creation, is a conflict.
    Current(Option<i64>),
}

impl Expected {
    /// The etcd comparison that checks this expectation on `key`.
    fn compare(self, key: &str) -> Compare {
        match self {
            Self::Absent { .. } | Self::Current(None) => {
                Compare::create_revision(key, CompareOp::Equal, 0)
            }
            Self::ModRevision(revision) | Self::Current(Some(revision)) => {
                Compare::mod_revision(key, CompareOp::Equal, revision)
            }
            // An absent key compares as lease 0, which no granted lease is.
            Self::Leased(lease) => Compare::lease(key, CompareOp::Equal, lease),
        }
    }

    /// Whether the write replaces an existing key.
    fn replaces(self) -> bool {
        matches!(
            self,
            Self::ModRevision(_) | Self::Current(Some(_)) | Self::Leased(_)
        )
    }
}

/// One write of a batch.
pub(crate) struct Write<T> {
    pub object: ObjectRef,
    pub key: String,
    pub value: T,
    pub expected: Expected,
}

/// One deletion of a batch.
pub(crate) struct Delete {
    pub object: ObjectRef,
    pub key: String,
    /// The mod revision it must still have; `None`: it must merely exist.
    pub expected: Option<i64>,
}

/// What else a deletion removes in the same transaction.
#[derive(Debug, Clone)]
pub(crate) enum Cascade {
    /// Every key under this prefix.
    Prefix(String),
    /// This one key.
    Key(String),
}

/// A precondition on another key, checked in the same transaction as a write.
pub(crate) struct Requires {
    pub key: String,
    pub object: ObjectRef,
}

impl Registry {
    /// Writes `value` at `key` if `expected` holds for the key and every
    /// `requires` key exists, all in one transaction. On failure nothing is
    /// written and the error says which condition failed.
    pub(crate) async fn write_object<T: Codec>(
        &self,
        object: ObjectRef,
        key: &str,
        value: T,
        expected: Expected,
        requires: &[Requires],
    ) -> Result<Versioned<T>> {
        let write = Write {
            object,
            key: key.to_owned(),
            value,
            expected,
        };
        let mut written = self.write_objects(vec![write], requires).await?;
        Ok(written.remove(0))
    }

    /// Performs every write, each under its own expectation, if all hold and
    /// every `requires` key exists — all or nothing, in one transaction. On
    /// failure the error names the first condition that failed.
    pub(crate) async fn write_objects<T: Encode>(
        &self,
        writes: Vec<Write<T>>,
        requires: &[Requires],
    ) -> Result<Vec<Versioned<T>>> {
        self.write_and_delete(writes, &[], &[], requires).await
    }

    /// [`write_objects`](Self::write_objects) that also deletes `deletes`
    /// (each if still at its expected mod revision, when given, else if it
    /// exists) and whatever `cascade` names (unconditionally), in the same
    /// transaction.
    pub(crate) async fn write_and_delete<T: Encode>(
        &self,
        writes: Vec<Write<T>>,
        deletes: &[Delete],
        cascade: &[Cascade],
        requires: &[Requires],
    ) -> Result<Vec<Versioned<T>>> {
        let mut compares = Vec::new();
        let mut success = Vec::new();
        let mut read_back = Vec::new();
        for write in &writes {
            let key = write.key.as_str();
            let put_options = match write.expected {
                Expected::Absent { lease } => lease.map(|id| PutOptions::new().with_lease(id)),
                Expected::Current(None) => None,
                // Updates keep whatever lease the key is bound to.
                Expected::ModRevision(_) | Expected::Current(Some(_)) | Expected::Leased(_) => {
                    Some(PutOptions::new().with_ignore_lease())
                }
            };
            compares.push(write.expected.compare(key));
            success.push(TxnOp::put(key, write.value.encode(), put_options));
            if write.expected.replaces() {
                // A replace does not know the key's create revision: read it back.
                read_back.push(TxnOp::get(key, None));
            }
        }
        success.extend(read_back);
        // Deletions answer with no key-values, so they go after the read-backs.
        success.extend(deletes.iter().map(|d| TxnOp::delete(d.key.as_str(), None)));
        success.extend(cascade.iter().map(Cascade::op));
        compares.extend(
            requires
                .iter()
                .map(|r| Compare::version(r.key.as_str(), CompareOp::Greater, 0)),
        );
        compares.extend(deletes.iter().map(Delete::compare));
        let mut diagnose: Vec<TxnOp> = writes
            .iter()
            .map(|w| w.key.as_str())
            .chain(requires.iter().map(|r| r.key.as_str()))
            .chain(deletes.iter().map(|d| d.key.as_str()))
            .map(|key| TxnOp::get(key, None))
            .collect();
        self.add_fence(&mut compares, &mut diagnose);
        let txn = Txn::new()
            .when(compares)
            .and_then(success)
            .or_else(diagnose);
        let mut kv = self.kv_client();
        let response = self.call_write("write", kv.txn(txn)).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let mut found = found_kvs(&response.op_responses());
        if !response.succeeded() {
            self.check_fence(&mut found)?;
            let for_deletes = found.split_off((writes.len() + requires.len()).min(found.len()));
            if let Some(error) = diagnose_deletes(deletes, &for_deletes) {
                return Err(error);
            }
            return Err(diagnose_failure(&writes, requires, &found));
        }
        // Success responses: one per put, then the read-backs in write order.
        let mut read_backs = found.into_iter().flatten();
        Ok(writes
            .into_iter()
            .map(|write| {
                let create_revision = match write.expected.replaces() {
                    true => read_backs.next().map_or(revision, |kv| kv.create_revision),
                    false => revision,
                };
                Versioned {
                    key: write.key,
                    value: write.value,
                    create_revision,
                    mod_revision: revision,
                    revision,
                }
            })
            .collect())
    }

    /// Replaces `previous` with `value` if the key is still at `previous`'s mod revision.
    pub(crate) async fn update_object<T: Codec>(
        &self,
        object: ObjectRef,
        previous: &Versioned<T>,
        value: T,
    ) -> Result<Versioned<T>> {
        self.write_object(
            object,
            &previous.key,
            value,
            Expected::ModRevision(previous.mod_revision),
            &[],
        )
        .await
    }

    /// Deletes the object (if still at `expected` mod revision, when given) and,
    /// in the same transaction, everything `cascade` names.
    pub(crate) async fn delete_object(
        &self,
        object: ObjectRef,
        key: &str,
        expected: Option<i64>,
        cascade: &[Cascade],
    ) -> Result<i64> {
        let target = Delete {
            object,
            key: key.to_owned(),
            expected,
        };
        self.delete_objects(vec![target], cascade).await
    }

    /// Deletes every target (each if still at its expected mod revision, when
    /// given) and everything `cascade` names — all or nothing, in one
    /// transaction. Returns the revision of the deletion.
    pub(crate) async fn delete_objects(
        &self,
        targets: Vec<Delete>,
        cascade: &[Cascade],
    ) -> Result<i64> {
        let mut compares: Vec<Compare> = targets.iter().map(Delete::compare).collect();
        let mut deletes: Vec<TxnOp> = targets
            .iter()
            .map(|t| TxnOp::delete(t.key.as_str(), None))
            .collect();
        deletes.extend(cascade.iter().map(Cascade::op));
        let mut diagnose: Vec<TxnOp> = targets
            .iter()
            .map(|t| TxnOp::get(t.key.as_str(), None))
            .collect();
        self.add_fence(&mut compares, &mut diagnose);
        let txn = Txn::new()
            .when(compares)
            .and_then(deletes)
            .or_else(diagnose);
        let mut kv = self.kv_client();
        let response = self.call_write("delete", kv.txn(txn)).await?;
        if response.succeeded() {
            return Ok(response.header().map_or(0, |h| h.revision()));
        }
        let mut found = found_kvs(&response.op_responses());
        self.check_fence(&mut found)?;
        Err(
            diagnose_deletes(&targets, &found).unwrap_or(Error::Request {
                op: "delete",
                message: "transaction failed without a failed condition".into(),
            }),
        )
    }
}

impl Cascade {
    /// The etcd deletion that removes what this names.
    fn op(&self) -> TxnOp {
        match self {
            Self::Prefix(prefix) => TxnOp::delete(
                prefix.as_str(),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            ),
            Self::Key(key) => TxnOp::delete(key.as_str(), None),
        }
    }
}

impl Delete {
    /// The etcd comparison that checks this deletion's expectation.
    fn compare(&self) -> Compare {
        match self.expected {
            Some(revision) => Compare::mod_revision(self.key.as_str(), CompareOp::Equal, revision),
            None => Compare::version(self.key.as_str(), CompareOp::Greater, 0),
        }
    }
}

/// The first deletion whose expectation failed, given what was found at each
/// target: gone, or changed since read.
fn diagnose_deletes(targets: &[Delete], found: &[Option<FoundKv>]) -> Option<Error> {
    targets
        .iter()
        .zip(found)
        .find_map(|(target, found)| match (found, target.expected) {
            (None, _) => Some(Error::NotFound(target.object.clone())),
            (Some(kv), Some(expected)) if kv.mod_revision != expected => Some(Error::Conflict {
                object: target.object.clone(),
                expected,
            }),
            _ => None,
        })
}

impl Registry {
    /// Adds this handle's fence, if any, to a transaction: one more condition,
    /// and one more read at the end of the diagnostic branch.
    /// Orders everything sent before it: a write through etcd's log, so that
    /// once it commits at the returned revision, every write proposed before
    /// it has committed below that revision or never will. On a leader's
    /// handle it rewrites the leader key as it is (value and lease kept,
    /// fenced, so a deposed leader's barrier is `Deposed`); elsewhere it is a
    /// linearizable read of the current revision.
    pub(crate) async fn barrier(&self) -> Result<i64> {
        let mut kv = self.kv_client();
        let Some(fence) = self.fence() else {
            let options = etcd_client::GetOptions::new().with_count_only();
            let read = self.call("get", kv.get(self.keys().root(), Some(options)));
            return Ok(read.await?.header().map_or(0, |h| h.revision()));
        };
        let keep = PutOptions::new().with_ignore_value().with_ignore_lease();
        let txn = Txn::new()
            .when([Compare::create_revision(
                fence.key.as_str(),
                CompareOp::Equal,
                fence.create_revision,
            )])
            .and_then([TxnOp::put(fence.key.as_str(), "", Some(keep))]);
        let response = self.call_write("barrier", kv.txn(txn)).await?;
        match response.succeeded() {
            true => Ok(response.header().map_or(0, |h| h.revision())),
            false => Err(Error::Deposed {
                fence: fence.to_string(),
            }),
        }
    }

    /// Runs `ops` if every one of `compares` holds (and the fence, when
    /// fenced), in one transaction: the revision written at, or `None` when
    /// a compare failed and nothing was written. For writes of many kinds at
    /// once whose callers name the conflict themselves (`visor apply`).
    pub(crate) async fn write_if(
        &self,
        mut compares: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<Option<i64>> {
        let mut diagnose = Vec::new();
        self.add_fence(&mut compares, &mut diagnose);
        let txn = Txn::new().when(compares).and_then(ops).or_else(diagnose);
        let mut kv = self.kv_client();
        let response = self.call_write("write", kv.txn(txn)).await?;
        if response.succeeded() {
            return Ok(Some(response.header().map_or(0, |h| h.revision())));
        }
        self.check_fence(&mut found_kvs(&response.op_responses()))?;
        Ok(None)
    }

    fn add_fence(&self, compares: &mut Vec<Compare>, diagnose: &mut Vec<TxnOp>) {
        if let Some(fence) = self.fence() {
            compares.push(Compare::create_revision(
                fence.key.as_str(),
                CompareOp::Equal,
                fence.create_revision,
            ));
            diagnose.push(TxnOp::get(fence.key.as_str(), None));
        }
    }

    /// After a failed transaction: `Deposed` if the fence broke; otherwise
    /// drops the fence's read so the rest can be diagnosed as usual.
    fn check_fence(&self, found: &mut Vec<Option<FoundKv>>) -> Result<()> {
        let Some(fence) = self.fence() else {
            return Ok(());
        };
        match found.pop().flatten() {
            Some(kv) if kv.create_revision == fence.create_revision => Ok(()),
            _ => Err(Error::Deposed {
                fence: fence.to_string(),
            }),
        }
    }
}

/// Which condition of a failed batch write failed: a missing required key
/// first, then the first write whose expectation did not hold.
fn diagnose_failure<T>(
    writes: &[Write<T>],
    requires: &[Requires],
    found: &[Option<FoundKv>],
) -> Error {
    let (for_writes, for_requires) = found.split_at(writes.len().min(found.len()));
    if let Some((missing, _)) = requires
        .iter()
        .zip(for_requires)
        .find(|(_, found)| found.is_none())
    {
        return Error::NotFound(missing.object.clone());
    }
    for (write, found) in writes.iter().zip(for_writes) {
        let mod_revision = found.as_ref().map(|kv| kv.mod_revision);
        let object = write.object.clone();
        if let (Expected::Leased(lease), Some(kv)) = (write.expected, found)
            && kv.lease != lease
        {
            return Error::AlreadyExists(object);
        }
        match (write.expected, mod_revision) {
            (Expected::Absent { .. }, Some(_)) => return Error::AlreadyExists(object),
            (Expected::ModRevision(_) | Expected::Leased(_), None) => {
                return Error::NotFound(object);
            }
            (Expected::ModRevision(expected), Some(actual)) if actual != expected => {
                return Error::Conflict { object, expected };
            }
            (Expected::Current(expected), actual) if expected != actual => {
                return Error::Conflict {
                    object,
                    expected: expected.unwrap_or(0),
                };
            }
            _ => {}
        }
    }
    Error::Request {
        op: "write",
        message: "transaction failed without a failed condition".into(),
    }
}

/// The revisions of a key a transaction's `get` found.
#[derive(Debug, Clone, Copy)]
struct FoundKv {
    create_revision: i64,
    mod_revision: i64,
    lease: i64,
}

/// For each `get` in a transaction's responses, what it found.
fn found_kvs(responses: &[TxnOpResponse]) -> Vec<Option<FoundKv>> {
    responses
        .iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(get) => Some(get.kvs().first().map(|kv| FoundKv {
                create_revision: kv.create_revision(),
                mod_revision: kv.mod_revision(),
                lease: kv.lease(),
            })),
            _ => None,
        })
        .collect()
}
