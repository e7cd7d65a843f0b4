//! Typed, versioned objects on etcd keys: JSON codecs, paginated listings at
//! one revision, and the compare-and-set writes every update goes through.
//!
//! Invariants: a listing is one consistent snapshot (every page is read at the
//! revision of the first); a write whose precondition fails writes nothing and
//! says why (the object is missing, exists already, or changed).

use std::fmt;

use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use visor_controllers::{App, Host, Instance, ProcType, Revision, Scale, SchemaVersion, Ticket};

use super::client::Registry;
use super::error::{Error, Kind, ObjectRef, Result};

/// Keys per page when listing; keeps each response far below gRPC's message limit.
const PAGE_SIZE: i64 = 1000;

/// An object as read from the registry, with the revisions that version it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The object's full key.
    pub key: String,
    /// The decoded document.
    pub value: T,
    /// The revision that created the key (orders objects by creation).
    pub create_revision: i64,
    /// The revision of the last write; updates compare against it.
    pub mod_revision: i64,
    /// The registry revision this copy was read (or written) at.
    pub revision: i64,
}

impl<T> Versioned<T> {
    /// The last `/`-separated segment of the key: the object's own name.
    pub fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or_default()
    }
}

/// A stored value that could not be decoded; listings skip and report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// What the key should hold.
    pub kind: Kind,
    /// The key.
    pub key: String,
    /// What is wrong with the value.
    pub reason: String,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "skipped malformed {} at {}: {}",
            self.kind.as_str(),
            self.key,
            self.reason
        )
    }
}

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Self {
        Error::Malformed {
            kind: m.kind,
            key: m.key,
            reason: m.reason,
        }
    }
}

/// Every object under a prefix at one revision, plus what had to be skipped.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    /// Decoded objects, in key order unless the call says otherwise.
    pub items: Vec<Versioned<T>>,
    /// The revision the whole listing was read at.
    pub revision: i64,
    /// Values that failed to decode, reported and left in place.
    pub skipped: Vec<Malformed>,
}

impl<T> Listing<T> {
    /// Converts every value, moving those `convert` refuses to `skipped`.
    pub(crate) fn map_values<U>(
        self,
        kind: Kind,
        mut convert: impl FnMut(&str, T) -> Result<U, String>,
    ) -> Listing<U> {
        let mut skipped = self.skipped;
        let mut items = Vec::with_capacity(self.items.len());
        for item in self.items {
            let Versioned {
                key,
                value,
                create_revision,
                mod_revision,
                revision,
            } = item;
            match convert(&key, value) {
                Ok(value) => items.push(Versioned {
                    key,
                    value,
                    create_revision,
                    mod_revision,
                    revision,
                }),
                Err(reason) => skipped.push(Malformed { kind, key, reason }),
            }
        }
        Listing {
            items,
            revision: self.revision,
            skipped,
        }
    }

    fn report_skipped(&self) {
        for malformed in &self.skipped {
            tracing::warn!(key = %malformed.key, kind = malformed.kind.as_str(), reason = %malformed.reason, "skipping malformed registry value");
        }
    }
}

/// How a stored value is written and read: JSON documents, or raw strings for
/// environment variables (so `etcdctl put /visor/env/web/PORT 80` just works).
pub(crate) trait Codec: Sized {
    /// The bytes stored for `self`.
    fn encode(&self) -> Vec<u8>;
    /// The value stored as `bytes`, or why they are not one.
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

macro_rules! json_codec {
    ($($ty:ty),* $(,)?) => {$(
        impl Codec for $ty {
            fn encode(&self) -> Vec<u8> {
                // Plain structs with string-keyed maps always serialize.
                serde_json::to_vec(self).expect("invariant: registry documents always serialize to JSON")
            }
            fn decode(bytes: &[u8]) -> Result<Self, String> {
                serde_json::from_slice(bytes).map_err(|error| error.to_string())
            }
        }
    )*};
}

json_codec!(
    App,
    ProcType,
    Revision,
    Scale,
    Host,
    Instance,
    Ticket,
    SchemaVersion
);

impl Codec for String {
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        String::from_utf8(bytes.to_vec()).map_err(|_| "value is not UTF-8".to_owned())
    }
}

/// Decodes one key-value pair as a value of `kind`.
pub(crate) fn decode<T: Codec>(
    kind: Kind,
    kv: &KeyValue,
    revision: i64,
) -> Result<Versioned<T>, Malformed> {
    let key = String::from_utf8_lossy(kv.key()).into_owned();
    match T::decode(kv.value()) {
        Ok(value) => Ok(Versioned {
            key,
            value,
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            revision,
        }),
        Err(reason) => Err(Malformed { kind, key, reason }),
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

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
        }
    }

    /// Whether the write replaces an existing key.
    fn replaces(self) -> bool {
        matches!(self, Self::ModRevision(_) | Self::Current(Some(_)))
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
    /// Reads one object; `NotFound(object)` when the key is absent.
    pub(crate) async fn get_object<T: Codec>(
        &self,
        object: ObjectRef,
        key: &str,
    ) -> Result<Versioned<T>> {
        let kind = object.kind;
        match self.find_object(kind, key).await? {
            (Some(found), _) => Ok(found),
            (None, _) => Err(Error::NotFound(object)),
        }
    }

    /// Reads one object if present, with the revision the read was taken at.
    pub(crate) async fn find_object<T: Codec>(
        &self,
        kind: Kind,
        key: &str,
    ) -> Result<(Option<Versioned<T>>, i64)> {
        let mut kv = self.etcd().kv_client();
        let response = self.call("get", kv.get(key, None)).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        match response.kvs().first() {
            Some(kv) => Ok((Some(decode(kind, kv, revision)?), revision)),
            None => Ok((None, revision)),
        }
    }

    /// The precondition "the key is as it is now" (absent, or at its current mod
    /// revision), for writes that replace whatever is there but must not race.
    pub(crate) async fn expect_current(&self, key: &str) -> Result<Expected> {
        let mut kv = self.etcd().kv_client();
        let options = GetOptions::new().with_keys_only();
        let response = self.call("get", kv.get(key, Some(options))).await?;
        Ok(Expected::Current(
            response.kvs().first().map(KeyValue::mod_revision),
        ))
    }

    /// Lists every object under `prefix` at one revision, in key order, paging as needed.
    pub(crate) async fn list_objects<T: Codec>(
        &self,
        kind: Kind,
        prefix: &str,
    ) -> Result<Listing<T>> {
        let mut kv = self.etcd().kv_client();
        let end = prefix_end(prefix);
        let mut start = prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut listing = Listing {
            items: Vec::new(),
            revision: 0,
            skipped: Vec::new(),
        };
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE_SIZE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let response = self
                .call("list", kv.get(start.clone(), Some(options)))
                .await?;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            for kv in response.kvs() {
                let key = String::from_utf8_lossy(kv.key());
                if self.keys().parse(&key).kind() != Some(kind) {
                    listing.skipped.push(Malformed {
                        kind,
                        key: key.into_owned(),
                        reason: "the key does not fit the registry layout (see docs/registry.md)"
                            .to_owned(),
                    });
                    continue;
                }
                match decode(kind, kv, revision) {
                    Ok(item) => listing.items.push(item),
                    Err(malformed) => listing.skipped.push(malformed),
                }
            }
            match (response.more(), response.kvs().last()) {
                (true, Some(last)) => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        listing.revision = revision;
        listing.report_skipped();
        Ok(listing)
    }

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
    pub(crate) async fn write_objects<T: Codec>(
        &self,
        writes: Vec<Write<T>>,
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
                Expected::ModRevision(_) | Expected::Current(Some(_)) => {
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
        compares.extend(
            requires
                .iter()
                .map(|r| Compare::version(r.key.as_str(), CompareOp::Greater, 0)),
        );
        let diagnose: Vec<TxnOp> = writes
            .iter()
            .map(|w| w.key.as_str())
            .chain(requires.iter().map(|r| r.key.as_str()))
            .map(|key| TxnOp::get(key, None))
            .collect();
        let txn = Txn::new()
            .when(compares)
            .and_then(success)
            .or_else(diagnose);
        let mut kv = self.etcd().kv_client();
        let response = self.call("write", kv.txn(txn)).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let found = found_kvs(&response.op_responses());
        if !response.succeeded() {
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
        let compares: Vec<Compare> = targets
            .iter()
            .map(|t| match t.expected {
                Some(revision) => Compare::mod_revision(t.key.as_str(), CompareOp::Equal, revision),
                None => Compare::version(t.key.as_str(), CompareOp::Greater, 0),
            })
            .collect();
        let mut deletes: Vec<TxnOp> = targets
            .iter()
            .map(|t| TxnOp::delete(t.key.as_str(), None))
            .collect();
        deletes.extend(cascade.iter().map(|target| match target {
            Cascade::Prefix(prefix) => TxnOp::delete(
                prefix.as_str(),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            ),
            Cascade::Key(key) => TxnOp::delete(key.as_str(), None),
        }));
        let diagnose: Vec<TxnOp> = targets
            .iter()
            .map(|t| TxnOp::get(t.key.as_str(), None))
            .collect();
        let txn = Txn::new()
            .when(compares)
            .and_then(deletes)
            .or_else(diagnose);
        let mut kv = self.etcd().kv_client();
        let response = self.call("delete", kv.txn(txn)).await?;
        if response.succeeded() {
            return Ok(response.header().map_or(0, |h| h.revision()));
        }
        let found = found_kvs(&response.op_responses());
        for (target, found) in targets.into_iter().zip(found) {
            match (found, target.expected) {
                (None, _) => return Err(Error::NotFound(target.object)),
                (Some(kv), Some(expected)) if kv.mod_revision != expected => {
                    return Err(Error::Conflict {
                        object: target.object,
                        expected,
                    });
                }
                _ => {}
            }
        }
        Err(Error::Request {
            op: "delete",
            message: "transaction failed without a failed condition".into(),
        })
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
        match (write.expected, mod_revision) {
            (Expected::Absent { .. }, Some(_)) => return Error::AlreadyExists(object),
            (Expected::ModRevision(_), None) => return Error::NotFound(object),
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
}

/// For each `get` in a transaction's responses, what it found.
fn found_kvs(responses: &[TxnOpResponse]) -> Vec<Option<FoundKv>> {
    responses
        .iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(get) => Some(get.kvs().first().map(|kv| FoundKv {
                create_revision: kv.create_revision(),
                mod_revision: kv.mod_revision(),
            })),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("/visor/apps/"), b"/visor/apps0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
