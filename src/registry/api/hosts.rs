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
            Err(error) => {
                if let Err(revoke_error) = lease.revoke().await {
                    tracing::warn!(%revoke_error, "could not revoke the lease of a failed host registration; it expires on its own");
                }
                Err(error)
            }
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
