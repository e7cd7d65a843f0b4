//! Typed, versioned objects on etcd keys: codecs, reads, and paginated
//! listings at one revision; conditional writes live in `write`.
//!
//! Invariant: a listing is one consistent snapshot (every page is read at the
//! revision of the first), its pages are bounded by size as well as by count
//! (values of 1 MiB make pages of a few keys), and a value that does not
//! decode or a key that does not fit the layout is reported in `skipped`,
//! never fatal.

mod write;

pub(crate) use write::{Cascade, Delete, Expected, Requires, Write};

use std::fmt;

use etcd_client::{GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse};
use visor_controllers::{
    App, Deployment, HandedHook, HookInfo, Host, Instance, Notification, ProcType, Relation,
    RelationState, Revision, RolloutStatus, Scale, SchemaVersion, Sequence, ServiceDef,
    ServiceEndpoint, ServiceStatus, Ticket, TrackedEndpoint, UnitSettings,
};

use super::client::Registry;
use super::error::{Error, ObjectRef, Result};
use super::keys::Kind;

/// Most keys a listing page asks for.
const PAGE_KEYS: i64 = 1000;
/// Keys the first page of a listing asks for, before sizes are known: a few
/// large values (etcd takes values up to its request limit, 1.5 MiB by
/// default) must not make one huge first page.
const FIRST_PAGE_KEYS: i64 = 16;
/// What a listing page should weigh: later pages ask for as many keys as fit
/// at the sizes seen so far, so large values make small pages.
const PAGE_BYTES: usize = 4 << 20;
/// What a key-value costs in a response beyond its key and value (revisions,
/// version, lease, framing), roughly.
const KV_OVERHEAD_BYTES: usize = 32;

/// How many keys the next page of a listing asks for: pages are bounded by
/// size as well as by count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PageSize {
    limit: i64,
}

impl PageSize {
    fn first() -> Self {
        Self {
            limit: FIRST_PAGE_KEYS,
        }
    }

    /// The size of the page after one of `keys` key-values weighing `bytes`.
    fn after(self, keys: usize, bytes: usize) -> Self {
        if keys == 0 {
            return self;
        }
        let per_key = (bytes / keys).max(1);
        let fit = i64::try_from(PAGE_BYTES / per_key).unwrap_or(PAGE_KEYS);
        Self {
            limit: fit.clamp(1, PAGE_KEYS),
        }
    }
}

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
        super::keys::last_segment(&self.key)
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

/// How a value is written: JSON documents, or raw strings for environment
/// variables (so `etcdctl put /visor/env/web/PORT 80` just works).
pub trait Encode {
    /// The bytes stored for `self`.
    fn encode(&self) -> Vec<u8>;
}

/// How a stored value is read back.
pub trait Codec: Encode + Sized {
    /// The value stored as `bytes`, or why they are not one.
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

macro_rules! json_codec {
    ($($ty:ty),* $(,)?) => {$(
        impl Encode for $ty {
            fn encode(&self) -> Vec<u8> {
                // Plain structs with string-keyed maps always serialize.
                serde_json::to_vec(self).expect("invariant: registry documents always serialize to JSON")
            }
        }
        impl Codec for $ty {
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
    Deployment,
    RolloutStatus,
    Host,
    Instance,
    Ticket,
    SchemaVersion,
    Relation,
    UnitSettings,
    RelationState,
    HookInfo,
    HandedHook,
    ServiceDef,
    ServiceEndpoint,
    TrackedEndpoint,
    ServiceStatus,
    Notification,
    Sequence
);

impl Encode for String {
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl Codec for String {
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
        let mut kv = self.kv_client();
        let response = self.call("get", kv.get(key, None)).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        match response.kvs().first() {
            Some(kv) => Ok((Some(decode(kind, kv, revision)?), revision)),
            None => Ok((None, revision)),
        }
    }

    /// Reads `keys`, each if present, at one revision and in one round trip
    /// (a read-only transaction of gets): what each holds, in order, and the
    /// revision. For callers that decode objects of several kinds together.
    pub(crate) async fn read_at_one_revision(
        &self,
        keys: &[&str],
    ) -> Result<(Vec<Option<KeyValue>>, i64)> {
        let mut kv = self.kv_client();
        let reads = Txn::new().and_then(
            keys.iter()
                .map(|key| TxnOp::get(*key, None))
                .collect::<Vec<_>>(),
        );
        let response = self.call("get", kv.txn(reads)).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let found = response
            .op_responses()
            .into_iter()
            .map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().cloned(),
                _ => None,
            })
            .collect();
        Ok((found, revision))
    }

    /// Reads one object as it was at `revision`, if it existed then (fails
    /// once compaction removed that history).
    pub(crate) async fn find_object_at<T: Codec>(
        &self,
        kind: Kind,
        key: &str,
        revision: i64,
    ) -> Result<Option<Versioned<T>>> {
        let mut kv = self.kv_client();
        let options = GetOptions::new().with_revision(revision);
        let response = self.call("get", kv.get(key, Some(options))).await?;
        response
            .kvs()
            .first()
            .map(|kv| decode(kind, kv, revision))
            .transpose()
            .map_err(Error::from)
    }

    /// The precondition "the key is as it is now" (absent, or at its current mod
    /// revision), for writes that replace whatever is there but must not race.
    pub(crate) async fn expect_current(&self, key: &str) -> Result<Expected> {
        let mut kv = self.kv_client();
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
        let mut kv = self.kv_client();
        let end = prefix_end(prefix);
        let mut start = prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut page = PageSize::first();
        let mut listing = Listing {
            items: Vec::new(),
            revision: 0,
            skipped: Vec::new(),
        };
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(page.limit);
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
            let bytes = response
                .kvs()
                .iter()
                .map(|kv| kv.key().len() + kv.value().len() + KV_OVERHEAD_BYTES)
                .sum();
            page = page.after(response.kvs().len(), bytes);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_bounded_by_size_as_well_as_by_count() {
        let first = PageSize::first();
        assert_eq!(first.limit, FIRST_PAGE_KEYS);
        // Small documents: as many keys as a page may hold.
        assert_eq!(first.after(16, 16 * 300).limit, PAGE_KEYS);
        // 1 MiB values: four to a page.
        assert_eq!(first.after(16, 16 << 20).limit, 4);
        // Values larger than a page: one at a time, never none.
        assert_eq!(first.after(2, 20 << 20).limit, 1);
        // An empty page tells nothing about sizes.
        assert_eq!(first.after(0, 0), first);
    }

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("/visor/apps/"), b"/visor/apps0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
