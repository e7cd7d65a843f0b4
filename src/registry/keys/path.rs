//! What a key under the root names, read back into typed values.
//!
//! Invariant: a [`KeyPath`] other than [`KeyPath::Other`] only holds valid
//! names (an env var key for env keys, a number for notifications), so
//! whoever reads one never validates its parts again. A key Visor could not
//! have written (`etcdctl put /visor/apps/Web`) names nothing: it is `Other`.

use visor_controllers::{EnvKey, GroupKey, Name};

use super::Kind;

/// What a key under the root names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPath {
    /// `/schema`
    Schema,
    /// `/apps/<app>`
    App {
        /// App name.
        app: Name,
    },
    /// `/env/<app>/<KEY>`
    Env {
        /// App name.
        app: Name,
        /// Variable name.
        key: EnvKey,
    },
    /// `/procs/<app>/<proc>`
    Proc {
        /// App name.
        app: Name,
        /// Proc type name.
        proc: Name,
    },
    /// `/revs/<app>/<rev>`
    Rev {
        /// App name.
        app: Name,
        /// Revision name.
        rev: Name,
    },
    /// `/scale/<app>/<rev>/<proc>`
    Scale {
        /// The (app, rev, proc) group it scales.
        group: GroupKey,
    },
    /// `/deploys/<app>`
    Deployment {
        /// App name.
        app: Name,
    },
    /// `/rollouts/<app>`
    Rollout {
        /// App name.
        app: Name,
    },
    /// `/hosts/<host>`
    Host {
        /// Host name.
        host: Name,
    },
    /// `/instances/<id>`
    Instance {
        /// Instance id.
        id: Name,
    },
    /// `/tickets/<host>/<ticket>`
    Ticket {
        /// Addressed host.
        host: Name,
        /// Ticket id.
        ticket: Name,
    },
    /// `/relations/<rel-id>`
    Relation {
        /// Relation id.
        relation: Name,
    },
    /// `/settings/<rel-id>/<unit>`
    Settings {
        /// Relation id.
        relation: Name,
        /// The unit whose settings these are.
        unit: Name,
    },
    /// `/relstate/<rel-id>/<unit>`
    RelationState {
        /// Relation id.
        relation: Name,
        /// The unit that acknowledged this state.
        unit: Name,
    },
    /// `/hooks/<unit>/<rel-id>`
    Hook {
        /// The unit that must run it.
        unit: Name,
        /// Relation id.
        relation: Name,
    },
    /// `/services/<svc>`
    Service {
        /// Service name.
        service: Name,
    },
    /// `/endpoints/<svc>/<uuid>`
    Endpoint {
        /// Service name.
        service: Name,
        /// The endpoint's uuid.
        id: Name,
    },
    /// `/tracked/<svc>/<uuid>`
    Tracked {
        /// Service name.
        service: Name,
        /// The endpoint's uuid.
        id: Name,
    },
    /// `/servicestatus/<svc>`
    ServiceStatus {
        /// Service name.
        service: Name,
    },
    /// `/notifications/<seq>` (the sequence number, zero-padded to 20 digits)
    Notification {
        /// The sequence number.
        seq: u64,
    },
    /// `/sequences/<name>`
    Sequence {
        /// What it numbers.
        name: Name,
    },
    /// Anything else under the root (other layers' keys, or junk).
    Other,
}

/// The most segments a key below the root has (`scale/<app>/<rev>/<proc>`).
const MAX_SEGMENTS: usize = 4;

impl KeyPath {
    /// What `rest`, a key with its root and the `/` after it removed, names.
    pub(super) fn parse(rest: &str) -> Self {
        // Caches and reconciles parse every key they read: no allocation
        // beyond the names themselves.
        let mut parts = [""; MAX_SEGMENTS];
        let mut count = 0;
        for segment in rest.split('/') {
            let Some(slot) = parts.get_mut(count) else {
                return Self::Other;
            };
            *slot = segment;
            count += 1;
        }
        Self::of_segments(&parts[..count]).unwrap_or(Self::Other)
    }

    /// The path of a key's segments; `None` when they fit no key type or a
    /// segment is not a valid name.
    fn of_segments(parts: &[&str]) -> Option<Self> {
        let name = |segment: &str| Name::parse("key segment", segment).ok();
        Some(match *parts {
            ["schema"] => Self::Schema,
            ["apps", app] => Self::App { app: name(app)? },
            ["env", app, key] => Self::Env {
                app: name(app)?,
                key: EnvKey::parse(key).ok()?,
            },
            ["procs", app, proc] => Self::Proc {
                app: name(app)?,
                proc: name(proc)?,
            },
            ["revs", app, rev] => Self::Rev {
                app: name(app)?,
                rev: name(rev)?,
            },
            ["scale", app, rev, proc] => Self::Scale {
                group: GroupKey::new(name(app)?, name(rev)?, name(proc)?),
            },
            ["deploys", app] => Self::Deployment { app: name(app)? },
            ["rollouts", app] => Self::Rollout { app: name(app)? },
            ["hosts", host] => Self::Host { host: name(host)? },
            ["instances", id] => Self::Instance { id: name(id)? },
            ["tickets", host, ticket] => Self::Ticket {
                host: name(host)?,
                ticket: name(ticket)?,
            },
            ["relations", relation] => Self::Relation {
                relation: name(relation)?,
            },
            ["settings", relation, unit] => Self::Settings {
                relation: name(relation)?,
                unit: name(unit)?,
            },
            ["relstate", relation, unit] => Self::RelationState {
                relation: name(relation)?,
                unit: name(unit)?,
            },
            ["hooks", unit, relation] => Self::Hook {
                unit: name(unit)?,
                relation: name(relation)?,
            },
            ["services", service] => Self::Service {
                service: name(service)?,
            },
            ["endpoints", service, id] => Self::Endpoint {
                service: name(service)?,
                id: name(id)?,
            },
            ["tracked", service, id] => Self::Tracked {
                service: name(service)?,
                id: name(id)?,
            },
            ["servicestatus", service] => Self::ServiceStatus {
                service: name(service)?,
            },
            // Digits only: `u64`'s parser would also take a leading `+`.
            ["notifications", seq]
                if !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Self::Notification {
                    seq: seq.parse().ok()?,
                }
            }
            ["sequences", sequence] => Self::Sequence {
                name: name(sequence)?,
            },
            _ => return None,
        })
    }

    /// The kind of object the key holds; `None` for the schema and foreign keys.
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Self::App { .. } => Some(Kind::App),
            Self::Env { .. } => Some(Kind::Env),
            Self::Proc { .. } => Some(Kind::Proc),
            Self::Rev { .. } => Some(Kind::Rev),
            Self::Scale { .. } => Some(Kind::Scale),
            Self::Deployment { .. } => Some(Kind::Deployment),
            Self::Rollout { .. } => Some(Kind::Rollout),
            Self::Host { .. } => Some(Kind::Host),
            Self::Instance { .. } => Some(Kind::Instance),
            Self::Ticket { .. } => Some(Kind::Ticket),
            Self::Relation { .. } => Some(Kind::Relation),
            Self::Settings { .. } => Some(Kind::Settings),
            Self::RelationState { .. } => Some(Kind::RelationState),
            Self::Hook { .. } => Some(Kind::Hook),
            Self::Service { .. } => Some(Kind::Service),
            Self::Endpoint { .. } => Some(Kind::Endpoint),
            Self::Tracked { .. } => Some(Kind::Tracked),
            Self::ServiceStatus { .. } => Some(Kind::ServiceStatus),
            Self::Notification { .. } => Some(Kind::Notification),
            Self::Sequence { .. } => Some(Kind::Sequence),
            Self::Schema | Self::Other => None,
        }
    }

    /// The object's own name, its key's last segment: the app of an app key,
    /// the ticket of a ticket key, the unit of a settings key, the relation of
    /// a hook key. `None` where that segment is no name (env vars,
    /// notifications) and for the schema and foreign keys.
    pub fn name(&self) -> Option<&Name> {
        match self {
            Self::App { app: name }
            | Self::Deployment { app: name }
            | Self::Rollout { app: name }
            | Self::Proc { proc: name, .. }
            | Self::Rev { rev: name, .. }
            | Self::Host { host: name }
            | Self::Instance { id: name }
            | Self::Ticket { ticket: name, .. }
            | Self::Relation { relation: name }
            | Self::Settings { unit: name, .. }
            | Self::RelationState { unit: name, .. }
            | Self::Hook { relation: name, .. }
            | Self::Service { service: name }
            | Self::Endpoint { id: name, .. }
            | Self::Tracked { id: name, .. }
            | Self::ServiceStatus { service: name }
            | Self::Sequence { name } => Some(name),
            Self::Scale { group } => Some(&group.proc),
            Self::Schema | Self::Env { .. } | Self::Notification { .. } | Self::Other => None,
        }
    }

    /// The host a ticket key is addressed to; `None` for any other key.
    pub fn addressee(&self) -> Option<&Name> {
        match self {
            Self::Ticket { host, .. } => Some(host),
            _ => None,
        }
    }

    /// The relation a relation, settings, relation state or hook key is of;
    /// `None` for any other key.
    pub fn relation(&self) -> Option<&Name> {
        match self {
            Self::Relation { relation }
            | Self::Settings { relation, .. }
            | Self::RelationState { relation, .. }
            | Self::Hook { relation, .. } => Some(relation),
            _ => None,
        }
    }

    /// The unit a settings, relation state or hook key is of; `None` for any
    /// other key.
    pub fn unit(&self) -> Option<&Name> {
        match self {
            Self::Settings { unit, .. }
            | Self::RelationState { unit, .. }
            | Self::Hook { unit, .. } => Some(unit),
            _ => None,
        }
    }

    /// The (app, child) of a proc type or revision key; `None` for any other key.
    pub fn app_child(self) -> Option<(Name, Name)> {
        match self {
            Self::Proc { app, proc: child } | Self::Rev { app, rev: child } => Some((app, child)),
            _ => None,
        }
    }

    /// The group a scale factor's key names; `None` for any other key.
    pub fn group(self) -> Option<GroupKey> {
        match self {
            Self::Scale { group } => Some(group),
            _ => None,
        }
    }

    /// The (service, endpoint id) of an endpoint or tracked endpoint key;
    /// `None` for any other key.
    pub fn service_endpoint(self) -> Option<(Name, Name)> {
        match self {
            Self::Endpoint { service, id } | Self::Tracked { service, id } => Some((service, id)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse("test", s).expect("valid")
    }

    #[test]
    fn accessors_read_the_segment_they_name() {
        let settings = KeyPath::parse("settings/db/i1");
        assert_eq!(settings.relation(), Some(&name("db")));
        assert_eq!(settings.unit(), Some(&name("i1")));
        assert_eq!(settings.name(), Some(&name("i1")));
        let hook = KeyPath::parse("hooks/i1/db");
        assert_eq!(hook.unit(), Some(&name("i1")));
        assert_eq!(hook.relation(), Some(&name("db")));
        assert_eq!(hook.name(), Some(&name("db")));
        let ticket = KeyPath::parse("tickets/h1/t1");
        assert_eq!(ticket.addressee(), Some(&name("h1")));
        assert_eq!(ticket.name(), Some(&name("t1")));
        assert_eq!(
            KeyPath::parse("scale/web/v1/http").group(),
            Some(GroupKey::new(name("web"), name("v1"), name("http")))
        );
        assert_eq!(
            KeyPath::parse("revs/web/v1").app_child(),
            Some((name("web"), name("v1")))
        );
        assert_eq!(
            KeyPath::parse("tracked/db/e1").service_endpoint(),
            Some((name("db"), name("e1")))
        );
        // An accessor of another key type has nothing to say.
        assert_eq!(KeyPath::parse("hosts/h1").addressee(), None);
        assert_eq!(KeyPath::parse("env/web/PORT").name(), None);
        assert_eq!(KeyPath::Other.relation(), None);
    }

    #[test]
    fn notifications_are_numbered() {
        assert_eq!(
            KeyPath::parse("notifications/00000000000000000042"),
            KeyPath::Notification { seq: 42 }
        );
        for junk in ["notifications/abc", "notifications/+1", "notifications/"] {
            assert_eq!(KeyPath::parse(junk), KeyPath::Other, "{junk}");
        }
    }
}
