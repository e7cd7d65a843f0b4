//! Leader election for the singleton controller, on etcd's election API.
//!
//! A campaign starts by granting a lease that is kept alive from that moment
//! on, so a standby waiting in line is as alive as the leader. Winning yields a
//! [`Leadership`]: its [`Fence`] (the leader key and the revision that created
//! it) makes every write of the leader conditional on still being the leader,
//! and its `lost` token is cancelled the moment leadership can no longer be
//! trusted — the lease missed its renew deadline or the leader key vanished —
//! so every leader-only loop stops at once.
//!
//! Invariant: a campaign that ends without a leadership (cancelled, failed,
//! its lease lost) revokes its lease before returning, and so does a
//! leadership that is given up, each within [`RELEASE_TIMEOUT`]: a key left
//! in line would make the next candidate wait out its TTL.

use std::time::Duration;

use etcd_client::{EventType, LeaderKey, WatchOptions};
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
pub async fn campaign_with_lease(
    registry: &Registry,
    name: &str,
    identity: &str,
    lease: Lease,
    cancel: &CancellationToken,
) -> Result<Option<Leadership>> {
    let mut election = registry.etcd().election_client();
    let lease_lost = lease.lost();
    // Campaigning blocks until elected, so it is not bounded by the request timeout.
    let response = tokio::select! {
        response = election.campaign(name, identity, lease.id()) => {
            response.map_err(|error| registry.error("campaign", error))
        }
        () = lease_lost.cancelled() => {
            Err(registry.unavailable("campaign", "the campaign's lease was lost while waiting"))
        }
        () = cancel.cancelled() => {
            lease.revoke_within(RELEASE_TIMEOUT).await?;
            return Ok(None);
        }
    };
    let leader = response.and_then(|response| {
        response.leader().cloned().ok_or_else(|| Error::Request {
            op: "campaign",
            message: "the registry elected us without naming the leader key".into(),
        })
    });
    let leader: LeaderKey = match leader {
        Ok(leader) => leader,
        Err(error) => {
            release(lease).await;
            return Err(error);
        }
    };
    let fence = Fence {
        key: String::from_utf8_lossy(leader.key()).into_owned(),
        create_revision: leader.rev(),
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

/// Revokes the lease of a campaign that failed; a failure is only logged,
/// since the campaign's own error is what the caller needs to see.
async fn release(lease: Lease) {
    let id = lease.id();
    if let Err(error) = lease.revoke_within(RELEASE_TIMEOUT).await {
        tracing::warn!(lease = id, %error, "cannot revoke the failed campaign's lease; it expires after its TTL");
    }
}

/// The identity of the current leader under `name`, if any.
pub async fn current_leader(registry: &Registry, name: &str) -> Result<Option<String>> {
    let mut election = registry.etcd().election_client();
    match registry.call("leader", election.leader(name)).await {
        Ok(response) => Ok(response
            .kv()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
        // etcd answers "no leader" with an error rather than an empty response.
        Err(Error::Request { message, .. }) if message.contains("no leader") => Ok(None),
        Err(error) => Err(error),
    }
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
    let mut backoff = KEY_WATCH_RETRY.start();
    loop {
        let started = tokio::time::Instant::now();
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

/// How a broken leader key watch is resumed: from 50ms doubling to 2s, and
/// from 50ms again after a watch that ran for 30s.
const KEY_WATCH_RETRY: BackoffPolicy = BackoffPolicy {
    min: Duration::from_millis(50),
    max: Duration::from_secs(2),
    healthy: Duration::from_secs(30),
};

/// How one watch of the leader key ended.
enum KeyWatch {
    /// The key is gone or belongs to another campaign.
    Gone,
    /// The watch could not be set up or broke; the key may still be ours.
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
    let options = WatchOptions::new().with_start_revision(from);
    let mut watch = registry.watch_client();
    let mut stream = match watch.watch(fence.key.as_str(), Some(options)).await {
        Ok(stream) => stream,
        Err(error) => return KeyWatch::Broken(registry.error("leader key watch", error)),
    };
    loop {
        match stream.message().await {
            Ok(Some(response)) => {
                // A compacted start point hides what happened: read again.
                if response.canceled() || response.compact_revision() > 0 {
                    let reason = response.cancel_reason().to_owned();
                    return KeyWatch::Broken(registry.unavailable("leader key watch", &reason));
                }
                let gone = response.events().iter().any(|event| {
                    event.event_type() == EventType::Delete
                        || event
                            .kv()
                            .is_some_and(|kv| kv.create_revision() != fence.create_revision)
                });
                if gone {
                    return KeyWatch::Gone;
                }
            }
            Ok(None) => {
                return KeyWatch::Broken(
                    registry.unavailable("leader key watch", "the watch stream ended"),
                );
            }
            Err(error) => return KeyWatch::Broken(registry.error("leader key watch", error)),
        }
    }
}
