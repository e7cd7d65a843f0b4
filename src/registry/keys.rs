//! The registry layout: every key Visor reads or writes, and the reverse
//! mapping from a key to what it names.
//!
//! This module is the contract documented in `docs/registry.md`, and the only
//! place that splits a key: everyone else reads what a key names from its
//! [`KeyPath`], whose segments are validated [`Name`]s. Prefixes end in `/` so
//! that listing app `web` never picks up app `web2`.

mod kind;
mod path;

use visor_controllers::Name;

pub use kind::Kind;
pub use path::KeyPath;

use super::error::{Error, Result};

/// Builds and parses keys under one root prefix (default `/visor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    root: String,
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
            Kind::Deployment => "deploys",
            Kind::Rollout => "rollouts",
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
    /// `/deploys/<app>`
    pub fn deployment(&self, app: &Name) -> String {
        self.join(&["deploys", app.as_str()])
    }
    /// `/rollouts/<app>`
    pub fn rollout(&self, app: &Name) -> String {
        self.join(&["rollouts", app.as_str()])
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
    pub fn tracked(&self, service: &Name, id: &Name) -> String {
        self.join(&["tracked", service.as_str(), id.as_str()])
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
        key.strip_prefix(self.root.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .map_or(KeyPath::Other, KeyPath::parse)
    }
}

/// The last `/`-separated segment of `key`: the name of the object it holds
/// (the whole key if it has no `/`). It needs no root, so a stored object can
/// say its own name.
pub(crate) fn last_segment(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(_, last)| last)
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
        let port = visor_controllers::EnvKey::parse("PORT").expect("valid");
        let group = visor_controllers::GroupKey::new(web.clone(), v1.clone(), http.clone());
        let table = [
            (keys.schema(), KeyPath::Schema),
            (keys.app(&web), KeyPath::App { app: web.clone() }),
            (
                keys.env(&web, "PORT"),
                KeyPath::Env {
                    app: web.clone(),
                    key: port,
                },
            ),
            (
                keys.proc(&web, &http),
                KeyPath::Proc {
                    app: web.clone(),
                    proc: http.clone(),
                },
            ),
            (
                keys.rev(&web, &v1),
                KeyPath::Rev {
                    app: web.clone(),
                    rev: v1.clone(),
                },
            ),
            (keys.scale(&web, &v1, &http), KeyPath::Scale { group }),
            (keys.host(&web), KeyPath::Host { host: web.clone() }),
            (keys.instance(&web), KeyPath::Instance { id: web.clone() }),
            (
                keys.ticket(&web, &v1),
                KeyPath::Ticket {
                    host: web.clone(),
                    ticket: v1.clone(),
                },
            ),
            (
                keys.relation(&web),
                KeyPath::Relation {
                    relation: web.clone(),
                },
            ),
            (
                keys.settings(&web, &v1),
                KeyPath::Settings {
                    relation: web.clone(),
                    unit: v1.clone(),
                },
            ),
            (
                keys.relation_state(&web, &v1),
                KeyPath::RelationState {
                    relation: web.clone(),
                    unit: v1.clone(),
                },
            ),
            (
                keys.hook(&v1, &web),
                KeyPath::Hook {
                    unit: v1.clone(),
                    relation: web.clone(),
                },
            ),
            (
                keys.service(&web),
                KeyPath::Service {
                    service: web.clone(),
                },
            ),
            (
                keys.endpoint(&web, &v1),
                KeyPath::Endpoint {
                    service: web.clone(),
                    id: v1.clone(),
                },
            ),
            (
                keys.tracked(&web, &v1),
                KeyPath::Tracked {
                    service: web.clone(),
                    id: v1.clone(),
                },
            ),
            (
                keys.service_status(&web),
                KeyPath::ServiceStatus {
                    service: web.clone(),
                },
            ),
            (keys.notification(7), KeyPath::Notification { seq: 7 }),
            (
                keys.notification_sequence(),
                KeyPath::Sequence {
                    name: name("notifications"),
                },
            ),
        ];
        for (key, path) in table {
            assert_eq!(keys.parse(&key), path, "{key}");
        }
    }

    #[test]
    fn the_last_segment_is_the_objects_name() {
        assert_eq!(last_segment("/visor/tickets/h1/t1"), "t1");
        assert_eq!(last_segment("t1"), "t1");
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
