//! Discovery's error type: one variant per way registering, querying or
//! subscribing fails, each naming the service, field or value it is about.
//!
//! Invariant: input errors (names, hostnames, ports, schemes) are raised
//! before anything is sent to the registry, so they never leave a write behind.

use visor_controllers::{InvalidEndpoint, InvalidName};

/// A `Result` whose error is [`DiscoveryError`].
pub type Result<T, E = DiscoveryError> = std::result::Result<T, E>;

/// Why a discovery call failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Neither a definition nor any endpoint exists for the service.
    #[error("service {service} not found: it has no definition and no endpoint")]
    ServiceNotFound {
        /// The service asked for.
        service: String,
    },
    /// The service exists but has no live endpoint.
    #[error("no host found for service {service}: it has no live endpoint")]
    NoHostFound {
        /// The service asked for.
        service: String,
    },
    /// No live endpoint of the service has a port for the scheme.
    #[error(
        "unknown scheme {scheme:?} for service {service}: no live endpoint has a {which} port for it"
    )]
    UnknownScheme {
        /// The scheme asked for.
        scheme: String,
        /// The service asked for.
        service: String,
        /// `public` or `private`.
        which: &'static str,
    },
    /// A service, host or instance name failed validation.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// A hostname is empty or cannot be part of a URL.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidHostname {
        /// `hostname` or `private_hostname`.
        field: &'static str,
        /// The rejected value.
        value: String,
        /// The rule broken.
        reason: &'static str,
    },
    /// The (public) hostname is empty.
    #[error("{field} must not be empty")]
    EmptyHostname {
        /// `hostname` or `private_hostname`.
        field: &'static str,
    },
    /// No port was given.
    #[error("{field}: at least one port is required")]
    NoPorts {
        /// `ports`.
        field: &'static str,
    },
    /// A port is not a number from 1 to 65535.
    #[error(
        "invalid port {port:?} for scheme {scheme:?} in {field}: must be a number from 1 to 65535"
    )]
    InvalidPort {
        /// `ports` or `private_ports`.
        field: &'static str,
        /// The scheme it is the port of.
        scheme: String,
        /// The rejected value.
        port: String,
    },
    /// A scheme is not a URL scheme.
    #[error(
        "invalid scheme {scheme:?} in {field}: must be a letter, then letters, digits, '+', '-' or '.'"
    )]
    InvalidScheme {
        /// `ports` or `private_ports`.
        field: &'static str,
        /// The rejected scheme.
        scheme: String,
    },
    /// The lease TTL is unusable.
    #[error("invalid ttl {ttl:?}: must be at least 1 s (etcd grants whole seconds)")]
    InvalidTtl {
        /// The rejected TTL.
        ttl: std::time::Duration,
    },
    /// The registry refused or failed the request.
    #[error(transparent)]
    Registry(#[from] crate::Error),
}

impl From<InvalidEndpoint> for DiscoveryError {
    fn from(error: InvalidEndpoint) -> Self {
        match error {
            InvalidEndpoint::Hostname { field, value, .. } if value.is_empty() => {
                Self::EmptyHostname { field }
            }
            InvalidEndpoint::Hostname {
                field,
                value,
                reason,
            } => Self::InvalidHostname {
                field,
                value,
                reason,
            },
            InvalidEndpoint::NoPorts { field } => Self::NoPorts { field },
            InvalidEndpoint::Port {
                field,
                scheme,
                port,
            } => Self::InvalidPort {
                field,
                scheme,
                port,
            },
            InvalidEndpoint::Scheme { field, scheme } => Self::InvalidScheme { field, scheme },
        }
    }
}

impl DiscoveryError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Registry(error) => error.is_retryable(),
            Self::NoHostFound { .. } | Self::ServiceNotFound { .. } => true,
            _ => false,
        }
    }
}
