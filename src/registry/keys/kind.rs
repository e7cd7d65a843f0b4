//! The kinds of object the registry stores: one per key type of the layout.
//!
//! A kind names an object to people (`as_str`, in errors and logs) and to
//! metrics (`label`, one word); the layout maps each kind to its prefix.

/// The kinds of object the registry stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `/schema`
    Schema,
    /// `/apps/<app>`
    App,
    /// `/env/<app>/<KEY>`
    Env,
    /// `/procs/<app>/<proc>`
    Proc,
    /// `/revs/<app>/<rev>`
    Rev,
    /// `/scale/<app>/<rev>/<proc>`
    Scale,
    /// `/deploys/<app>`
    Deployment,
    /// `/rollouts/<app>`
    Rollout,
    /// `/hosts/<host>`
    Host,
    /// `/instances/<id>`
    Instance,
    /// `/tickets/<host>/<ticket>`
    Ticket,
    /// `/relations/<rel-id>`
    Relation,
    /// `/settings/<rel-id>/<unit>`
    Settings,
    /// `/relstate/<rel-id>/<unit>`
    RelationState,
    /// `/hooks/<unit>/<rel-id>`
    Hook,
    /// `/services/<svc>`
    Service,
    /// `/endpoints/<svc>/<uuid>`
    Endpoint,
    /// `/tracked/<svc>/<uuid>`
    Tracked,
    /// `/servicestatus/<svc>`
    ServiceStatus,
    /// `/notifications/<seq>`
    Notification,
    /// `/sequences/<name>`
    Sequence,
}

impl Kind {
    /// The kind's name as users see it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schema => "schema",
            Self::App => "app",
            Self::Env => "env var",
            Self::Proc => "proc type",
            Self::Rev => "revision",
            Self::Scale => "scale factor",
            Self::Deployment => "deployment",
            Self::Rollout => "rollout status",
            Self::Host => "host",
            Self::Instance => "instance",
            Self::Ticket => "ticket",
            Self::Relation => "relation",
            Self::Settings => "relation settings",
            Self::RelationState => "relation state",
            Self::Hook => "hook",
            Self::Service => "service",
            Self::Endpoint => "endpoint",
            Self::Tracked => "tracked endpoint",
            Self::ServiceStatus => "service status",
            Self::Notification => "notification",
            Self::Sequence => "sequence",
        }
    }

    /// The kind's name as a metric label value: one word, e.g. `proc`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Env => "env",
            Self::Proc => "proc",
            Self::Rev => "rev",
            Self::Scale => "scale",
            Self::Rollout => "rollout",
            Self::Settings => "settings",
            Self::RelationState => "relstate",
            Self::Tracked => "tracked",
            Self::ServiceStatus => "servicestatus",
            other => other.as_str(),
        }
    }
}
