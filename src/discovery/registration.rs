//! Registering an endpoint of a service: the key `endpoints/<svc>/<uuid>`,
//! bound to a lease renewed every third of its TTL, and re-registered under
//! the same uuid (with backoff) whenever the lease is lost or the key vanishes,
//! until the registration is stopped.
//!
//! Invariants: while a [`Registration`] lives, only one writer touches its key
//! at a time (a lock shared by the handle and its background task), and every
//! write carries the latest document, credentials included. [`Registration::stop`]
//! first replaces the document with a lease-less `departed` tombstone, then
//! revokes the lease, so a clean stop never looks like a death; after it,
//! nothing re-registers.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use visor_controllers::{Name, ServiceDef, ServiceEndpoint};

use super::error::Result;
use super::request::RegisterRequest;
use crate::Visor;
use crate::registry::{BackoffPolicy, Encode, Error, Expected, Kind, Lease, ObjectRef, Registry};

/// The wait after the first failed re-registration attempt (before jitter).
const MIN_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Longest wait between two re-registration attempts (and at most half the
/// TTL: after an outage etcd keeps the old lease for one more TTL, and a key
/// moved to the new lease within it never looks dead).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Where a registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Lost (or not yet written); being registered again.
    Registering,
    /// The key is in the registry, bound to this lease.
    Registered {
        /// The lease id.
        lease: i64,
    },
}

/// A live endpoint registration. Dropping it without [`stop`](Self::stop)
/// stops renewal, so the endpoint dies (as a crash would) when its lease expires.
#[derive(Debug)]
pub struct Registration {
    shared: Arc<Shared>,
    status: watch::Receiver<Status>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    registry: Registry,
    service: Name,
    id: Name,
    key: String,
    service_key: String,
    definition: ServiceDef,
    ttl: Duration,
    state: Mutex<State>,
    status: watch::Sender<Status>,
}

#[derive(Debug)]
struct State {
    endpoint: ServiceEndpoint,
    lease: Option<Lease>,
    /// The mod revision of this handle's last write of the key.
    mod_revision: i64,
}

/// Registers an endpoint of `service` under a fresh uuid (v7), writing the
/// service definition first if there is none. Input is validated before
/// anything is written. Returns once the endpoint is in the registry; from
/// then on a background task keeps it there until [`Registration::stop`].
pub async fn register(
    visor: &Visor,
    service: &str,
    request: RegisterRequest,
) -> Result<Registration> {
    let service = Name::parse("service", service)?;
    let ttl = request.ttl;
    let id = match &request.id {
        Some(id) => Name::parse("endpoint id", id)?,
        None => Name::parse("endpoint id", &uuid::Uuid::now_v7().to_string())?,
    };
    let (endpoint, definition) = request.documents()?;
    let registry = visor.registry().clone();
    let keys = registry.keys();
    let (status_tx, status) = watch::channel(Status::Registering);
    let shared = Arc::new(Shared {
        key: keys.endpoint(&service, &id),
        service_key: keys.service(&service),
        registry,
        service,
        id,
        definition,
        ttl,
        state: Mutex::new(State {
            endpoint,
            lease: None,
            mod_revision: 0,
        }),
        status: status_tx,
    });
    {
        let mut state = shared.state.lock().await;
        shared.register_once(&mut state).await?;
    }
    let task = tokio::spawn(maintain(shared.clone()));
    Ok(Registration {
        shared,
        status,
        task,
    })
}

impl Registration {
    /// The service name.
    pub fn service(&self) -> &str {
        self.shared.service.as_str()
    }

    /// The endpoint's uuid: the last segment of its key, kept across re-registrations.
    pub fn id(&self) -> &str {
        self.shared.id.as_str()
    }

    /// The endpoint's full key.
    pub fn key(&self) -> &str {
        &self.shared.key
    }

    /// Where the registration stands.
    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    /// Whether the endpoint is in the registry now, as far as this handle knows.
    pub fn ready(&self) -> bool {
        matches!(self.status(), Status::Registered { .. })
    }

    /// The lease the key is bound to, while registered.
    pub fn lease_id(&self) -> Option<i64> {
        match self.status() {
            Status::Registered { lease } => Some(lease),
            _ => None,
        }
    }

    /// Resolves once the current registration is in the registry (at once if
    /// it is). Bound it with a timeout: during an outage it waits for the registry.
    pub async fn wait_registered(&self) {
        let mut status = self.status.clone();
        // The sender lives in `shared`, which this handle owns: it cannot close.
        let _ = status
            .wait_for(|s| matches!(s, Status::Registered { .. }))
            .await;
    }

    /// The endpoint document as this handle last wrote (or will next write) it.
    pub async fn endpoint(&self) -> ServiceEndpoint {
        self.shared.state.lock().await.endpoint.clone()
    }

    /// Changes the credentials clients use. While registered, the document is
    /// replaced if still as this handle wrote it (keeping its lease); while
    /// being re-registered, the new credentials are what the next write
    /// carries. A conflicting foreign write or a registry error leaves both
    /// the registry and the handle's document unchanged.
    pub async fn credentials(&self, user: &str, password: &str) -> Result<()> {
        let mut state = self.shared.state.lock().await;
        let mut endpoint = state.endpoint.clone();
        endpoint.user = user.to_owned();
        endpoint.password = password.to_owned();
        if !self.ready() {
            state.endpoint = endpoint;
            return Ok(());
        }
        let written = self
            .shared
            .registry
            .write_object(
                self.shared.object(),
                &self.shared.key,
                endpoint.clone(),
                Expected::ModRevision(state.mod_revision),
                &[],
            )
            .await;
        match written {
            Ok(written) => state.mod_revision = written.mod_revision,
            // Lost in the meantime: the re-registration writes the new document.
            Err(Error::NotFound(_)) => {}
            Err(error) => return Err(error.into()),
        }
        state.endpoint = endpoint;
        Ok(())
    }

    /// Deregisters cleanly: replaces the document with a `departed` tombstone
    /// that is bound to no lease (so subscribers and the controller see a
    /// clean stop, not a death), then revokes the lease. Nothing re-registers
    /// afterwards. If the tombstone cannot be written the error is returned
    /// and the endpoint dies when its lease expires.
    pub async fn stop(mut self) -> Result<()> {
        self.task.abort();
        // Wait for the task to be gone, so no re-registration races the tombstone.
        let _ = (&mut self.task).await;
        let mut state = self.shared.state.lock().await;
        let mut tombstone = state.endpoint.clone();
        tombstone.departed = true;
        tombstone.departed_at = Some(chrono::Utc::now());
        let key = self.shared.key.as_str();
        // Only over an existing key: a key that is gone already died.
        let txn = Txn::new()
            .when([Compare::version(key, CompareOp::Greater, 0)])
            .and_then([TxnOp::put(key, tombstone.encode(), None)]);
        let mut kv = self.shared.registry.kv_client();
        self.shared.registry.call("write", kv.txn(txn)).await?;
        if let Some(lease) = state.lease.take() {
            lease.revoke().await?;
        }
        Ok(())
    }
}

impl Registration {
    /// Ends the endpoint as a death: the lease is revoked, which deletes
    /// the live key (what a crash does when the lease expires, at once).
    /// For a process that is known to have died.
    pub async fn abandon(mut self) -> Result<()> {
        self.task.abort();
        let _ = (&mut self.task).await;
        let mut state = self.shared.state.lock().await;
        if let Some(lease) = state.lease.take() {
            lease.revoke().await?;
        }
        Ok(())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    fn object(&self) -> ObjectRef {
        ObjectRef::new(Kind::Endpoint, &[self.service.as_str(), self.id.as_str()])
    }

    /// One registration attempt: a new lease, the service definition if
    /// absent, then the key written bound to the new lease, over whatever is
    /// there as last seen (still there under an old lease after an outage, or
    /// gone). On success the old lease, which no longer holds the key, is revoked.
    async fn register_once(&self, state: &mut State) -> Result<()> {
        let lease = Lease::grant(&self.registry, self.ttl).await?;
        let result = self.write_bound(state, lease.id()).await;
        match result {
            Ok(mod_revision) => {
                state.mod_revision = mod_revision;
                let lease_id = lease.id();
                if let Some(old) = state.lease.replace(lease)
                    && let Err(error) = old.revoke().await
                {
                    tracing::debug!(%error, "could not revoke a lost lease; it expires on its own");
                }
                self.status
                    .send_replace(Status::Registered { lease: lease_id });
                Ok(())
            }
            Err(error) => {
                if let Err(revoke) = lease.revoke().await {
                    tracing::debug!(%revoke, "could not revoke an unused lease; it expires on its own");
                }
                Err(error)
            }
        }
    }

    /// Writes the definition if absent and the endpoint bound to `lease`;
    /// returns the endpoint write's revision.
    async fn write_bound(&self, state: &State, lease: i64) -> Result<i64> {
        let object = ObjectRef::new(Kind::Service, &[self.service.as_str()]);
        let absent = Expected::Absent { lease: None };
        let defined = self
            .registry
            .write_object(
                object,
                &self.service_key,
                self.definition.clone(),
                absent,
                &[],
            )
            .await;
        match defined {
            Ok(_) | Err(Error::AlreadyExists(_)) => {}
            Err(error) => return Err(error.into()),
        }
        let key = self.key.as_str();
        let mut kv = self.registry.kv_client();
        let options = GetOptions::new().with_keys_only();
        let found = self
            .registry
            .call("get", kv.get(key, Some(options)))
            .await?;
        let current = found.kvs().first().map(|kv| kv.mod_revision());
        let compare = match current {
            Some(revision) => Compare::mod_revision(key, CompareOp::Equal, revision),
            None => Compare::create_revision(key, CompareOp::Equal, 0),
        };
        let put = PutOptions::new().with_lease(lease);
        let txn = Txn::new().when([compare]).and_then([TxnOp::put(
            key,
            state.endpoint.encode(),
            Some(put),
        )]);
        let response = self.registry.call("write", kv.txn(txn)).await?;
        if !response.succeeded() {
            return Err(Error::Conflict {
                object: self.object(),
                expected: current.unwrap_or(0),
            }
            .into());
        }
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    /// Resolves when the key is observed absent (deleted by someone other
    /// than its lease). Read errors are left to the lease to diagnose.
    async fn vanished(&self) {
        let mut every = tokio::time::interval((self.ttl / 3).max(Duration::from_millis(100)));
        loop {
            every.tick().await;
            let mut kv = self.registry.kv_client();
            let options = GetOptions::new().with_keys_only();
            let found = self
                .registry
                .call("get", kv.get(self.key.as_str(), Some(options)))
                .await;
            if found.is_ok_and(|found| found.kvs().is_empty()) {
                return;
            }
        }
    }
}

/// Keeps the registration in the registry: waits for its loss (lease lost or
/// key gone), then registers again under the same uuid with exponential
/// backoff and jitter until it succeeds. Aborted by stop or drop.
async fn maintain(shared: Arc<Shared>) {
    let policy = BackoffPolicy {
        min: MIN_RETRY_DELAY,
        max: MAX_RETRY_DELAY.min(shared.ttl / 2),
        // Each loss starts a fresh sequence; within one, only success ends it.
        healthy: Duration::MAX,
    };
    loop {
        let lost = shared.state.lock().await.lease.as_ref().map(Lease::lost);
        if let Some(lost) = lost {
            tokio::select! {
                () = lost.cancelled() => {
                    tracing::warn!(service = %shared.service, id = %shared.id, "endpoint lease lost; registering again");
                }
                () = shared.vanished() => {
                    tracing::warn!(service = %shared.service, id = %shared.id, "endpoint key deleted; registering again");
                }
            }
        }
        shared.status.send_replace(Status::Registering);
        let mut backoff = policy.start();
        loop {
            let attempt = {
                let mut state = shared.state.lock().await;
                shared.register_once(&mut state).await
            };
            match attempt {
                Ok(()) => {
                    tracing::info!(service = %shared.service, id = %shared.id, "endpoint registered again");
                    break;
                }
                Err(error) => {
                    let delay = backoff.next_delay(Duration::ZERO);
                    tracing::warn!(service = %shared.service, id = %shared.id, %error, ?delay, "endpoint registration failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
