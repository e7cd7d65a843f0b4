//! Down-service notifications: which endpoints died, which critical services
//! fell below (or came back to) their minimum, decided from what the
//! registry shows.
//!
//! The controller keeps a *tracked* record of every live endpoint it has
//! seen. An endpoint that is tracked and then gone without a clean-stop
//! tombstone died (its lease expired, or it was deleted by hand); one whose
//! host is down or whose instance is lost died too, even while its key
//! lives. A tombstone (the endpoint rewritten with `departed`, by a clean
//! stop) is forgotten without a notification.
//!
//! Invariants: each death is reported by exactly one action, which names
//! the tracked record or the endpoint it consumes, so applying the action
//! in the same transaction as that consumption reports it exactly once;
//! a critical service changes between degraded and restored only by one
//! action per change, against its persisted status; actions come in a
//! deterministic order (by service, then endpoint id), the order the
//! notifications are numbered in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::name::Name;

/// What a notification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationKind {
    /// An endpoint of a service died.
    ServiceDown,
    /// A critical service has fewer live endpoints than its minimum.
    ServiceDegraded,
    /// A degraded critical service is back at its minimum.
    ServiceRestored,
    /// A rollout missed its deadline: it rolls back, or pauses.
    RolloutFailed,
    /// A failed rollout is back on its stable revision.
    RolloutRolledBack,
}

impl NotificationKind {
    /// The name used in documents, e.g. `service-down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServiceDown => "service-down",
            Self::ServiceDegraded => "service-degraded",
            Self::ServiceRestored => "service-restored",
            Self::RolloutFailed => "rollout-failed",
            Self::RolloutRolledBack => "rollout-rolled-back",
        }
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `/notifications/<seq>`: one persisted notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Its place in the sequence, from 1, without gaps.
    pub seq: u64,
    /// What it reports.
    pub kind: NotificationKind,
    /// The service (for the `service-*` kinds).
    #[serde(default)]
    pub service: Option<Name>,
    /// The endpoint that died (for `service-down`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// That endpoint's public hostname, as last registered.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The app whose rollout it reports (for the `rollout-*` kinds).
    #[serde(default)]
    pub app: Option<Name>,
    /// The revision that rollout was of.
    #[serde(default)]
    pub revision: Option<Name>,
    /// Why, in words.
    pub reason: String,
    /// When the controller noticed.
    pub detected_at: DateTime<Utc>,
}

/// `/tracked/<svc>/<uuid>`: the controller saw this endpoint alive. Its
/// disappearance without a tombstone is a death; consuming the record in
/// the same transaction as the notification reports it exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedEndpoint {
    /// The endpoint's public hostname, for the notification.
    pub hostname: String,
    /// The create revision of the endpoint key seen alive: a key re-created
    /// under the same uuid (a re-registration after a death) is another
    /// incarnation, and the tracked one died.
    pub incarnation: i64,
    /// When the controller first saw it.
    pub since: DateTime<Utc>,
}

/// `/servicestatus/<svc>`: whether a critical service is reported degraded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// A `service-degraded` was written and no `service-restored` since.
    pub degraded: bool,
    /// When that last changed.
    pub changed_at: DateTime<Utc>,
}

/// `/sequences/notifications`: the last notification sequence number used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    /// The last number handed out; the next is one more.
    pub last: u64,
}

/// How many notifications are kept, and for how long.
///
/// Invariant: a notification is kept while it is among the `keep` newest
/// and detected no earlier than `older_than`; one that cannot be read
/// counts as newly detected, so only its number can expire it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The last sequence number handed out.
    pub last: u64,
    /// How many of the newest are kept, at most.
    pub keep: u64,
    /// Those detected before this are removed whatever their number.
    pub older_than: DateTime<Utc>,
}

impl Retention {
    /// Whether notification `seq`, detected at `detected_at` (`None`: its
    /// document does not decode), is beyond retention.
    pub fn expires(&self, seq: u64, detected_at: Option<DateTime<Utc>>) -> bool {
        let beyond_count = seq.saturating_add(self.keep) <= self.last;
        beyond_count || detected_at.is_some_and(|at| at < self.older_than)
    }
}

/// Why an endpoint is considered dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// Its key went away without a clean stop (lease expired, or deleted).
    Vanished,
    /// Its host's registration is gone.
    HostDown(Name),
    /// Its instance is lost (or gone).
    InstanceLost(Name),
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vanished => f.write_str("its registration expired or was deleted"),
            Self::HostDown(host) => write!(f, "its host {host} is down"),
            Self::InstanceLost(instance) => write!(f, "its instance {instance} is lost"),
        }
    }
}

/// An endpoint as the registry shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointView {
    /// Its service.
    pub service: Name,
    /// Its id (uuid).
    pub id: Name,
    /// Its public hostname.
    pub hostname: String,
    /// The create revision of its key: which incarnation this is.
    pub incarnation: i64,
    /// Whether it is a clean-stop tombstone.
    pub departed: bool,
    /// When it stopped cleanly, for a tombstone that says.
    pub departed_at: Option<DateTime<Utc>>,
    /// The Visor host it runs on, if it said.
    pub host: Option<Name>,
    /// The instance it belongs to, if it said.
    pub instance: Option<Name>,
}

/// A service definition and its persisted status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// Its name.
    pub name: Name,
    /// Whether falling below `min_endpoints` is reported.
    pub critical: bool,
    /// The live endpoints it needs.
    pub min_endpoints: u32,
    /// Whether a `service-degraded` was reported and not yet restored.
    pub degraded: bool,
}

/// Everything the services decision reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicesSnapshot {
    /// Service definitions.
    pub services: Vec<ServiceView>,
    /// Every endpoint key, live or tombstone.
    pub endpoints: Vec<EndpointView>,
    /// The tracked records: (service, endpoint id) → (hostname, incarnation).
    pub tracked: BTreeMap<(Name, Name), (String, i64)>,
    /// Registered hosts.
    pub live_hosts: BTreeSet<Name>,
    /// Instances that are lost.
    pub lost_instances: BTreeSet<Name>,
    /// Tombstones of clean stops before this moment are swept (a tombstone
    /// without a time, at once); later ones are kept for lagging subscribers.
    pub sweep_before: Option<DateTime<Utc>>,
}

/// One thing to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAction {
    /// Start tracking a live endpoint.
    Track {
        /// Its service.
        service: Name,
        /// Its id.
        id: Name,
        /// Its hostname, kept for the notification should it die.
        hostname: String,
        /// The incarnation tracked.
        incarnation: i64,
    },
    /// Forget a cleanly stopped endpoint: drop its tracked record and, once
    /// old enough, its tombstone. No notification.
    Forget {
        /// Its service.
        service: Name,
        /// Its id.
        id: Name,
        /// Whether a tracked record exists to drop.
        tracked: bool,
        /// Whether the tombstone goes too.
        sweep: bool,
    },
    /// Report a death: write a `service-down`, drop the tracked record (if
    /// any) and the endpoint key (if present), all at once.
    Down {
        /// Its service.
        service: Name,
        /// Its id.
        id: Name,
        /// Its hostname.
        hostname: String,
        /// Why it is dead.
        reason: DownReason,
        /// Whether a tracked record exists to drop.
        tracked: bool,
        /// Whether the endpoint key still exists (to delete).
        present: bool,
    },
    /// Report a critical service below its minimum, and persist that.
    Degraded {
        /// The service.
        service: Name,
        /// Its live endpoints.
        live: u32,
        /// Its minimum.
        minimum: u32,
    },
    /// Report a degraded critical service back at its minimum, and persist that.
    Restored {
        /// The service.
        service: Name,
        /// Its live endpoints.
        live: u32,
        /// Its minimum.
        minimum: u32,
    },
}

/// What a reporting action posts: its notification's kind and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What the notification reports.
    pub kind: NotificationKind,
    /// Why, in words.
    pub reason: String,
}

impl ServiceAction {
    /// The notification this action posts; `None` for the bookkeeping ones
    /// (tracking, forgetting).
    pub fn report(&self) -> Option<Report> {
        let (kind, reason) = match self {
            Self::Track { .. } | Self::Forget { .. } => return None,
            Self::Down { reason, .. } => (NotificationKind::ServiceDown, reason.to_string()),
            Self::Degraded { live, minimum, .. } => (
                NotificationKind::ServiceDegraded,
                format!("{live} live endpoints, fewer than its minimum of {minimum}"),
            ),
            Self::Restored { live, minimum, .. } => (
                NotificationKind::ServiceRestored,
                format!("{live} live endpoints, at least its minimum of {minimum}"),
            ),
        };
        Some(Report { kind, reason })
    }
}

/// Decides the actions for `snapshot`, ordered by service then endpoint id;
/// per service its deaths (and tracking) come before its status change.
pub fn plan_services(snapshot: &ServicesSnapshot) -> Vec<ServiceAction> {
    let endpoints: BTreeMap<(&Name, &Name), &EndpointView> = snapshot
        .endpoints
        .iter()
        .map(|e| ((&e.service, &e.id), e))
        .collect();
    let ids: BTreeSet<(&Name, &Name)> = endpoints
        .keys()
        .copied()
        .chain(snapshot.tracked.keys().map(|(s, id)| (s, id)))
        .collect();
    let mut per_service: BTreeMap<&Name, Vec<ServiceAction>> = BTreeMap::new();
    let mut live: BTreeMap<&Name, u32> = BTreeMap::new();
    for (service, id) in ids {
        let tracked = snapshot.tracked.get(&(service.clone(), id.clone()));
        let mut actions = Vec::new();
        // A tracked incarnation that is not the key's current one died, even
        // if the key is back (re-registered under the same uuid).
        let current = endpoints.get(&(service, id)).map(|e| e.incarnation);
        let tracked = match tracked {
            Some((hostname, incarnation)) if current != Some(*incarnation) => {
                actions.push(down(
                    service,
                    id,
                    hostname,
                    DownReason::Vanished,
                    true,
                    false,
                ));
                None
            }
            other => other.map(|(hostname, _)| hostname),
        };
        let action = match (endpoints.get(&(service, id)), tracked) {
            (None, _) => None,
            (Some(endpoint), _) if endpoint.departed => {
                let sweep = match (endpoint.departed_at, snapshot.sweep_before) {
                    (Some(at), Some(before)) => at < before,
                    (None, _) => true,
                    (Some(_), None) => false,
                };
                (tracked.is_some() || sweep).then(|| ServiceAction::Forget {
                    service: service.clone(),
                    id: id.clone(),
                    tracked: tracked.is_some(),
                    sweep,
                })
            }
            (Some(endpoint), tracked) => match death(endpoint, snapshot) {
                Some(reason) => Some(down(
                    service,
                    id,
                    &endpoint.hostname,
                    reason,
                    tracked.is_some(),
                    true,
                )),
                None => {
                    *live.entry(service).or_default() += 1;
                    tracked.is_none().then(|| ServiceAction::Track {
                        service: service.clone(),
                        id: id.clone(),
                        hostname: endpoint.hostname.clone(),
                        incarnation: endpoint.incarnation,
                    })
                }
            },
        };
        actions.extend(action);
        per_service.entry(service).or_default().extend(actions);
    }
    for service in snapshot.services.iter().filter(|s| s.critical) {
        let count = live.get(&service.name).copied().unwrap_or(0);
        let below = count < service.min_endpoints;
        let change = match (below, service.degraded) {
            (true, false) => Some(ServiceAction::Degraded {
                service: service.name.clone(),
                live: count,
                minimum: service.min_endpoints,
            }),
            (false, true) => Some(ServiceAction::Restored {
                service: service.name.clone(),
                live: count,
                minimum: service.min_endpoints,
            }),
            _ => None,
        };
        if let Some(change) = change {
            per_service.entry(&service.name).or_default().push(change);
        }
    }
    per_service.into_values().flatten().collect()
}

fn down(
    service: &Name,
    id: &Name,
    hostname: &str,
    reason: DownReason,
    tracked: bool,
    present: bool,
) -> ServiceAction {
    ServiceAction::Down {
        service: service.clone(),
        id: id.clone(),
        hostname: hostname.to_owned(),
        reason,
        tracked,
        present,
    }
}

/// Why a live endpoint key is nonetheless dead, if it is.
fn death(endpoint: &EndpointView, snapshot: &ServicesSnapshot) -> Option<DownReason> {
    if let Some(host) = endpoint
        .host
        .as_ref()
        .filter(|h| !snapshot.live_hosts.contains(*h))
    {
        return Some(DownReason::HostDown(host.clone()));
    }
    endpoint
        .instance
        .as_ref()
        .filter(|i| snapshot.lost_instances.contains(*i))
        .map(|i| DownReason::InstanceLost(i.clone()))
}

#[cfg(test)]
mod tests;
