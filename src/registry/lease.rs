//! A lease and its keep-alive: the root of everything lease-bound (hosts now;
//! endpoints and leadership later).
//!
//! Invariant: [`Lease::lost`] is cancelled as soon as the lease can no longer be
//! trusted to exist — etcd said it expired, or no renewal succeeded within the
//! renew deadline, which is shorter than the TTL so that a holder stops acting
//! before etcd can expire the lease and hand what it guards to someone else.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::Registry;
use super::error::{Error, Result};

/// A granted lease, renewed in the background at a third of its TTL until
/// revoked or dropped. Dropping stops renewal; etcd then expires it after its TTL.
#[derive(Debug)]
pub struct Lease {
    id: i64,
    ttl: Duration,
    lost: CancellationToken,
    keeper: JoinHandle<()>,
    registry: Registry,
}

impl Lease {
    /// Grants a lease of `ttl` (whole seconds, at least 1) and starts renewing
    /// it, with a renew deadline of two thirds of the TTL.
    pub async fn grant(registry: &Registry, ttl: Duration) -> Result<Self> {
        Self::grant_with_deadline(registry, ttl, ttl * 2 / 3).await
    }

    /// Like [`grant`](Self::grant), with the given renew deadline (capped at the TTL).
    pub async fn grant_with_deadline(
        registry: &Registry,
        ttl: Duration,
        renew_deadline: Duration,
    ) -> Result<Self> {
        let seconds = i64::try_from(ttl.as_secs().max(1)).map_err(|_| Error::InvalidArgument {
            what: "lease ttl",
            reason: format!("{ttl:?} is too long"),
        })?;
        let mut leases = registry.etcd().lease_client();
        let granted = registry
            .call("lease grant", leases.grant(seconds, None))
            .await?;
        let ttl = Duration::from_secs(u64::try_from(granted.ttl()).unwrap_or(1));
        let lost = CancellationToken::new();
        let keeper = tokio::spawn(keep_alive(
            registry.clone(),
            granted.id(),
            ttl,
            renew_deadline.min(ttl),
            lost.clone(),
        ));
        Ok(Self {
            id: granted.id(),
            ttl,
            lost,
            keeper,
            registry: registry.clone(),
        })
    }

    /// The lease id, to bind keys to.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The TTL etcd granted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Cancelled once the lease is gone (expired, revoked, or unrenewable).
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Stops renewal and revokes the lease, deleting every key bound to it.
    pub async fn revoke(self) -> Result<()> {
        self.keeper.abort();
        let mut leases = self.registry.etcd().lease_client();
        let revoked = self
            .registry
            .call("lease revoke", leases.revoke(self.id))
            .await;
        self.lost.cancel();
        match revoked {
            Ok(_) => Ok(()),
            // Already expired: the keys are gone, which is what revoking wanted.
            Err(Error::Request { message, .. }) if message.contains("lease not found") => Ok(()),
            Err(error) => Err(error),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Renews `id` every `ttl / 3`; cancels `lost` when etcd reports it expired or
/// when no renewal succeeded within `renew_deadline` of the last one sent.
async fn keep_alive(
    registry: Registry,
    id: i64,
    ttl: Duration,
    renew_deadline: Duration,
    lost: CancellationToken,
) {
    let period = (ttl / 3).max(Duration::from_millis(100));
    let mut deadline = Instant::now() + renew_deadline;
    let mut stream = None;
    loop {
        if Instant::now() >= deadline {
            tracing::warn!(
                lease = id,
                "lease not renewed within its renew deadline; treating it as lost"
            );
            break;
        }
        if stream.is_none() {
            let mut leases = registry.etcd().lease_client();
            match registry
                .call("lease keep-alive", leases.keep_alive(id))
                .await
            {
                Ok(pair) => stream = Some(pair),
                Err(error) => {
                    tracing::debug!(lease = id, %error, "lease keep-alive stream failed; retrying");
                    tokio::time::sleep(period.min(deadline - Instant::now())).await;
                    continue;
                }
            }
        }
        let Some((keeper, responses)) = stream.as_mut() else {
            continue;
        };
        // Counted from the send: etcd's own clock restarts when it gets the request.
        let sent = Instant::now();
        let renewed = async {
            keeper.keep_alive().await?;
            responses.message().await
        };
        match tokio::time::timeout(period, renewed).await {
            Ok(Ok(Some(response))) if response.ttl() > 0 => {
                let granted = Duration::from_secs(u64::try_from(response.ttl()).unwrap_or(0));
                deadline = sent + renew_deadline.min(granted);
                tokio::time::sleep(period).await;
            }
            Ok(Ok(Some(_))) => {
                tracing::warn!(lease = id, "registry reports the lease expired");
                break;
            }
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => stream = None,
        }
    }
    lost.cancel();
}
