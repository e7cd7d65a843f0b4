//! The embedded registry's requests as etcd answers them: the functional
//! core the gRPC services call under the single writer.
//!
//! KV requests (range, put, delete, txn, compact) and the lease table
//! (grant, revoke, keep-alive, time-to-live, expiry) act on the MVCC index
//! ([`Store`]) and return the response body and what changed, so the shell
//! can make the change durable, then answer and notify watchers. Time is an
//! input (`now`), never read here. Semantics follow etcd's `apply.go`,
//! `kvstore_txn.go` and `lessor.go`: a transaction's path is decided by its
//! compares before any of its operations run; its reads see its own earlier
//! writes; a branch never writes a key twice; a revision is spent only by a
//! transaction that changes something.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use etcd_client::proto::{
    PbCompare, PbDeleteRequest, PbDeleteResponse, PbKeyValue, PbPutRequest, PbPutResponse,
    PbRangeRequest, PbRangeResponse, PbResponseOp, PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse,
    PbTxnRequest, PbTxnRequestOp, PbTxnResponse,
};
use etcd_client::{CompareOp, SortOrder, SortTarget};

use super::error::RequestError;
use super::mvcc::{Changes, Key, KeyRange, Revision, RevisionError, Store, Write};

/// The most operations in one branch of a transaction (etcd's
/// `--max-txn-ops` default).
pub const MAX_TXN_OPS: usize = 128;
/// The longest TTL a lease may be granted (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// The shortest TTL a lease is granted, whatever is asked. etcd raises a
/// TTL to outlast a leader election (1.5 election timeouts: 2 s by
/// default); a single node has no election to outlast, so only a TTL below
/// one second is raised.
pub const MIN_LEASE_TTL: i64 = 1;

/// A granted lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The TTL granted, in seconds.
    pub ttl: i64,
    /// When it expires unless kept alive.
    pub expires: Instant,
    /// The keys attached to it.
    pub keys: BTreeSet<Key>,
}

/// The registry's whole state: the key index and the lease table.
#[derive(Debug, Clone)]
pub struct State {
    store: Store,
    leases: BTreeMap<i64, Lease>,
    /// The last lease id handed out when the client asked for none.
    last_lease_id: i64,
}

impl Default for State {
    fn default() -> Self {
        Self::new(Store::new())
    }
}

impl State {
    /// A state over `store` with no leases.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            leases: BTreeMap::new(),
            last_lease_id: 0,
        }
    }

    /// The key index.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The lease table.
    pub fn leases(&self) -> &BTreeMap<i64, Lease> {
        &self.leases
    }

    /// A range read (outside a transaction).
    pub fn range(&self, request: &PbRangeRequest) -> Result<PbRangeResponse, RequestError> {
        range(&self.store, self.store.revision(), request)
    }

    /// A range read at `visible`, the newest revision readers may see (a
    /// batch being made durable is newer).
    pub fn range_visible(
        &self,
        request: &PbRangeRequest,
        visible: i64,
    ) -> Result<PbRangeResponse, RequestError> {
        if request.revision > visible {
            return Err(RevisionError::Future.into());
        }
        range(&self.store, visible, request)
    }

    /// A put.
    pub fn put(
        &mut self,
        request: &PbPutRequest,
    ) -> Result<(PbPutResponse, Changes), RequestError> {
        check_put(request)?;
        self.check_put_in_store(request)?;
        let mut write = self.store.write();
        let response = put(&mut write, request)?;
        Ok((response, {
            let changes = write.commit();
            self.attach(changes)
        }))
    }

    /// A delete of a key or a range.
    pub fn delete(
        &mut self,
        request: &PbDeleteRequest,
    ) -> Result<(PbDeleteResponse, Changes), RequestError> {
        if request.key.is_empty() {
            return Err(RequestError::EmptyKey);
        }
        let mut write = self.store.write();
        let response = delete(&mut write, request);
        Ok((response, {
            let changes = write.commit();
            self.attach(changes)
        }))
    }

    /// A transaction: validated whole, its path chosen by its compares, then
    /// every operation on that path applied in order.
    pub fn txn(
        &mut self,
        request: &PbTxnRequest,
    ) -> Result<(PbTxnResponse, Changes), RequestError> {
        check_txn(request)?;
        let path = choose_path(&self.store, request);
        self.check_path(request, &path)?;
        let mut write = self.store.write();
        let mut path = path.into_iter();
        let response = apply_txn(&mut write, request, &mut path)?;
        Ok((response, {
            let changes = write.commit();
            self.attach(changes)
        }))
    }

    /// Compacts history at `revision`, returning where the dropped records
    /// were.
    pub fn compact(&mut self, revision: i64) -> Result<Vec<Revision>, RequestError> {
        Ok(self.store.compact(revision)?)
    }

    /// Grants a lease of `ttl` seconds as `id` (0: one chosen here).
    /// Returns the id and the TTL granted.
    pub fn grant(&mut self, id: i64, ttl: i64, now: Instant) -> Result<(i64, i64), RequestError> {
        if ttl > MAX_LEASE_TTL {
            return Err(RequestError::LeaseTtlTooLarge);
        }
        let id = match id {
            0 => self.next_lease_id(),
            id if self.leases.contains_key(&id) => return Err(RequestError::LeaseExists),
            id => id,
        };
        let ttl = ttl.max(MIN_LEASE_TTL);
        self.restore_lease(id, ttl, now);
        Ok((id, ttl))
    }

    /// Restores a lease read back from the durable log, as granted `now`.
    pub fn restore_lease(&mut self, id: i64, ttl: i64, now: Instant) {
        let keys = self
            .leases
            .remove(&id)
            .map(|lease| lease.keys)
            .unwrap_or_default();
        self.leases.insert(
            id,
            Lease {
                ttl,
                expires: now + seconds(ttl),
                keys,
            },
        );
        self.last_lease_id = self.last_lease_id.max(id);
    }

    /// Revokes lease `id`, deleting its keys at one revision.
    pub fn revoke(&mut self, id: i64) -> Result<Changes, RequestError> {
        let lease = self.leases.remove(&id).ok_or(RequestError::LeaseNotFound)?;
        let mut write = self.store.write();
        // In key order, as etcd deletes them.
        for key in &lease.keys {
            write.delete(KeyRange::new(key, &[]));
        }
        Ok({
            let changes = write.commit();
            self.attach(changes)
        })
    }

    /// Moves each changed key to the lease it is now attached to.
    fn attach(&mut self, changes: Changes) -> Changes {
        for event in &changes.events {
            if let Some(prev) = &event.prev_kv {
                detach(&mut self.leases, prev.lease, &prev.key);
            }
            let put = event.r#type == etcd_client::EventType::Put as i32;
            if let Some(kv) = event.kv.as_ref().filter(|_| put)
                && let Some(lease) = self.leases.get_mut(&kv.lease)
            {
                lease.keys.insert(kv.key.clone());
            }
        }
        changes
    }

    /// Renews lease `id` for its whole TTL from `now`; returns that TTL, or
    /// `None` for a lease that does not exist.
    pub fn keep_alive(&mut self, id: i64, now: Instant) -> Option<i64> {
        let lease = self.leases.get_mut(&id)?;
        lease.expires = now + seconds(lease.ttl);
        Some(lease.ttl)
    }

    /// The seconds left on lease `id` (etcd truncates), with its granted
    /// TTL and keys.
    pub fn time_to_live(&self, id: i64, now: Instant) -> Option<(i64, &Lease)> {
        let lease = self.leases.get(&id)?;
        let left = lease.expires.saturating_duration_since(now).as_secs();
        Some((i64::try_from(left).unwrap_or(i64::MAX), lease))
    }

    /// The leases expired at `now`, soonest first.
    pub fn expired(&self, now: Instant) -> Vec<i64> {
        let mut expired: Vec<(Instant, i64)> = self
            .leases
            .iter()
            .filter(|(_, lease)| lease.expires <= now)
            .map(|(id, lease)| (lease.expires, *id))
            .collect();
        expired.sort();
        expired.into_iter().map(|(_, id)| id).collect()
    }

    /// The next expiry, to sleep until.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.leases.values().map(|lease| lease.expires).min()
    }

    /// Attaches a restored key to its lease (the durable log holds leases
    /// and keys apart).
    pub fn restore_attachments(&mut self) {
        let revision = self.store.revision();
        let attached: Vec<(i64, Key)> = self
            .store
            .range(KeyRange::new(&[0], &[0]), revision)
            .filter(|kv| kv.lease != 0)
            .map(|kv| (kv.lease, kv.key.clone()))
            .collect();
        for (id, key) in attached {
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.keys.insert(key);
            }
        }
    }

    fn next_lease_id(&mut self) -> i64 {
        loop {
            self.last_lease_id = self.last_lease_id.wrapping_add(1).max(1);
            if !self.leases.contains_key(&self.last_lease_id) {
                return self.last_lease_id;
            }
        }
    }

    /// What a put needs of the state before it writes: its lease exists,
    /// and the key exists where the value or lease is kept.
    fn check_put_in_store(&self, request: &PbPutRequest) -> Result<(), RequestError> {
        if (request.ignore_value || request.ignore_lease) && self.store.get(&request.key).is_none()
        {
            return Err(RequestError::KeyNotFound);
        }
        if request.lease != 0 && !self.leases.contains_key(&request.lease) {
            return Err(RequestError::LeaseNotFound);
        }
        Ok(())
    }

    /// Checks every put on a transaction's chosen path before anything is
    /// written, so that a refused transaction changes nothing.
    fn check_path(&self, request: &PbTxnRequest, path: &[bool]) -> Result<(), RequestError> {
        let mut path = path.iter().copied();
        self.check_branch(request, &mut path)
    }

    fn check_branch(
        &self,
        request: &PbTxnRequest,
        path: &mut impl Iterator<Item = bool>,
    ) -> Result<(), RequestError> {
        let branch = if path.next().unwrap_or(false) {
            &request.success
        } else {
            &request.failure
        };
        for op in branch {
            match &op.request {
                Some(PbTxnOpRequest::RequestPut(put)) => {
                    self.check_put_in_store(put)?;
                }
                Some(PbTxnOpRequest::RequestRange(range)) => check_range(&self.store, range)?,
                Some(PbTxnOpRequest::RequestTxn(txn)) => self.check_branch(txn, path)?,
                _ => {}
            }
        }
        Ok(())
    }
}

fn seconds(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

/// Checks a put on its own: a key, and no value or lease given where it is
/// to be kept.
fn check_put(request: &PbPutRequest) -> Result<(), RequestError> {
    if request.key.is_empty() {
        return Err(RequestError::EmptyKey);
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(RequestError::ValueProvided);
    }
    if request.ignore_lease && request.lease != 0 {
        return Err(RequestError::LeaseProvided);
    }
    Ok(())
}

/// Checks a range inside a transaction before anything is written: its
/// revision readable, its sort options known.
fn check_range(store: &Store, request: &PbRangeRequest) -> Result<(), RequestError> {
    if request.revision > 0 {
        store.readable(request.revision)?;
    }
    sort_options(request)?;
    Ok(())
}

fn sort_options(request: &PbRangeRequest) -> Result<(SortOrder, SortTarget), RequestError> {
    let order = SortOrder::try_from(request.sort_order)
        .map_err(|_| RequestError::Invalid("unknown sort order"))?;
    let target = SortTarget::try_from(request.sort_target)
        .map_err(|_| RequestError::Invalid("unknown sort target"))?;
    Ok((order, target))
}

/// A range at the store's view `current` (a transaction's own, inside one).
fn range(
    store: &Store,
    current: i64,
    request: &PbRangeRequest,
) -> Result<PbRangeResponse, RequestError> {
    let revision = match request.revision {
        r if r <= 0 => current,
        r => store.readable(r)?,
    };
    let (order, target) = sort_options(request)?;
    let range = KeyRange::new(&request.key, &request.range_end);
    let matching: Vec<&PbKeyValue> = store.range(range, revision).collect();
    let count = i64::try_from(matching.len()).unwrap_or(i64::MAX);
    if request.count_only {
        return Ok(PbRangeResponse {
            count,
            ..PbRangeResponse::default()
        });
    }
    let mut kvs: Vec<PbKeyValue> = matching
        .into_iter()
        .filter(|kv| {
            (request.min_mod_revision == 0 || kv.mod_revision >= request.min_mod_revision)
                && (request.max_mod_revision == 0 || kv.mod_revision <= request.max_mod_revision)
                && (request.min_create_revision == 0
                    || kv.create_revision >= request.min_create_revision)
                && (request.max_create_revision == 0
                    || kv.create_revision <= request.max_create_revision)
        })
        .cloned()
        .collect();
    // Keys come in ascending order; another target sorts ascending unless told.
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => SortOrder::None,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    if order != SortOrder::None {
        kvs.sort_by(|a, b| {
            let ordering = match target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            };
            if order == SortOrder::Descend {
                ordering.reverse()
            } else {
                ordering
            }
        });
    }
    let limit = usize::try_from(request.limit).unwrap_or(0);
    let more = limit > 0 && kvs.len() > limit;
    if more {
        kvs.truncate(limit);
    }
    if request.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(PbRangeResponse {
        kvs,
        more,
        count,
        ..PbRangeResponse::default()
    })
}

/// A put within `write`, already checked.
fn put(write: &mut Write<'_>, request: &PbPutRequest) -> Result<PbPutResponse, RequestError> {
    let prev = write.current(&request.key).cloned();
    let value = match (&prev, request.ignore_value) {
        (Some(prev), true) => prev.value.clone(),
        (None, true) => return Err(RequestError::KeyNotFound),
        (_, false) => request.value.clone(),
    };
    let lease = match (&prev, request.ignore_lease) {
        (Some(prev), true) => prev.lease,
        (None, true) => return Err(RequestError::KeyNotFound),
        (_, false) => request.lease,
    };
    let prev = write.put(&request.key, value, lease);
    Ok(PbPutResponse {
        prev_kv: prev.filter(|_| request.prev_kv),
        ..PbPutResponse::default()
    })
}

/// A delete within `write`.
fn delete(write: &mut Write<'_>, request: &PbDeleteRequest) -> PbDeleteResponse {
    let deleted = write.delete(KeyRange::new(&request.key, &request.range_end));
    PbDeleteResponse {
        deleted: i64::try_from(deleted.len()).unwrap_or(i64::MAX),
        prev_kvs: if request.prev_kv { deleted } else { Vec::new() },
        ..PbDeleteResponse::default()
    }
}

fn detach(leases: &mut BTreeMap<i64, Lease>, id: i64, key: &[u8]) {
    if let Some(lease) = leases.get_mut(&id) {
        lease.keys.remove(key);
    }
}

/// Checks a transaction's shape before anything runs: the operation
/// limits, each put on its own, and no key written twice on one path.
fn check_txn(request: &PbTxnRequest) -> Result<(), RequestError> {
    if request.compare.len() > MAX_TXN_OPS
        || request.success.len() > MAX_TXN_OPS
        || request.failure.len() > MAX_TXN_OPS
    {
        return Err(RequestError::TooManyOps);
    }
    for compare in &request.compare {
        if compare.key.is_empty() {
            return Err(RequestError::EmptyKey);
        }
    }
    for op in request.success.iter().chain(&request.failure) {
        match &op.request {
            Some(PbTxnOpRequest::RequestPut(put)) => check_put(put)?,
            Some(PbTxnOpRequest::RequestDeleteRange(delete)) if delete.key.is_empty() => {
                return Err(RequestError::EmptyKey);
            }
            Some(PbTxnOpRequest::RequestTxn(txn)) => check_txn(txn)?,
            _ => {}
        }
    }
    written(&request.success)?;
    written(&request.failure)?;
    Ok(())
}

/// What one branch writes: the keys it puts and the ranges it deletes, or
/// [`RequestError::DuplicateKey`] where a key is put twice or put where
/// the branch deletes (etcd's `checkIntervals`, whose ranges are plain
/// byte intervals: a delete "from a key on" covers no put). A nested
/// transaction's two branches may put the same key, since only one runs.
fn written(branch: &[PbTxnRequestOp]) -> Result<Written, RequestError> {
    let mut own = Written::default();
    for op in branch {
        if let Some(PbTxnOpRequest::RequestDeleteRange(delete)) = &op.request {
            own.deletes
                .push((delete.key.clone(), delete.range_end.clone()));
        }
    }
    for op in branch {
        let Some(PbTxnOpRequest::RequestTxn(txn)) = &op.request else {
            continue;
        };
        let success = written(&txn.success)?;
        let failure = written(&txn.failure)?;
        for key in &success.puts {
            own.add_put(key)?;
        }
        for key in &failure.puts {
            if success.puts.contains(key) {
                continue;
            }
            own.add_put(key)?;
        }
        own.deletes.extend(success.deletes);
        own.deletes.extend(failure.deletes);
    }
    for op in branch {
        if let Some(PbTxnOpRequest::RequestPut(put)) = &op.request {
            own.add_put(&put.key)?;
        }
    }
    Ok(own)
}

/// The keys a branch puts and the ranges it deletes.
#[derive(Debug, Default)]
struct Written {
    puts: BTreeSet<Key>,
    deletes: Vec<(Key, Key)>,
}

impl Written {
    fn add_put(&mut self, key: &[u8]) -> Result<(), RequestError> {
        let deleted = self.deletes.iter().any(|(start, end)| {
            if end.is_empty() {
                key == start.as_slice()
            } else {
                key >= start.as_slice() && key < end.as_slice()
            }
        });
        if deleted || !self.puts.insert(key.to_vec()) {
            return Err(RequestError::DuplicateKey);
        }
        Ok(())
    }
}

/// The branches a transaction takes, in the order its operations run:
/// its own, then each nested transaction's on that branch, depth first.
/// All of them are decided on the state before the transaction.
fn choose_path(store: &Store, request: &PbTxnRequest) -> Vec<bool> {
    let mut path = Vec::new();
    choose(store, request, &mut path);
    path
}

fn choose(store: &Store, request: &PbTxnRequest, path: &mut Vec<bool>) {
    let succeeded = request.compare.iter().all(|compare| holds(store, compare));
    path.push(succeeded);
    let branch = if succeeded {
        &request.success
    } else {
        &request.failure
    };
    for op in branch {
        if let Some(PbTxnOpRequest::RequestTxn(txn)) = &op.request {
            choose(store, txn, path);
        }
    }
}

/// Whether `compare` holds for every key it names now. A value compared
/// on no key fails (nothing can equal a missing value); other targets
/// compare a missing key as zero.
fn holds(store: &Store, compare: &PbCompare) -> bool {
    let revision = store.revision();
    let kvs: Vec<&PbKeyValue> = store
        .range(KeyRange::new(&compare.key, &compare.range_end), revision)
        .collect();
    if kvs.is_empty() {
        if matches!(compare.target_union, Some(PbTargetUnion::Value(_))) {
            return false;
        }
        return compare_kv(compare, &PbKeyValue::default());
    }
    kvs.into_iter().all(|kv| compare_kv(compare, kv))
}

fn compare_kv(compare: &PbCompare, kv: &PbKeyValue) -> bool {
    let ordering = match &compare.target_union {
        Some(PbTargetUnion::Version(version)) => kv.version.cmp(version),
        Some(PbTargetUnion::CreateRevision(revision)) => kv.create_revision.cmp(revision),
        Some(PbTargetUnion::ModRevision(revision)) => kv.mod_revision.cmp(revision),
        Some(PbTargetUnion::Value(value)) => kv.value.as_slice().cmp(value.as_slice()),
        Some(PbTargetUnion::Lease(lease)) => kv.lease.cmp(lease),
        // A compare without a target compares nothing that could differ.
        None => std::cmp::Ordering::Equal,
    };
    match CompareOp::try_from(compare.result) {
        Ok(CompareOp::Equal) => ordering.is_eq(),
        Ok(CompareOp::NotEqual) => ordering.is_ne(),
        Ok(CompareOp::Greater) => ordering.is_gt(),
        Ok(CompareOp::Less) => ordering.is_lt(),
        Err(_) => false,
    }
}

/// Applies the transaction's chosen branch (and its nested ones, taking
/// their decisions from `path`).
fn apply_txn(
    write: &mut Write<'_>,
    request: &PbTxnRequest,
    path: &mut impl Iterator<Item = bool>,
) -> Result<PbTxnResponse, RequestError> {
    let succeeded = path.next().unwrap_or(false);
    let branch = if succeeded {
        &request.success
    } else {
        &request.failure
    };
    let mut responses = Vec::with_capacity(branch.len());
    for op in branch {
        let response = match &op.request {
            Some(PbTxnOpRequest::RequestRange(range_request)) => {
                let current = write.read_revision();
                PbTxnOpResponse::ResponseRange(range(write.store(), current, range_request)?)
            }
            Some(PbTxnOpRequest::RequestPut(put_request)) => {
                PbTxnOpResponse::ResponsePut(put(write, put_request)?)
            }
            Some(PbTxnOpRequest::RequestDeleteRange(delete_request)) => {
                PbTxnOpResponse::ResponseDeleteRange(delete(write, delete_request))
            }
            Some(PbTxnOpRequest::RequestTxn(txn)) => {
                PbTxnOpResponse::ResponseTxn(apply_txn(write, txn, path)?)
            }
            None => continue,
        };
        responses.push(PbResponseOp {
            response: Some(response),
        });
    }
    Ok(PbTxnResponse {
        succeeded,
        responses,
        ..PbTxnResponse::default()
    })
}
