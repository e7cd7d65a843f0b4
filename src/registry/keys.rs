//! The registry layout: every key Visor reads or writes, and the reverse
//! mapping from a key to what it names.
//!
//! This module is the contract documented in `docs/registry.md`. Prefixes end in
//! `/` so that listing app `web` never picks up app `web2`.

use visor_controllers::{EnvKey, Name};

use super::error::Kind;

use super::error::{Error, Result};

/// Builds and parses keys under one root prefix (default `/visor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    root: String,
}

/// What a key under the root names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPath {
    /// `/schema`
    Schema,
    /// `/apps/<app>`
    App {
        /// App name.
        app: String,
    },
    /// `/env/<app>/<KEY>`
    Env {
        /// App name.
        app: String,
        /// Variable name.
        key: String,
    },
    /// `/procs/<app>/<proc>`
    Proc {
        /// App name.
        app: String,
        /// Proc type name.
        proc: String,
    },
    /// `/revs/<app>/<rev>`
    Rev {
        /// App name.
        app: String,
        /// Revision name.
        rev: String,
    },
    /// `/scale/<app>/<rev>/<proc>`
    Scale {
        /// App name.
        app: String,
        /// Revision name.
        rev: String,
        /// Proc type name.
        proc: String,
    },
    /// `/hosts/<host>`
    Host {
        /// Host name.
        host: String,
    },
    /// `/instances/<id>`
    Instance {
        /// Instance id.
        id: String,
    },
    /// `/tickets/<host>/<ticket>`
    Ticket {
        /// Addressed host.
        host: String,
        /// Ticket id.
        ticket: String,
    },
    /// `/relations/<rel-id>`
    Relation {
        /// Relation id.
        relation: String,
    },
    /// `/settings/<rel-id>/<unit>`
    Settings {
        /// Relation id.
        relation: String,
        /// The unit whose settings these are.
        unit: String,
    },
    /// `/relstate/<rel-id>/<unit>`
    RelationState {
        /// Relation id.
        relation: String,
        /// The unit that acknowledged this state.
        unit: String,
    },
    /// `/hooks/<unit>/<rel-id>`
    Hook {
        /// The unit that must run it.
        unit: String,
        /// Relation id.
        relation: String,
    },
    /// `/services/<svc>`
    Service {
        /// Service name.
        service: String,
    },
    /// `/endpoints/<svc>/<uuid>`
    Endpoint {
        /// Service name.
        service: String,
        /// The endpoint's uuid.
        id: String,
    },
    /// `/tracked/<svc>/<uuid>`
    Tracked {
        /// Service name.
        service: String,
        /// The endpoint's uuid.
        id: String,
    },
    /// `/servicestatus/<svc>`
    ServiceStatus {
        /// Service name.
        service: String,
    },
    /// `/notifications/<seq>` (the sequence number, zero-padded to 20 digits)
    Notification {
        /// The sequence number as written in the key.
        seq: String,
    },
    /// `/sequences/<name>`
    Sequence {
        /// What it numbers.
        name: String,
    },
    /// Anything else under the root (other layers' keys, or junk).
    Other,
}

impl KeyPath {
    /// The kind of object the key holds; `None` for the schema and foreign keys.
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Self::App { .. } => Some(Kind::App),
            Self::Env { .. } => Some(Kind::Env),
            Self::Proc { .. } => Some(Kind::Proc),
            Self::Rev { .. } => Some(Kind::Rev),
            Self::Scale { .. } => Some(Kind::Scale),
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
}

impl Keys {
    /// Keys under `root`, which must start with `/` and not end with one.
    pub fn new(root: &str) -> Result<Self> {
        let valid =
            root.starts_with('/') && !root.ends_with('/') && !root.contains("//") && root.len() > 1;
        if !valid {
            return Err(Error::Config(format!(
                "root prefix {root:?} must start with '/', not end with '/', and have no empty segment"
            )));
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The root prefix itself.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The prefix of everything Visor stores, with a trailing `/`.
    pub fn all(&self) -> String {
        format!("{}/", self.root)
    }

    fn join(&self, parts: &[&str]) -> String {
        let mut key = self.root.clone();
        for part in parts {
            key.push('/');
            key.push_str(part);
        }
        key
    }

    /// `/schema`
    pub fn schema(&self) -> String {
        self.join(&["schema"])
    }
    /// The prefix holding every object of `kind`, e.g. `/procs/` (`/schema` for the schema).
    pub fn kind_prefix(&self, kind: Kind) -> String {
        let segment = match kind {
            Kind::Schema => return self.schema(),
            Kind::App => "apps",
            Kind::Env => "env",
            Kind::Proc => "procs",
            Kind::Rev => "revs",
            Kind::Scale => "scale",
            Kind::Host => "hosts",
            Kind::Instance => "instances",
            Kind::Ticket => "tickets",
            Kind::Relation => "relations",
            Kind::Settings => "settings",
            Kind::RelationState => "relstate",
            Kind::Hook => "hooks",
            Kind::Service => "services",
            Kind::Endpoint => "endpoints",
            Kind::Tracked => "tracked",
            Kind::ServiceStatus => "servicestatus",
            Kind::Notification => "notifications",
            Kind::Sequence => "sequences",
        };
        self.join(&[segment, ""])
    }

    /// `/leader`: the controller's election prefix.
    pub fn leader(&self) -> String {
        self.join(&["leader"])
    }
    /// `/apps/`
    pub fn apps(&self) -> String {
        self.join(&["apps", ""])
    }
    /// `/apps/<app>`
    pub fn app(&self, app: &Name) -> String {
        self.join(&["apps", app.as_str()])
    }
    /// `/env/<app>/`
    pub fn envs(&self, app: &Name) -> String {
        self.join(&["env", app.as_str(), ""])
    }
    /// `/env/<app>/<KEY>`
    pub fn env(&self, app: &Name, key: &str) -> String {
        self.join(&["env", app.as_str(), key])
    }
    /// `/procs/<app>/`
    pub fn procs(&self, app: &Name) -> String {
        self.join(&["procs", app.as_str(), ""])
    }
    /// `/procs/<app>/<proc>`
    pub fn proc(&self, app: &Name, proc: &Name) -> String {
        self.join(&["procs", app.as_str(), proc.as_str()])
    }
    /// `/revs/<app>/`
    pub fn revs(&self, app: &Name) -> String {
        self.join(&["revs", app.as_str(), ""])
    }
    /// `/revs/<app>/<rev>`
    pub fn rev(&self, app: &Name, rev: &Name) -> String {
        self.join(&["revs", app.as_str(), rev.as_str()])
    }
    /// `/scale/` or `/scale/<app>/`
    pub fn scales(&self, app: Option<&Name>) -> String {
        match app {
            Some(app) => self.join(&["scale", app.as_str(), ""]),
            None => self.join(&["scale", ""]),
        }
    }
    /// `/scale/<app>/<rev>/`
    pub fn rev_scales(&self, app: &Name, rev: &Name) -> String {
        self.join(&["scale", app.as_str(), rev.as_str(), ""])
    }
    /// `/scale/<app>/<rev>/<proc>`
    pub fn scale(&self, app: &Name, rev: &Name, proc: &Name) -> String {
        self.join(&["scale", app.as_str(), rev.as_str(), proc.as_str()])
    }
    /// `/hosts/`
    pub fn hosts(&self) -> String {
        self.join(&["hosts", ""])
    }
    /// `/hosts/<host>`
    pub fn host(&self, host: &Name) -> String {
        self.join(&["hosts", host.as_str()])
    }
    /// `/instances/`
    pub fn instances(&self) -> String {
        self.join(&["instances", ""])
    }
    /// `/instances/<id>`
    pub fn instance(&self, id: &Name) -> String {
        self.join(&["instances", id.as_str()])
    }
    /// `/tickets/` or `/tickets/<host>/`
    pub fn tickets(&self, host: Option<&Name>) -> String {
        match host {
            Some(host) => self.join(&["tickets", host.as_str(), ""]),
            None => self.join(&["tickets", ""]),
        }
    }
    /// `/tickets/<host>/<ticket>`
    pub fn ticket(&self, host: &Name, ticket: &Name) -> String {
        self.join(&["tickets", host.as_str(), ticket.as_str()])
    }

    /// `/relations/<rel-id>`
    pub fn relation(&self, relation: &Name) -> String {
        self.join(&["relations", relation.as_str()])
    }
    /// `/settings/<rel-id>/`
    pub fn relation_settings(&self, relation: &Name) -> String {
        self.join(&["settings", relation.as_str(), ""])
    }
    /// `/settings/<rel-id>/<unit>`
    pub fn settings(&self, relation: &Name, unit: &Name) -> String {
        self.join(&["settings", relation.as_str(), unit.as_str()])
    }
    /// `/relstate/<rel-id>/`
    pub fn relation_states(&self, relation: &Name) -> String {
        self.join(&["relstate", relation.as_str(), ""])
    }
    /// `/relstate/<rel-id>/<unit>`
    pub fn relation_state(&self, relation: &Name, unit: &Name) -> String {
        self.join(&["relstate", relation.as_str(), unit.as_str()])
    }
    /// `/hooks/` or `/hooks/<unit>/`
    pub fn hooks(&self, unit: Option<&Name>) -> String {
        match unit {
            Some(unit) => self.join(&["hooks", unit.as_str(), ""]),
            None => self.join(&["hooks", ""]),
        }
    }
    /// `/hooks/<unit>/<rel-id>`
    pub fn hook(&self, unit: &Name, relation: &Name) -> String {
        self.join(&["hooks", unit.as_str(), relation.as_str()])
    }

    /// `/services/<svc>`
    pub fn service(&self, service: &Name) -> String {
        self.join(&["services", service.as_str()])
    }
    /// `/endpoints/<svc>/`
    pub fn endpoints(&self, service: &Name) -> String {
        self.join(&["endpoints", service.as_str(), ""])
    }
    /// `/endpoints/<svc>/<uuid>`
    pub fn endpoint(&self, service: &Name, id: &Name) -> String {
        self.join(&["endpoints", service.as_str(), id.as_str()])
    }

    /// `/tracked/<svc>/<uuid>`
    pub fn tracked(&self, service: &Name, id: &str) -> String {
        self.join(&["tracked", service.as_str(), id])
    }
    /// `/servicestatus/<svc>`
    pub fn service_status(&self, service: &Name) -> String {
        self.join(&["servicestatus", service.as_str()])
    }
    /// `/notifications/<seq>`, the number zero-padded so key order is
    /// sequence order.
    pub fn notification(&self, seq: u64) -> String {
        self.join(&["notifications", &format!("{seq:020}")])
    }
    /// `/sequences/notifications`
    pub fn notification_sequence(&self) -> String {
        self.join(&["sequences", "notifications"])
    }

    /// What `key` names; [`KeyPath::Other`] for keys outside the layout.
    pub fn parse(&self, key: &str) -> KeyPath {
        let Some(rest) = key
            .strip_prefix(self.root.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            return KeyPath::Other;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        // Every name segment must be a valid name (an env var key for env keys):
        // `etcdctl put /visor/apps/Web` names nothing Visor could have written.
        let valid = parts.iter().enumerate().skip(1).all(|(i, part)| {
            if parts[0] == "env" && i == 2 {
                EnvKey::parse(part).is_ok()
            } else {
                Name::parse("key segment", part).is_ok()
            }
        });
        if !valid {
            return KeyPath::Other;
        }
        let s = |i: usize| parts[i].to_owned();
        match parts.as_slice() {
            ["schema"] => KeyPath::Schema,
            ["apps", _] => KeyPath::App { app: s(1) },
            ["env", _, _] => KeyPath::Env {
                app: s(1),
                key: s(2),
            },
            ["procs", _, _] => KeyPath::Proc {
                app: s(1),
                proc: s(2),
            },
            ["revs", _, _] => KeyPath::Rev {
                app: s(1),
                rev: s(2),
            },
            ["scale", _, _, _] => KeyPath::Scale {
                app: s(1),
                rev: s(2),
                proc: s(3),
            },
            ["hosts", _] => KeyPath::Host { host: s(1) },
            ["instances", _] => KeyPath::Instance { id: s(1) },
            ["tickets", _, _] => KeyPath::Ticket {
                host: s(1),
                ticket: s(2),
            },
            ["relations", _] => KeyPath::Relation { relation: s(1) },
            ["settings", _, _] => KeyPath::Settings {
                relation: s(1),
                unit: s(2),
            },
            ["relstate", _, _] => KeyPath::RelationState {
                relation: s(1),
                unit: s(2),
            },
            ["hooks", _, _] => KeyPath::Hook {
                unit: s(1),
                relation: s(2),
            },
            ["services", _] => KeyPath::Service { service: s(1) },
            ["tracked", _, _] => KeyPath::Tracked {
                service: s(1),
                id: s(2),
            },
            ["servicestatus", _] => KeyPath::ServiceStatus { service: s(1) },
            ["notifications", _] => KeyPath::Notification { seq: s(1) },
            ["sequences", _] => KeyPath::Sequence { name: s(1) },
            ["endpoints", _, _] => KeyPath::Endpoint {
                service: s(1),
                id: s(2),
            },
            _ => KeyPath::Other,
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
    fn root_prefix_is_validated() {
        for bad in ["", "/", "visor", "/visor/", "/a//b"] {
            assert!(Keys::new(bad).is_err(), "{bad:?}");
        }
        assert!(Keys::new("/a/b").is_ok());
    }

    #[test]
    fn built_keys_parse_back() {
        let keys = Keys::new("/visor").expect("valid root");
        let (web, v1, http) = (name("web"), name("v1"), name("http"));
        let table = [
            (keys.schema(), KeyPath::Schema),
            (keys.app(&web), KeyPath::App { app: "web".into() }),
            (
                keys.env(&web, "PORT"),
                KeyPath::Env {
                    app: "web".into(),
                    key: "PORT".into(),
                },
            ),
            (
                keys.proc(&web, &http),
                KeyPath::Proc {
                    app: "web".into(),
                    proc: "http".into(),
                },
            ),
            (
                keys.rev(&web, &v1),
                KeyPath::Rev {
                    app: "web".into(),
                    rev: "v1".into(),
                },
            ),
            (
                keys.scale(&web, &v1, &http),
                KeyPath::Scale {
                    app: "web".into(),
                    rev: "v1".into(),
                    proc: "http".into(),
                },
            ),
            (keys.host(&web), KeyPath::Host { host: "web".into() }),
            (keys.instance(&web), KeyPath::Instance { id: "web".into() }),
            (
                keys.ticket(&web, &v1),
                KeyPath::Ticket {
                    host: "web".into(),
                    ticket: "v1".into(),
                },
            ),
            (
                keys.relation(&web),
                KeyPath::Relation {
                    relation: "web".into(),
                },
            ),
            (
                keys.settings(&web, &v1),
                KeyPath::Settings {
                    relation: "web".into(),
                    unit: "v1".into(),
                },
            ),
            (
                keys.relation_state(&web, &v1),
                KeyPath::RelationState {
                    relation: "web".into(),
                    unit: "v1".into(),
                },
            ),
            (
                keys.hook(&v1, &web),
                KeyPath::Hook {
                    unit: "v1".into(),
                    relation: "web".into(),
                },
            ),
            (
                keys.service(&web),
                KeyPath::Service {
                    service: "web".into(),
                },
            ),
            (
                keys.endpoint(&web, &v1),
                KeyPath::Endpoint {
                    service: "web".into(),
                    id: "v1".into(),
                },
            ),
        ];
        for (key, path) in table {
            assert_eq!(keys.parse(&key), path, "{key}");
        }
    }

    #[test]
    fn foreign_keys_are_other() {
        let keys = Keys::new("/visor").expect("valid root");
        for key in [
            "/other/apps/web",
            "/visorx/apps/web",
            "/visor/apps/",
            "/visor/apps/web/x",
            "/visor/junk",
            "/visor/apps/Web",
            "/visor/env/web/1BAD",
            "/visor/scale/web/v_1/http",
        ] {
            assert_eq!(keys.parse(key), KeyPath::Other, "{key}");
        }
    }

    #[test]
    fn listing_prefixes_do_not_overlap_between_apps() {
        let keys = Keys::new("/visor").expect("valid root");
        assert!(
            !keys
                .env(&name("web2"), "A")
                .starts_with(&keys.envs(&name("web")))
        );
    }
}
