//! Reading a service: its definition and live endpoints at one revision, and
//! the etcd-discovery queries on them (`all`, `first`, `one`, `url`).
//!
//! Invariants: a [`Service`] is one consistent snapshot (definition and
//! endpoints read at the same revision), and only live endpoints count:
//! tombstones of clean stops and values that do not decode are left out.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use etcd_client::GetOptions;
use visor_controllers::{Name, ServiceDef, ServiceEndpoint};

use super::error::{DiscoveryError, Result};
use crate::Visor;
use crate::registry::{Kind, Versioned, decode};

/// A service as read at one revision.
#[derive(Debug, Clone)]
pub struct Service {
    name: Name,
    definition: Option<ServiceDef>,
    endpoints: Vec<Versioned<ServiceEndpoint>>,
    revision: i64,
}

/// Reads `service`: its definition and live endpoints at one revision.
///
/// `ServiceNotFound` when the service has neither a definition nor any
/// endpoint key (live or tombstone); a service that exists but has no live
/// endpoint is returned, and its `first`, `one` and `url` fail with `NoHostFound`.
pub async fn get(visor: &Visor, service: &str) -> Result<Service> {
    let name = Name::parse("service", service)?;
    let registry = visor.registry();
    let keys = registry.keys();
    let listing = registry
        .list_objects::<ServiceEndpoint>(Kind::Endpoint, &keys.endpoints(&name))
        .await?;
    let mut kv = registry.kv_client();
    let options = GetOptions::new().with_revision(listing.revision);
    let found = registry
        .call("get", kv.get(keys.service(&name), Some(options)))
        .await?;
    let definition = match found.kvs().first() {
        Some(kv) => match decode::<ServiceDef>(Kind::Service, kv, listing.revision) {
            Ok(definition) => Some(definition.value),
            Err(malformed) => {
                tracing::warn!(%malformed, "ignoring a malformed service definition");
                None
            }
        },
        None => None,
    };
    if definition.is_none() && listing.items.is_empty() && listing.skipped.is_empty() {
        return Err(DiscoveryError::ServiceNotFound {
            service: name.to_string(),
        });
    }
    let mut endpoints: Vec<_> = listing
        .items
        .into_iter()
        .filter(|e| e.value.is_live())
        .collect();
    endpoints.sort_by_key(|e| e.create_revision);
    Ok(Service {
        name,
        definition,
        endpoints,
        revision: listing.revision,
    })
}

impl Service {
    /// The service name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Its definition, if one was written.
    pub fn definition(&self) -> Option<&ServiceDef> {
        self.definition.as_ref()
    }

    /// The registry revision it was read at.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Every live endpoint, oldest registration first; the uuid is each one's
    /// [`name`](Versioned::name).
    pub fn all(&self) -> &[Versioned<ServiceEndpoint>] {
        &self.endpoints
    }

    /// The oldest live endpoint.
    pub fn first(&self) -> Result<&Versioned<ServiceEndpoint>> {
        self.endpoints.first().ok_or_else(|| self.no_host())
    }

    /// A live endpoint chosen at random (not cryptographically).
    pub fn one(&self) -> Result<&Versioned<ServiceEndpoint>> {
        pick(&self.endpoints).ok_or_else(|| self.no_host())
    }

    /// `scheme://[user:password@]hostname:port` of a random live endpoint
    /// that has a public port for `scheme`, built as
    /// [`ServiceEndpoint::url`] builds it (credentials percent-encoded, IPv6
    /// hosts bracketed, a default port left out).
    pub fn url(&self, scheme: &str) -> Result<String> {
        self.url_on(scheme, false)
    }

    /// Like [`url`](Self::url), on the private hostname and ports.
    pub fn private_url(&self, scheme: &str) -> Result<String> {
        self.url_on(scheme, true)
    }

    fn url_on(&self, scheme: &str, private: bool) -> Result<String> {
        if self.endpoints.is_empty() {
            return Err(self.no_host());
        }
        let offering: Vec<&Versioned<ServiceEndpoint>> = self
            .endpoints
            .iter()
            .filter(|e| e.value.offers(scheme, private))
            .collect();
        let unknown = |which| DiscoveryError::UnknownScheme {
            scheme: scheme.to_owned(),
            service: self.name.to_string(),
            which,
        };
        let which = if private { "private" } else { "public" };
        let endpoint = pick(&offering).ok_or_else(|| unknown(which))?;
        endpoint
            .value
            .url(scheme, private)
            .map_err(|error| unknown(error.which))
    }

    fn no_host(&self) -> DiscoveryError {
        DiscoveryError::NoHostFound {
            service: self.name.to_string(),
        }
    }
}

/// A random element of `items`, from std's per-instance random hash keys.
fn pick<T>(items: &[T]) -> Option<&T> {
    if items.is_empty() {
        return None;
    }
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_usize(items.len());
    let index = hasher.finish() % items.len() as u64;
    items.get(usize::try_from(index).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_reaches_every_element() {
        let items = [0, 1, 2];
        let mut seen = [false; 3];
        for _ in 0..1000 {
            seen[*pick(&items).expect("non-empty")] = true;
        }
        assert_eq!(seen, [true; 3]);
        assert_eq!(pick::<u8>(&[]), None);
    }
}
