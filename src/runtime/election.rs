//! Leader election for the singleton controller: the client-side recipe of
//! etcd's Go client (`client/v3/concurrency`), over KV, leases and watches
//! only, so it runs on any registry that serves those. It keeps the key
//! layout of etcd's server-side election (which runs the same recipe), so
//! candidates of either kind wait in one line.
//!
//! A campaign starts by granting a lease that is kept alive from that moment
//! on, so a standby waiting in line is as alive as the leader. Its candidate
//! key is `<name>/<lease id in lowercase hex>`, bound to that lease, with the
//! candidate's identity as value; the key with the lowest create revision
//! leads. A candidate waits for the newest key created before its own to be
//! deleted, then looks again, until none is left. Winning yields a
//! [`Leadership`]: its [`Fence`] (the leader key and the revision that created
//! it) makes every write of the leader conditional on still being the leader,
//! and its `lost` token is cancelled the moment leadership can no longer be
//! trusted — the lease missed its renew deadline or the leader key vanished —
//! so every leader-only loop stops at once.
//!
//! Invariants: a candidate is elected only once no key under the prefix
//! older than its own is left, and only while its own key still exists at
//! the revision that created it. A campaign that ends without a leadership
//! (cancelled, failed, its lease lost) revokes its lease before returning,
//! and so does a leadership that is given up, each within
//! [`RELEASE_TIMEOUT`]: a key left in line would make the next candidate
//! wait out its TTL.

use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::AbortOnDropHandle;

use crate::registry::backoff::{self, BackoffPolicy};
use crate::registry::{Error, Fence, Lease, Registry, Result};

/// How long giving a lease up may take. Best effort: a registry that does not
/// answer delays the next campaign, or the exit, only this long, and the
/// lease then expires after its TTL.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// A won election, until resigned or lost.
#[derive(Debug)]
pub struct Leadership {
    lease: Lease,
    fence: Fence,
    lost: CancellationToken,
    /// Cancels `lost` when the leadership is dropped without resigning.
    _lost_on_drop: DropGuard,
    key_watch: AbortOnDropHandle<()>,
}

/// Campaigns under `name` (the election prefix) as `identity` with a lease of
/// `ttl` whose renew deadline is `renew_deadline`; resolves once elected, or
/// with `None` once `cancel` is cancelled. See [`campaign_with_lease`].
pub async fn campaign(
    registry: &Registry,
    name: &str,
    identity: &str,
    ttl: Duration,
    renew_deadline: Duration,
    cancel: &CancellationToken,
) -> Result<Option<Leadership>> {
    let lease = Lease::grant_with_deadline(registry, ttl, renew_deadline).await?;
    campaign_with_lease(registry, name, identity, lease, cancel).await
}

/// Campaigns under `name` as `identity` with `lease`, already granted and
/// kept alive; resolves once elected, or with `None` once `cancel` is
/// cancelled. Unless elected, the lease is revoked before this returns (an
/// error included), so this candidate leaves the line at once instead of
/// holding a place until its lease expires.
///
/// A campaign on a lease whose key is already in line keeps that key's
/// place and sets its value to `identity`. Waiting outlives a broken watch
/// or an unreachable registry (resumed with backoff; the lease's renew
/// deadline is what ends it); any other failure fails the campaign, and so
/// does finding the candidate key gone once first in line.
pub async fn campaign_with_lease(
    registry: &Registry,
    name: &str,
    identity: &str,
    lease: Lease,
    cancel: &CancellationToken,
) -> Result<Option<Leadership>> {
    let lease_lost = lease.lost();
    // Waiting in line is not bounded by the request timeout: only the lease or `cancel` end it.
    let elected = tokio::select! {
        elected = elect(registry, name, identity, lease.id()) => elected,
        () = lease_lost.cancelled() => {
            Err(registry.unavailable("campaign", "the campaign's lease was lost while waiting"))
        }
        () = cancel.cancelled() => {
            lease.revoke_within(RELEASE_TIMEOUT).await?;
            return Ok(None);
        }
    };
    let fence = match elected {
        Ok(fence) => fence,
        Err(error) => {
            release(lease).await;
            return Err(error);
        }
    };
    let lost = lease.lost().child_token();
    let key_watch = AbortOnDropHandle::new(tokio::spawn(watch_leader_key(
        registry.clone(),
        fence.clone(),
        lost.clone(),
    )));
    Ok(Some(Leadership {
        lease,
        fence,
        _lost_on_drop: lost.clone().drop_guard(),
        lost,
        key_watch,
    }))
}

/// The recipe: puts the candidate key of `lease` in line under `name` and
/// waits until it is first; its fence.
async fn elect(registry: &Registry, name: &str, identity: &str, lease: i64) -> Result<Fence> {
    let prefix = format!("{name}/");
    let fence = enter_line(registry, &prefix, identity, lease).await?;
    wait_for_turn(registry, &prefix, &fence).await?;
    Ok(fence)
}

/// Creates the candidate key `<prefix><lease in hex>` bound to `lease`,
/// holding `identity`, unless this lease has a key in line already, which
/// keeps its place (its create revision) and is given `identity` as value.
async fn enter_line(
    registry: &Registry,
    prefix: &str,
    identity: &str,
    lease: i64,
) -> Result<Fence> {
    let key = format!("{prefix}{lease:x}");
    let refused = |message: &str| Error::Request {
        op: "campaign",
        message: message.to_owned(),
    };
    let put = |key: &str| TxnOp::put(key, identity, Some(PutOptions::new().with_lease(lease)));
    let mut kv = registry.kv_client();
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([put(&key)])
        .or_else([TxnOp::get(key.as_str(), None)]);
    let response = registry.call_write("campaign", kv.txn(txn)).await?;
    if response.succeeded() {
        // Created by this transaction: at its revision.
        let create_revision = response
            .header()
            .map(|header| header.revision())
            .ok_or_else(|| refused("the registry created the candidate key without a revision"))?;
        return Ok(Fence {
            key,
            create_revision,
        });
    }
    let found = response
        .op_responses()
        .into_iter()
        .find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().cloned(),
            _ => None,
        })
        .ok_or_else(|| refused("the registry found the candidate key but did not return it"))?;
    let fence = Fence {
        key,
        create_revision: found.create_revision(),
    };
    if found.value() != identity.as_bytes() {
        let txn = Txn::new()
            .when([Compare::create_revision(
                fence.key.as_str(),
                CompareOp::Equal,
                fence.create_revision,
            )])
            .and_then([put(&fence.key)]);
        let response = registry.call_write("campaign", kv.txn(txn)).await?;
        if !response.succeeded() {
            return Err(refused(
                "the candidate key was deleted while joining the line",
            ));
        }
    }
    Ok(fence)
}

/// Waits until no key under `prefix` created before `fence`'s is left:
/// watches the newest of them until it is deleted, then reads again. Fails
/// if `fence`'s own key is found gone (deleted while in line, by an operator
/// say: nothing would be left to fence with). A read or watch that breaks
/// in a way that may pass (an unreachable registry, a dropped or compacted
/// watch) is resumed, reading first, with backoff.
async fn wait_for_turn(registry: &Registry, prefix: &str, fence: &Fence) -> Result<()> {
    let mut backoff = WATCH_RETRY.start();
    loop {
        let started = Instant::now();
        let error = match place_in_line(registry, prefix, fence).await {
            Ok(Place::First) => return Ok(()),
            Ok(Place::Gone) => {
                return Err(Error::Request {
                    op: "campaign",
                    message: format!(
                        "the candidate key {} was deleted while waiting in line",
                        fence.key
                    ),
                });
            }
            Ok(Place::Behind {
                key,
                create_revision,
                read_at,
            }) => {
                tracing::debug!(candidate = %fence.key, ahead = %key, "waiting in line");
                let from = read_at + 1;
                match watch_until_gone(registry, "campaign watch", &key, create_revision, from)
                    .await
                {
                    KeyWatch::Gone => continue,
                    KeyWatch::Broken(error) => error,
                }
            }
            Err(error) => error,
        };
        if !error.is_retryable() {
            return Err(error);
        }
        let delay = backoff.next_delay(started.elapsed());
        tracing::info!(candidate = %fence.key, %error, ?delay, "waiting in line interrupted; resuming");
        // The campaign ends this wait by dropping it (cancelled, lease lost).
        tokio::time::sleep(delay).await;
    }
}

/// Where a candidate stands in line, as of one read.
enum Place {
    /// No key created before the candidate's is left: it leads.
    First,
    /// `key`, created at `create_revision`, is the newest key created
    /// before the candidate's, as of revision `read_at`.
    Behind {
        key: String,
        create_revision: i64,
        read_at: i64,
    },
    /// The candidate's key is gone, or belongs to another campaign.
    Gone,
}

/// Reads, at one revision, whether `fence`'s key is still there and the
/// newest key under `prefix` created before it.
async fn place_in_line(registry: &Registry, prefix: &str, fence: &Fence) -> Result<Place> {
    let keys_only = GetOptions::new().with_keys_only();
    let ahead = GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_max_create_revision(fence.create_revision - 1)
        .with_sort(SortTarget::Create, SortOrder::Descend)
        .with_limit(1);
    let txn = Txn::new().and_then([
        TxnOp::get(fence.key.as_str(), Some(keys_only)),
        TxnOp::get(prefix, Some(ahead)),
    ]);
    let mut kv = registry.kv_client();
    let response = registry.call("campaign get", kv.txn(txn)).await?;
    let read_at = response
        .header()
        .map_or(fence.create_revision, |h| h.revision());
    let mut reads = response.op_responses().into_iter().map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    });
    let ours = reads
        .next()
        .flatten()
        .is_some_and(|kv| kv.create_revision() == fence.create_revision);
    // etcd reads a bound of 0 as none: a key created at revision 1 has nothing ahead.
    let ahead = reads
        .next()
        .flatten()
        .filter(|kv| kv.create_revision() < fence.create_revision);
    Ok(match (ours, ahead) {
        (false, _) => Place::Gone,
        (true, None) => Place::First,
        (true, Some(kv)) => Place::Behind {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            create_revision: kv.create_revision(),
            read_at,
        },
    })
}

/// Revokes the lease of a campaign that failed; a failure is only logged,
/// since the campaign's own error is what the caller needs to see.
async fn release(lease: Lease) {
    let id = lease.id();
    if let Err(error) = lease.revoke_within(RELEASE_TIMEOUT).await {
        tracing::warn!(lease = id, %error, "cannot revoke the failed campaign's lease; it expires after its TTL");
    }
}

/// The identity of the current leader under `name`, if any: the value of
/// the oldest key in line.
pub async fn current_leader(registry: &Registry, name: &str) -> Result<Option<String>> {
    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1);
    let mut kv = registry.kv_client();
    let read = registry
        .call("leader", kv.get(format!("{name}/"), Some(options)))
        .await?;
    Ok(read
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
}

impl Leadership {
    /// The fencing token every leader write must carry.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Cancelled once leadership is lost: stop acting at once.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// The lease behind the campaign.
    pub fn lease_id(&self) -> i64 {
        self.lease.id()
    }

    /// Gives leadership up, however the term ended (lost, failed, or shut
    /// down): stops the key watch and revokes the lease within
    /// [`RELEASE_TIMEOUT`], which deletes the leader key in the same step,
    /// so the next candidate in line is elected at once instead of after
    /// the TTL. A lease already gone counts as revoked.
    pub async fn resign(self) -> Result<()> {
        self.lost.cancel();
        self.key_watch.abort();
        self.lease.revoke_within(RELEASE_TIMEOUT).await
    }
}

/// Cancels `lost` when the leader key is deleted or re-created (someone else's
/// campaign, or an operator with `etcdctl`): the fence no longer holds.
///
/// A watch that breaks (a registry restart, a dropped connection) is resumed
/// after checking that the key is still ours, with backoff; while the
/// registry cannot be reached the lease's renew deadline is what ends the
/// leadership, not the broken watch.
async fn watch_leader_key(registry: Registry, fence: Fence, lost: CancellationToken) {
    let mut backoff = WATCH_RETRY.start();
    loop {
        let started = Instant::now();
        let outcome = tokio::select! {
            outcome = watch_once(&registry, &fence) => outcome,
            () = lost.cancelled() => return,
        };
        match outcome {
            KeyWatch::Gone => {
                tracing::warn!(%fence, "leader key removed or replaced; leadership lost");
                lost.cancel();
                return;
            }
            KeyWatch::Broken(error) => {
                let delay = backoff.next_delay(started.elapsed());
                tracing::info!(%fence, %error, ?delay, "leader key watch interrupted; resuming");
                if !backoff::sleep(delay, &lost).await {
                    return;
                }
            }
        }
    }
}

/// How a broken watch, of the leader key or of the key ahead in line, is
/// resumed: from 50ms doubling to 2s, and from 50ms again after a watch that
/// ran for 30s.
const WATCH_RETRY: BackoffPolicy = BackoffPolicy {
    min: Duration::from_millis(50),
    max: Duration::from_secs(2),
    healthy: Duration::from_secs(30),
};

/// How one watch of a key ended.
enum KeyWatch {
    /// The key is gone or belongs to another campaign.
    Gone,
    /// The watch could not be set up or broke; the key may still be there.
    Broken(Error),
}

/// Checks that the key is still ours, then watches it from just after that
/// read until it changes or the watch breaks.
async fn watch_once(registry: &Registry, fence: &Fence) -> KeyWatch {
    let mut kv = registry.kv_client();
    let read = match registry
        .call("leader key get", kv.get(fence.key.as_str(), None))
        .await
    {
        Ok(read) => read,
        Err(error) => return KeyWatch::Broken(error),
    };
    let ours = read
        .kvs()
        .first()
        .is_some_and(|kv| kv.create_revision() == fence.create_revision);
    if !ours {
        return KeyWatch::Gone;
    }
    let from = read
        .header()
        .map_or(fence.create_revision, |h| h.revision())
        + 1;
    watch_until_gone(
        registry,
        "leader key watch",
        &fence.key,
        fence.create_revision,
        from,
    )
    .await
}

/// Watches `key`, created at `create_revision`, from revision `from` until
/// it is deleted or re-created, or the watch breaks. Rewrites of the same
/// key (a barrier, a new value) are not a change.
async fn watch_until_gone(
    registry: &Registry,
    op: &'static str,
    key: &str,
    create_revision: i64,
    from: i64,
) -> KeyWatch {
    let options = WatchOptions::new().with_start_revision(from);
    let mut watch = registry.watch_client();
    let mut stream = match watch.watch(key, Some(options)).await {
        Ok(stream) => stream,
        Err(error) => return KeyWatch::Broken(registry.error(op, error)),
    };
    loop {
        match stream.message().await {
            Ok(Some(response)) => {
                // A compacted start point hides what happened: read again.
                if response.canceled() || response.compact_revision() > 0 {
                    let reason = response.cancel_reason().to_owned();
                    return KeyWatch::Broken(registry.unavailable(op, &reason));
                }
                let gone = response.events().iter().any(|event| {
                    event.event_type() == EventType::Delete
                        || event
                            .kv()
                            .is_some_and(|kv| kv.create_revision() != create_revision)
                });
                if gone {
                    return KeyWatch::Gone;
                }
            }
            Ok(None) => {
                return KeyWatch::Broken(registry.unavailable(op, "the watch stream ended"));
            }
            Err(error) => return KeyWatch::Broken(registry.error(op, error)),
        }
    }
}
