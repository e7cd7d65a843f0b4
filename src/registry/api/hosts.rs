//! Hosts: agents announce themselves under a lease, so a host whose agent dies
//! disappears from the registry on its own when the lease expires.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use visor_controllers::Host;

use super::{Visor, name};
use crate::registry::Kind;
use crate::registry::error::{ObjectRef, Result};
use crate::registry::lease::Lease;
use crate::registry::store::{Expected, Listing, Versioned};

/// A live host registration: the host key, bound to a lease kept alive until
/// [`deregister`](Self::deregister) or drop (after which it expires within its TTL).
#[derive(Debug)]
pub struct HostRegistration {
    host: Versioned<Host>,
    lease: Lease,
}

impl HostRegistration {
    /// The host document as registered.
    pub fn host(&self) -> &Versioned<Host> {
        &self.host
    }

    /// The lease the host key is bound to.
    pub fn lease_id(&self) -> i64 {
        self.lease.id()
    }

    /// Cancelled when the registration is lost (lease expired or unrenewable).
    pub fn lost(&self) -> CancellationToken {
        self.lease.lost()
    }

    /// Marks the host draining: the controller places nothing new on it and
    /// moves its instances to other hosts. The key stays bound to its lease.
    pub async fn drain(&mut self, visor: &Visor) -> Result<()> {
        if self.host.value.draining {
            return Ok(());
        }
        let mut spec = self.host.value.clone();
        spec.draining = true;
        let host = name("host", self.host.name())?;
        let object = ObjectRef::new(Kind::Host, &[host.as_str()]);
        self.host = visor
            .registry
            .write_object(
                object,
                &self.host.key,
                spec,
                Expected::ModRevision(self.host.mod_revision),
                &[],
            )
            .await?;
        Ok(())
    }

    /// Removes the host cleanly by revoking its lease.
    pub async fn deregister(self) -> Result<()> {
        self.lease.revoke().await
    }
}

impl Visor {
    /// Registers host `host` under a fresh lease of `ttl`; `AlreadyExists` while
    /// another live registration holds the name.
    pub async fn register_host(
        &self,
        host: &str,
        spec: Host,
        ttl: Duration,
    ) -> Result<HostRegistration> {
        let host = name("host", host)?;
        let lease = Lease::grant(&self.registry, ttl).await?;
        let object = ObjectRef::new(Kind::Host, &[host.as_str()]);
        let written = self
            .registry
            .write_object(
                object,
                &self.keys().host(&host),
                spec,
                Expected::Absent {
                    lease: Some(lease.id()),
                },
                &[],
            )
            .await;
        match written {
            Ok(host) => Ok(HostRegistration { host, lease }),
            Err(error) => Err(give_up(lease, error).await),
        }
    }

    /// Takes host `host` back under `lease`, the lease a previous run of the
    /// same agent registered it with, if etcd still has that lease: the
    /// document is replaced with `spec` while the key is still on the lease,
    /// or created on it if the key is gone; either way the lease is kept
    /// alive from now on, so the host never goes down in between. A lease
    /// that is gone means a fresh registration ([`register_host`](Self::register_host)
    /// with `ttl`). `AlreadyExists` while another lease holds the name.
    pub async fn resume_host(
        &self,
        host: &str,
        spec: Host,
        lease: i64,
        ttl: Duration,
    ) -> Result<HostRegistration> {
        let name_of_host = name("host", host)?;
        let Some(lease) = Lease::resume(&self.registry, lease).await? else {
            return self.register_host(host, spec, ttl).await;
        };
        let object = ObjectRef::new(Kind::Host, &[name_of_host.as_str()]);
        let key = self.keys().host(&name_of_host);
        let taken_back = self
            .registry
            .write_object(
                object.clone(),
                &key,
                spec.clone(),
                Expected::Leased(lease.id()),
                &[],
            )
            .await;
        let written = match taken_back {
            Err(crate::Error::NotFound(_)) => {
                let bound = Expected::Absent {
                    lease: Some(lease.id()),
                };
                self.registry
                    .write_object(object, &key, spec, bound, &[])
                    .await
            }
            other => other,
        };
        match written {
            Ok(host) => Ok(HostRegistration { host, lease }),
            // The lease may still hold this agent's other keys (its
            // endpoints) and the failure may pass: keep it, left to expire
            // unless a retry takes it back.
            Err(error @ crate::Error::AlreadyExists(_)) => Err(give_up(lease, error).await),
            Err(error) => Err(error),
        }
    }

    /// Reads host `host`.
    pub async fn host(&self, host: &str) -> Result<Versioned<Host>> {
        let host = name("host", host)?;
        let object = ObjectRef::new(Kind::Host, &[host.as_str()]);
        self.registry
            .get_object(object, &self.keys().host(&host))
            .await
    }

    /// Lists the live hosts, in name order.
    pub async fn hosts(&self) -> Result<Listing<Host>> {
        self.registry
            .list_objects(Kind::Host, &self.keys().hosts())
            .await
    }
}

/// Revokes the lease of a registration that failed with `error`, best
/// effort, and returns the error.
async fn give_up(lease: Lease, error: crate::Error) -> crate::Error {
    if let Err(revoke_error) = lease.revoke().await {
        tracing::warn!(%revoke_error, "could not revoke the lease of a failed host registration; it expires on its own");
    }
    error
}
