//! What an endpoint announces when it registers, and how it becomes the
//! endpoint and service documents.
//!
//! Invariant: every name, hostname, port and the TTL are validated here,
//! before a registration sends anything to the registry.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use visor_controllers::{Name, ServiceDef, ServiceEndpoint};

use super::error::{DiscoveryError, Result};

/// The lease TTL of a registration unless the request says otherwise, as in etcd-discovery.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

/// What an endpoint announces when it registers, as etcd-discovery's `Host`.
///
/// Empty `private_hostname` and `private_ports` default to the public ones.
/// Ports map a URL scheme to a port number, as strings (`{"http": "80"}`).
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    /// Public hostname (or address); required.
    pub hostname: String,
    /// Public ports by scheme; at least one.
    pub ports: BTreeMap<String, String>,
    /// Private hostname; defaults to `hostname`.
    pub private_hostname: String,
    /// Private ports by scheme; default to `ports`.
    pub private_ports: BTreeMap<String, String>,
    /// User name clients authenticate with, if any.
    pub user: String,
    /// Password clients authenticate with, with `user`.
    pub password: String,
    /// Whether the service is critical (for the service definition too).
    pub critical: bool,
    /// Whether the service is public (written to the service definition).
    pub public: bool,
    /// The Visor host the endpoint runs on, if any.
    pub host: Option<String>,
    /// The instance (unit) it belongs to, if any.
    pub instance: Option<String>,
    /// The app that serves the service (for a new service definition).
    pub app: Option<String>,
    /// The proc type that serves it (for a new service definition).
    pub proc: Option<String>,
    /// Lease TTL; the lease is renewed every third of it. At least 1 s.
    pub ttl: Duration,
    /// The endpoint's uuid: a fresh UUIDv7 when `None`. A process that
    /// restarts passes the uuid it registered before, so that writing it
    /// again (while the old lease still holds the key) is the same endpoint
    /// living on, neither a death nor a birth.
    pub id: Option<String>,
}

impl Default for RegisterRequest {
    fn default() -> Self {
        Self {
            hostname: String::new(),
            ports: BTreeMap::new(),
            private_hostname: String::new(),
            private_ports: BTreeMap::new(),
            user: String::new(),
            password: String::new(),
            critical: false,
            public: false,
            host: None,
            instance: None,
            app: None,
            proc: None,
            ttl: DEFAULT_TTL,
            id: None,
        }
    }
}

impl RegisterRequest {
    /// The endpoint and service documents, validated, with defaults applied.
    pub(super) fn documents(self) -> Result<(ServiceEndpoint, ServiceDef)> {
        let name = |field, value: Option<String>| -> Result<Option<Name>> {
            Ok(value.map(|v| Name::parse(field, &v)).transpose()?)
        };
        if self.ttl < Duration::from_secs(1) {
            return Err(DiscoveryError::InvalidTtl { ttl: self.ttl });
        }
        let now = Utc::now();
        let endpoint = ServiceEndpoint {
            hostname: self.hostname,
            ports: self.ports,
            private_hostname: self.private_hostname,
            private_ports: self.private_ports,
            user: self.user,
            password: self.password,
            critical: self.critical,
            host: name("host", self.host)?,
            instance: name("instance", self.instance)?,
            departed: false,
            departed_at: None,
            registered_at: now,
        }
        .validate()?;
        let definition = ServiceDef {
            critical: self.critical,
            public: self.public,
            min_endpoints: 1,
            app: name("app", self.app)?,
            proc: name("proc", self.proc)?,
            created_at: now,
        };
        Ok((endpoint, definition))
    }
}
