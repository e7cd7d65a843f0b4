//! A lease and its keep-alive: the root of everything lease-bound (hosts,
//! endpoints, leadership).
//!
//! Invariant: [`Lease::lost`] is cancelled as soon as the lease can no longer be
//! trusted to exist — etcd said it expired, or no renewal succeeded within the
//! renew deadline, which is shorter than the TTL so that a holder stops acting
//! before etcd can expire the lease and hand what it guards to someone else.
//! Only timings etcd honours as asked are granted: a TTL in whole seconds
//! within etcd's range, and a renew deadline above zero and below the TTL.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::Registry;
use super::error::{Error, Result};

/// The longest TTL etcd grants (`MaxLeaseTTL` in etcd's `server/lease/lessor.go`).
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(9_000_000_000);

/// A lease timing etcd would not honour as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaseTimingError {
    /// Zero, a sub-second part, or beyond [`MAX_LEASE_TTL`]: etcd would round or refuse it.
    #[error(
        "lease TTL {} is not a whole number of seconds from 1s to {}s: etcd grants leases in whole seconds, so a sub-second part is refused rather than rounded",
        humantime::format_duration(*.0),
        MAX_LEASE_TTL.as_secs()
    )]
    Ttl(Duration),
    /// Not above zero and below the TTL: the holder would act past its lease.
    #[error(
        "renew deadline {} must be above 0s and below the lease TTL {}, so that the holder stops acting before etcd can expire its lease",
        humantime::format_duration(*deadline),
        humantime::format_duration(*ttl)
    )]
    RenewDeadline {
        /// The renew deadline asked for.
        deadline: Duration,
        /// The TTL it must stay below.
        ttl: Duration,
    },
}

impl LeaseTimingError {
    /// Checks that etcd grants `ttl` as asked; returns it in seconds.
    pub fn check_ttl(ttl: Duration) -> std::result::Result<i64, Self> {
        let whole =
            ttl.subsec_nanos() == 0 && ttl >= Duration::from_secs(1) && ttl <= MAX_LEASE_TTL;
        match i64::try_from(ttl.as_secs()) {
            Ok(seconds) if whole => Ok(seconds),
            _ => Err(Self::Ttl(ttl)),
        }
    }

    /// Checks that `deadline` is above zero and below `ttl`.
    pub fn check_renew_deadline(
        ttl: Duration,
        deadline: Duration,
    ) -> std::result::Result<(), Self> {
        if deadline.is_zero() || deadline >= ttl {
            return Err(Self::RenewDeadline { deadline, ttl });
        }
        Ok(())
    }
}

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
    /// Grants a lease of `ttl` (whole seconds, from 1s to [`MAX_LEASE_TTL`]) and
    /// starts renewing it, with a renew deadline of two thirds of the TTL.
    pub async fn grant(registry: &Registry, ttl: Duration) -> Result<Self> {
        Self::grant_with_deadline(registry, ttl, ttl * 2 / 3).await
    }

    /// Like [`grant`](Self::grant), with the given renew deadline (above
    /// zero and below the TTL; capped at the TTL etcd granted, which can be
    /// longer than asked: etcd raises TTLs below its minimum).
    ///
    /// A timing etcd would not honour as asked is refused with
    /// [`Error::InvalidArgument`] before anything is granted.
    pub async fn grant_with_deadline(
        registry: &Registry,
        ttl: Duration,
        renew_deadline: Duration,
    ) -> Result<Self> {
        let refused = |error: LeaseTimingError| Error::InvalidArgument {
            what: "lease timing",
            reason: error.to_string(),
        };
        let seconds = LeaseTimingError::check_ttl(ttl).map_err(refused)?;
        LeaseTimingError::check_renew_deadline(ttl, renew_deadline).map_err(refused)?;
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

    /// Takes lease `id` back, if it is still alive, and starts renewing it
    /// at once (a restarted holder resuming what its keys are bound to),
    /// with a renew deadline of two thirds of its granted TTL. `None` when
    /// etcd no longer has it (expired or revoked).
    pub async fn resume(registry: &Registry, id: i64) -> Result<Option<Self>> {
        let mut leases = registry.etcd().lease_client();
        let alive = registry
            .call("lease time-to-live", leases.time_to_live(id, None))
            .await;
        let alive = match alive {
            Ok(alive) => alive,
            // Older etcds answer an unknown lease with an error, newer ones with TTL -1.
            Err(Error::Request { message, .. }) if message.contains("lease not found") => {
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        if alive.ttl() <= 0 {
            return Ok(None);
        }
        let ttl = Duration::from_secs(u64::try_from(alive.granted_ttl()).unwrap_or(1).max(1));
        let lost = CancellationToken::new();
        // The first renewal goes out at once: what is left of the TTL may be short.
        let keeper = tokio::spawn(keep_alive(
            registry.clone(),
            id,
            ttl,
            ttl * 2 / 3,
            lost.clone(),
        ));
        Ok(Some(Self {
            id,
            ttl,
            lost,
            keeper,
            registry: registry.clone(),
        }))
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
        self.revoke_bounded(None).await
    }

    /// [`revoke`](Self::revoke), giving up after `limit`: best effort for
    /// whoever must not wait long (a lease that is not revoked still expires
    /// after its TTL).
    pub async fn revoke_within(self, limit: Duration) -> Result<()> {
        self.revoke_bounded(Some(limit)).await
    }

    async fn revoke_bounded(self, limit: Option<Duration>) -> Result<()> {
        self.keeper.abort();
        let mut leases = self.registry.etcd().lease_client();
        let request = self.registry.call("lease revoke", leases.revoke(self.id));
        let revoked = match limit {
            None => request.await,
            Some(limit) => tokio::time::timeout(limit, request)
                .await
                .unwrap_or_else(|_| {
                    Err(self
                        .registry
                        .unavailable("lease revoke", &format!("no answer within {limit:?}")))
                }),
        };
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

/// Renewals are sent three times a TTL, but never more often than this.
const MIN_RENEW_PERIOD: Duration = Duration::from_millis(100);

/// How often a lease of `ttl` (as granted) is renewed: a third of its TTL,
/// and at least twice within its renew deadline, which stays what was
/// asked when etcd grants a longer TTL than asked (it raises TTLs below its
/// minimum), so a renewal is always attempted before the deadline passes.
fn renew_period(ttl: Duration, renew_deadline: Duration) -> Duration {
    (ttl / 3).min(renew_deadline / 2).max(MIN_RENEW_PERIOD)
}

/// Renews `id` every [`renew_period`]; cancels `lost` when etcd reports it expired or
/// when no renewal succeeded within `renew_deadline` of the last one sent.
async fn keep_alive(
    registry: Registry,
    id: i64,
    ttl: Duration,
    renew_deadline: Duration,
    lost: CancellationToken,
) {
    let period = renew_period(ttl, renew_deadline);
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_lease_is_renewed_twice_within_its_renew_deadline() {
        let table = [
            // (granted TTL, renew deadline, period)
            (S * 3, S * 2, S),
            (S * 30, S * 20, S * 10),
            // Asked for 1 s with the default deadline; etcd granted 2 s.
            (S * 2, MS * 666, MS * 333),
            (MS * 200, MS * 100, MS * 100),
        ];
        for (ttl, deadline, period) in table {
            assert_eq!(
                renew_period(ttl, deadline),
                period,
                "ttl {ttl:?}, deadline {deadline:?}"
            );
        }
    }

    #[test]
    fn ttls_etcd_grants_as_asked() {
        let table: &[(Duration, Option<i64>)] = &[
            (Duration::ZERO, None),
            (MS * 500, None),
            (MS * 999, None),
            (S, Some(1)),
            (MS * 1500, None),
            (S * 2 + Duration::from_nanos(1), None),
            (S * 10, Some(10)),
            (MAX_LEASE_TTL, Some(9_000_000_000)),
            (MAX_LEASE_TTL + S, None),
            (Duration::MAX, None),
        ];
        for &(ttl, expected) in table {
            assert_eq!(
                LeaseTimingError::check_ttl(ttl).ok(),
                expected,
                "ttl {ttl:?}"
            );
        }
    }

    #[test]
    fn renew_deadlines_above_zero_and_below_the_ttl() {
        let table: &[(Duration, Duration, bool)] = &[
            (S * 2, MS * 1500, true),
            (S * 10, S * 6, true),
            (S, MS, true),
            (S * 2, Duration::ZERO, false),
            (S * 2, S * 2, false),
            (S * 2, S * 3, false),
        ];
        for &(ttl, deadline, accepted) in table {
            assert_eq!(
                LeaseTimingError::check_renew_deadline(ttl, deadline).is_ok(),
                accepted,
                "ttl {ttl:?}, deadline {deadline:?}"
            );
        }
    }

    #[test]
    fn refusals_say_what_is_allowed() {
        let ttl = LeaseTimingError::check_ttl(MS * 1500).expect_err("refused");
        assert_eq!(
            ttl.to_string(),
            "lease TTL 1s 500ms is not a whole number of seconds from 1s to 9000000000s: \
             etcd grants leases in whole seconds, so a sub-second part is refused rather than rounded"
        );
        let deadline = LeaseTimingError::check_renew_deadline(S * 2, S * 2).expect_err("refused");
        assert_eq!(
            deadline.to_string(),
            "renew deadline 2s must be above 0s and below the lease TTL 2s, \
             so that the holder stops acting before etcd can expire its lease"
        );
    }

    proptest! {
        #[test]
        fn a_ttl_is_granted_as_asked_exactly_when_it_is_whole_seconds_in_range(
            seconds in 0u64..20_000_000_000,
            nanos in prop_oneof![Just(0u32), 1u32..1_000_000_000],
        ) {
            let ttl = Duration::new(seconds, nanos);
            let whole = nanos == 0 && (1..=MAX_LEASE_TTL.as_secs()).contains(&seconds);
            let checked = LeaseTimingError::check_ttl(ttl);
            prop_assert_eq!(checked.is_ok(), whole);
            if let Ok(granted) = checked {
                prop_assert_eq!(u64::try_from(granted).ok(), Some(seconds));
            }
        }
    }
}
