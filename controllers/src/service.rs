//! Services and their endpoints, as stored under `/services/<svc>` and
//! `/endpoints/<svc>/<uuid>`, with the rules etcd-discovery applied to them.
//!
//! Invariants: an endpoint that passed [`ServiceEndpoint::validate`] has a
//! non-empty public and private hostname and at least one public and one
//! private port, every port a number from 1 to 65535 under a valid URL scheme.
//! An endpoint is *live* unless `departed`: a departed document is the
//! tombstone of a clean stop, so only the deletion of a live endpoint is a
//! death ([`endpoint_change`], [`diff_endpoints`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::name::Name;

/// `/services/<svc>`: what a service is, independent of who serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDef {
    /// Whether the infrastructure cannot work without it.
    #[serde(default)]
    pub critical: bool,
    /// Whether its endpoints are reachable from outside the private network.
    #[serde(default)]
    pub public: bool,
    /// How many live endpoints it should have (default 1).
    #[serde(default = "one")]
    pub min_endpoints: u32,
    /// The app whose instances serve it, if Visor runs it.
    #[serde(default)]
    pub app: Option<Name>,
    /// The proc type of that app that serves it, if only one does.
    #[serde(default)]
    pub proc: Option<Name>,
    /// When it was first registered.
    pub created_at: DateTime<Utc>,
}

fn one() -> u32 {
    1
}

/// `/endpoints/<svc>/<uuid>`: one registered endpoint of a service.
///
/// Ports map a URL scheme (`http`, `https`, `postgres`, ...) to a port, kept as
/// strings in JSON as etcd-discovery stored them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEndpoint {
    /// The public hostname (or IP address).
    pub hostname: String,
    /// Public ports by scheme.
    #[serde(default)]
    pub ports: BTreeMap<String, String>,
    /// The hostname on the private network (defaults to `hostname`).
    #[serde(default)]
    pub private_hostname: String,
    /// Private ports by scheme (default to `ports`).
    #[serde(default)]
    pub private_ports: BTreeMap<String, String>,
    /// User name for clients, if the service requires one.
    #[serde(default)]
    pub user: String,
    /// Password for clients, with `user`.
    #[serde(default)]
    pub password: String,
    /// Whether the service is critical.
    #[serde(default)]
    pub critical: bool,
    /// The Visor host it runs on, if any.
    #[serde(default)]
    pub host: Option<Name>,
    /// The instance (unit) it belongs to, if any.
    #[serde(default)]
    pub instance: Option<Name>,
    /// Set by a clean stop: this document is a tombstone, not a live endpoint.
    #[serde(default)]
    pub departed: bool,
    /// When the clean stop happened (tombstones only); the controller sweeps
    /// tombstones some time after it, so lagging subscribers still see them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub departed_at: Option<DateTime<Utc>>,
    /// When this registration started.
    pub registered_at: DateTime<Utc>,
}

/// Why an endpoint document was refused; each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEndpoint {
    /// A hostname is empty or not a hostname.
    #[error("invalid {field} {value:?}: {reason}")]
    Hostname {
        /// `hostname` or `private_hostname`.
        field: &'static str,
        /// The rejected value.
        value: String,
        /// The rule broken.
        reason: &'static str,
    },
    /// No port at all.
    #[error("{field}: at least one port is required")]
    NoPorts {
        /// `ports`.
        field: &'static str,
    },
    /// A port is not a number from 1 to 65535.
    #[error(
        "invalid port {port:?} for scheme {scheme:?} in {field}: must be a number from 1 to 65535"
    )]
    Port {
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
    Scheme {
        /// `ports` or `private_ports`.
        field: &'static str,
        /// The rejected scheme.
        scheme: String,
    },
}

/// The endpoint has no port for the scheme asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scheme {scheme:?}: the endpoint has no {which} port for it")]
pub struct UnknownScheme {
    /// The scheme asked for.
    pub scheme: String,
    /// `public` or `private`.
    pub which: &'static str,
}

impl ServiceEndpoint {
    /// Applies etcd-discovery's defaults (private hostname and ports default to
    /// the public ones) and validates the result.
    pub fn validate(mut self) -> Result<Self, InvalidEndpoint> {
        check_hostname("hostname", &self.hostname)?;
        if self.ports.is_empty() {
            return Err(InvalidEndpoint::NoPorts { field: "ports" });
        }
        check_ports("ports", &self.ports)?;
        if self.private_hostname.is_empty() {
            self.private_hostname = self.hostname.clone();
        }
        check_hostname("private_hostname", &self.private_hostname)?;
        if self.private_ports.is_empty() {
            self.private_ports = self.ports.clone();
        }
        check_ports("private_ports", &self.private_ports)?;
        Ok(self)
    }

    /// Whether this is a live endpoint, not the tombstone of a clean stop.
    pub fn is_live(&self) -> bool {
        !self.departed
    }

    /// `scheme://[user:password@]host:port`, on the public address, or the
    /// private one when `private` (falling back to the public hostname and
    /// ports for documents written without them).
    ///
    /// Built by the `url` crate, so user and password are percent-encoded
    /// and an IPv6 address is bracketed; serialized as the WHATWG URL
    /// standard has it (a scheme's default port is left out, and `http` and
    /// `https` URLs end in `/`). A document not validated at registration
    /// whose port or hostname no URL can hold has no port for `scheme`.
    pub fn url(&self, scheme: &str, private: bool) -> Result<String, UnknownScheme> {
        let (hostname, ports, which) = match private {
            true => (
                non_empty(&self.private_hostname, &self.hostname),
                match self.private_ports.is_empty() {
                    true => &self.ports,
                    false => &self.private_ports,
                },
                "private",
            ),
            false => (self.hostname.as_str(), &self.ports, "public"),
        };
        let unknown = || UnknownScheme {
            scheme: scheme.to_owned(),
            which,
        };
        let port = ports.get(scheme).ok_or_else(unknown)?;
        let port = port.parse::<u16>().map_err(|_| unknown())?;
        let (user, password) = match self.user.is_empty() {
            true => (None, None),
            false => (Some(self.user.as_str()), Some(self.password.as_str())),
        };
        build_url(scheme, hostname, port, user, password)
            .map(String::from)
            .ok_or_else(unknown)
    }

    /// Whether it has a port for `scheme` on the public (or private) address.
    pub fn offers(&self, scheme: &str, private: bool) -> bool {
        self.url(scheme, private).is_ok()
    }
}

/// `scheme://user:password@host:port`, or `None` when the parts make no URL.
fn build_url(
    scheme: &str,
    hostname: &str,
    port: u16,
    user: Option<&str>,
    password: Option<&str>,
) -> Option<url::Url> {
    // An IPv6 address is a host only in brackets.
    let host = match hostname.parse::<std::net::Ipv6Addr>() {
        Ok(ip) => format!("[{ip}]"),
        Err(_) => hostname.to_owned(),
    };
    let mut url = url::Url::parse(&format!("{scheme}://{host}")).ok()?;
    if url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    url.set_port(Some(port)).ok()?;
    if let Some(user) = user {
        url.set_username(user).ok()?;
        url.set_password(password).ok()?;
    }
    Some(url)
}

fn non_empty<'a>(value: &'a str, fallback: &'a str) -> &'a str {
    match value.is_empty() {
        true => fallback,
        false => value,
    }
}

fn check_hostname(field: &'static str, value: &str) -> Result<(), InvalidEndpoint> {
    let invalid = |reason| InvalidEndpoint::Hostname {
        field,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("must not be empty"));
    }
    // These would end the host part of a URL built from it.
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#'))
    {
        return Err(invalid("must not contain whitespace, '/', '@', '?' or '#'"));
    }
    Ok(())
}

/// Whether `text` is a URL scheme (RFC 3986, section 3.1): a letter, then
/// letters, digits, `+`, `-` or `.`.
pub fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn check_ports(
    field: &'static str,
    ports: &BTreeMap<String, String>,
) -> Result<(), InvalidEndpoint> {
    for (scheme, port) in ports {
        if !is_scheme(scheme) {
            return Err(InvalidEndpoint::Scheme {
                field,
                scheme: scheme.clone(),
            });
        }
        let numeric = !port.is_empty() && port.chars().all(|c| c.is_ascii_digit());
        if !numeric || !matches!(port.parse::<u16>(), Ok(1..)) {
            return Err(InvalidEndpoint::Port {
                field,
                scheme: scheme.clone(),
                port: port.clone(),
            });
        }
    }
    Ok(())
}

/// One endpoint as a subscriber saw it: the revision that created its key
/// (so a key deleted and re-created under the same uuid is a new
/// incarnation) and whether it was live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointSeen {
    /// The key's create revision.
    pub created: i64,
    /// Whether the document was live (not a tombstone).
    pub live: bool,
}

/// What one key's change means to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointChange {
    /// The endpoint died: a live incarnation is gone.
    pub down: bool,
    /// A live incarnation appeared that was not live before.
    pub new: bool,
}

/// Classifies one uuid's change from `before` to `after` (`None`: no key, or
/// a value that does not decode). A live incarnation that is no longer there
/// is down, unless it departed cleanly (its key now holds a tombstone); a live
/// incarnation that was not there before is new. An update of the same live
/// incarnation (credentials) and anything done to a tombstone are neither.
pub fn endpoint_change(
    before: Option<EndpointSeen>,
    after: Option<EndpointSeen>,
) -> EndpointChange {
    let live = |seen: Option<EndpointSeen>| seen.filter(|s| s.live).map(|s| s.created);
    let (was, is) = (live(before), live(after));
    let same_key = matches!((before, after), (Some(b), Some(a)) if b.created == a.created);
    EndpointChange {
        // A tombstone written over the live key itself is a clean stop.
        down: was.is_some() && was != is && !same_key,
        new: is.is_some() && was != is,
    }
}

/// The uuids that became live (`new`) and that died (`down`) between two
/// listings of a service's endpoints, for a subscriber that relists after
/// losing history to compaction. Down means: live before, and now absent
/// (not departed cleanly). Without incarnations, a uuid live in both is
/// unchanged; see [`diff_endpoint_incarnations`] for the exact version.
pub fn diff_endpoints(
    old: &BTreeMap<String, ServiceEndpoint>,
    new: &BTreeMap<String, ServiceEndpoint>,
) -> (Vec<String>, Vec<String>) {
    let seen = |map: &BTreeMap<String, ServiceEndpoint>| -> BTreeMap<String, EndpointSeen> {
        map.iter()
            .map(|(id, e)| {
                let seen = EndpointSeen {
                    created: 0,
                    live: e.is_live(),
                };
                (id.clone(), seen)
            })
            .collect()
    };
    diff_endpoint_incarnations(&seen(old), &seen(new))
}

/// [`diff_endpoints`] over incarnations: a uuid whose key was deleted and
/// re-created in between (another create revision) is both down and new.
/// Both lists are in uuid order.
pub fn diff_endpoint_incarnations(
    old: &BTreeMap<String, EndpointSeen>,
    new: &BTreeMap<String, EndpointSeen>,
) -> (Vec<String>, Vec<String>) {
    let mut appeared = Vec::new();
    let mut died = Vec::new();
    let ids: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for id in ids {
        let change = endpoint_change(old.get(id).copied(), new.get(id).copied());
        if change.new {
            appeared.push(id.clone());
        }
        if change.down {
            died.push(id.clone());
        }
    }
    (appeared, died)
}

#[cfg(test)]
mod tests;
