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
        let (compare, put_options) = match expected {
            Expected::Absent { lease } => (
                Compare::create_revision(key, CompareOp::Equal, 0),
                lease.map(|id| PutOptions::new().with_lease(id)),
            ),
            // Updates keep whatever lease the key is bound to.
            Expected::ModRevision(revision) | Expected::Current(Some(revision)) => (
                Compare::mod_revision(key, CompareOp::Equal, revision),
                Some(PutOptions::new().with_ignore_lease()),
            ),
            Expected::Current(None) => (Compare::create_revision(key, CompareOp::Equal, 0), None),
        };
        let mut compares = vec![compare];
        compares.extend(
            requires
                .iter()
                .map(|r| Compare::version(r.key.as_str(), CompareOp::Greater, 0)),
        );
        let mut diagnose = vec![TxnOp::get(key, None)];
        diagnose.extend(requires.iter().map(|r| TxnOp::get(r.key.as_str(), None)));
        let mut success = vec![TxnOp::put(key, value.encode(), put_options)];
        if !matches!(expected, Expected::Absent { .. } | Expected::Current(None)) {
            // A replace does not know the key's create revision: read it back.
            success.push(TxnOp::get(key, None));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then(success)
            .or_else(diagnose);
        let mut kv = self.etcd().kv_client();
        let response = self.call("write", kv.txn(txn)).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        if response.succeeded() {
            let create_revision = response
                .op_responses()
                .iter()
                .find_map(|r| match r {
                    TxnOpResponse::Get(get) => get.kvs().first().map(KeyValue::create_revision),
                    _ => None,
                })
                .unwrap_or(revision);
            return Ok(Versioned {
                key: key.to_owned(),
                value,
                create_revision,
                mod_revision: revision,
                revision,
            });
        }
        let found = found_flags(&response.op_responses());
        let key_found = found.first().copied().unwrap_or(false);
        if let Some((missing, _)) = requires
            .iter()
            .zip(found.iter().skip(1))
            .find(|(_, found)| !**found)
        {
            return Err(Error::NotFound(missing.object.clone()));
        }
        Err(match (expected, key_found) {
            (Expected::Absent { .. }, _) => Error::AlreadyExists(object),
            (Expected::ModRevision(_), false) => Error::NotFound(object),
            (Expected::ModRevision(expected), true) => Error::Conflict { object, expected },
            (Expected::Current(expected), _) => Error::Conflict {
                object,
                expected: expected.unwrap_or(0),
            },
        })
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
        let compare = match expected {
            Some(revision) => Compare::mod_revision(key, CompareOp::Equal, revision),
            None => Compare::version(key, CompareOp::Greater, 0),
        };
        let mut deletes = vec![TxnOp::delete(key, None)];
        deletes.extend(cascade.iter().map(|target| match target {
            Cascade::Prefix(prefix) => TxnOp::delete(
                prefix.as_str(),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            ),
            Cascade::Key(key) => TxnOp::delete(key.as_str(), None),
        }));
        let txn = Txn::new()
            .when(vec![compare])
            .and_then(deletes)
            .or_else(vec![TxnOp::get(key, None)]);
        self.cas("delete", object, expected.unwrap_or(0), txn).await
    }

    /// Runs a single-key conditional transaction whose `else` branch reads the key,
    /// telling a missing object from a changed one. Returns the revision written at.
    async fn cas(
        &self,
        op: &'static str,
        object: ObjectRef,
        expected: i64,
        txn: Txn,
    ) -> Result<i64> {
        let mut kv = self.etcd().kv_client();
        let response = self.call(op, kv.txn(txn)).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        if response.succeeded() {
            return Ok(revision);
        }
        match found_flags(&response.op_responses()).first() {
            Some(true) => Err(Error::Conflict { object, expected }),
            _ => Err(Error::NotFound(object)),
        }
    }
}

/// For each `get` in a transaction's responses, whether it found the key.
fn found_flags(responses: &[TxnOpResponse]) -> Vec<bool> {
    responses
        .iter()
        .map(|r| matches!(r, TxnOpResponse::Get(get) if !get.kvs().is_empty()))
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
