//! The objects stored in the registry, as their JSON documents.
//!
//! Every type tolerates unknown fields (so older readers survive newer writers)
//! and defaults optional ones. The key an object lives under carries its own
//! name; documents carry only what the key does not, except where a reader
//! needs the reference without parsing the key (instances, tickets).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::name::Name;

/// `/schema`: the layout version the registry was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaVersion {
    /// Layout version; readers refuse a version newer than they know.
    pub version: u32,
}

impl SchemaVersion {
    /// The layout version this build reads and writes.
    pub const CURRENT: SchemaVersion = SchemaVersion { version: 1 };
}

/// `/apps/<app>`: an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Where the source lives.
    pub repo_url: String,
    /// The stack (runtime image) its processes need; hosts offer stacks.
    pub stack: Name,
    /// How it is deployed (free-form, e.g. `lxc`).
    #[serde(default)]
    pub deploy_type: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// `/procs/<app>/<proc>`: a process type of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcType {
    /// The command line that runs it.
    pub command: String,
    /// The port it listens on, if any.
    #[serde(default)]
    pub port: Option<u16>,
    /// Resource limits for one instance.
    #[serde(default)]
    pub limits: Limits,
    /// Labels a host must carry (all of them, with equal values) to run it.
    #[serde(default)]
    pub host_labels: BTreeMap<String, String>,
    /// How long a stop waits after SIGTERM before it kills the process, in
    /// seconds; [`ProcType::DEFAULT_KILL_TIMEOUT_SECS`] when absent.
    #[serde(default)]
    pub kill_timeout_secs: Option<u32>,
    /// Whether a clean exit is a failure to restart.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// What must answer before an instance counts as running.
    #[serde(default)]
    pub readiness: Option<Readiness>,
    /// The service its running instances are registered as endpoints of.
    #[serde(default)]
    pub service: Option<ProcService>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

impl ProcType {
    /// The kill timeout of a proc type that names none.
    pub const DEFAULT_KILL_TIMEOUT_SECS: u32 = 10;

    /// The kill timeout, in seconds.
    pub fn kill_timeout_secs(&self) -> u32 {
        self.kill_timeout_secs
            .unwrap_or(Self::DEFAULT_KILL_TIMEOUT_SECS)
    }
}

/// What an instance's clean exit (code 0) means. Any other exit is a crash,
/// restarted in place within the host's restart budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// A long-running process: a clean exit is a failure too, restarted in
    /// place like a crash.
    #[default]
    Always,
    /// A clean exit ends the instance (`exited`); only crashes restart.
    OnFailure,
}

/// A readiness check: an instance counts as running once it passes, and
/// fails if it has not passed within `timeout_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// What is checked, on the instance's port on loopback.
    #[serde(flatten)]
    pub check: ReadinessCheck,
    /// How long the check may take to pass, in seconds.
    #[serde(default = "Readiness::default_timeout_secs")]
    pub timeout_secs: u32,
}

impl Readiness {
    /// The timeout of a check that names none.
    pub const DEFAULT_TIMEOUT_SECS: u32 = 30;

    fn default_timeout_secs() -> u32 {
        Self::DEFAULT_TIMEOUT_SECS
    }
}

/// The kinds of readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "lowercase")]
pub enum ReadinessCheck {
    /// The port accepts a TCP connection.
    Tcp,
    /// `GET <path>` on the port answers 2xx.
    Http {
        /// The path asked, starting with `/`.
        path: String,
    },
}

/// The service a proc type's instances serve: each running (and ready)
/// instance is an endpoint of it, at its host's address and its port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcService {
    /// The service's name.
    pub name: Name,
    /// The schemes the instance's port is registered under
    /// (`{"http": "<port>"}`); `["http"]` when absent.
    #[serde(default = "ProcService::default_schemes")]
    pub schemes: Vec<String>,
}

impl ProcService {
    /// The schemes of a service that names none: `[http]`.
    pub fn default_schemes() -> Vec<String> {
        vec!["http".to_owned()]
    }
}

/// Resource limits of one instance; absent means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Relative CPU weight.
    #[serde(default)]
    pub cpu_shares: Option<u32>,
}

/// `/revs/<app>/<rev>`: a deployable build of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// Where the build artifact lives.
    pub archive_url: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// `/scale/<app>/<rev>/<proc>`: the revision scale factor, the desired instance count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scale {
    /// How many instances should be active.
    pub replicas: u32,
}

/// `/deploys/<app>`: which revision of an app runs, at what scale, and how a
/// change of that revision rolls out. `visor apply` writes it; the rollout
/// loop turns it into revision scale factors. An app without one is scaled
/// by hand, revision by revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The revision that runs.
    pub revision: Name,
    /// How many instances of each proc type it runs.
    #[serde(default)]
    pub scale: BTreeMap<Name, u32>,
    /// How a change of revision rolls out.
    #[serde(default)]
    pub rollout: Rollout,
    /// When it was first written.
    pub created_at: DateTime<Utc>,
}

/// How a change of an app's revision rolls out: instances of the new
/// revision start and those of the old stop in steps, counting only the
/// instances that run and are ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// How many instances above the desired count may exist meanwhile.
    #[serde(default = "Rollout::default_max_surge")]
    pub max_surge: u32,
    /// How many instances below the desired count may be ready meanwhile.
    #[serde(default)]
    pub max_unavailable: u32,
    /// How long the new revision's instances have to become ready, in seconds.
    #[serde(default = "Rollout::default_deadline_secs")]
    pub deadline_secs: u32,
    /// What a rollout that misses its deadline does.
    #[serde(default)]
    pub on_failure: OnFailure,
}

impl Rollout {
    /// How many instances above the desired count a rollout that names no
    /// surge may start.
    pub const DEFAULT_MAX_SURGE: u32 = 1;
    /// How long a rollout that names no deadline waits for readiness, in seconds.
    pub const DEFAULT_DEADLINE_SECS: u32 = 300;

    /// [`DEFAULT_MAX_SURGE`](Self::DEFAULT_MAX_SURGE), for serde.
    pub fn default_max_surge() -> u32 {
        Self::DEFAULT_MAX_SURGE
    }

    /// [`DEFAULT_DEADLINE_SECS`](Self::DEFAULT_DEADLINE_SECS), for serde.
    pub fn default_deadline_secs() -> u32 {
        Self::DEFAULT_DEADLINE_SECS
    }
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            max_surge: Self::DEFAULT_MAX_SURGE,
            max_unavailable: 0,
            deadline_secs: Self::DEFAULT_DEADLINE_SECS,
            on_failure: OnFailure::default(),
        }
    }
}

/// What a rollout that misses its deadline does.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Back to the revision it rolled from.
    #[default]
    Rollback,
    /// Stay where it is, until the revision is changed again.
    Pause,
}

/// `/hosts/<host>`: a live host agent; the key is bound to the agent's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Address other hosts reach it at.
    pub addr: String,
    /// How many instances it can run at once.
    pub capacity: u32,
    /// Free-form labels that proc types can select on.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The stacks it can run.
    #[serde(default)]
    pub stacks: Vec<Name>,
    /// When this registration started.
    pub registered_at: DateTime<Utc>,
    /// The host is leaving: nothing new is placed on it, and its instances
    /// are moved to other hosts (each stopped once a replacement runs).
    #[serde(default)]
    pub draining: bool,
    /// Where its agent serves logs, metrics and health (`http://addr:port`).
    #[serde(default)]
    pub admin_url: Option<String>,
    /// The machine's boot id when the agent registered: a change tells that
    /// the machine rebooted (and its processes are gone).
    #[serde(default)]
    pub boot_id: Option<String>,
    /// How many times an agent with this host's data dir started: one more
    /// at every start, so a restarted agent is told from the one before.
    #[serde(default)]
    pub incarnation: u64,
}

/// The life cycle of an instance.
///
/// `pending → claimed → running → stopping → exited`, plus `failed` and `lost`.
/// The rules for moving between them live in the `lifecycle` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Created by the controller, waiting for its host to claim it.
    Pending,
    /// Claimed by a host, not yet started.
    Claimed,
    /// Its process runs.
    Running,
    /// Asked to stop; its process is being stopped.
    Stopping,
    /// Stopped or finished. Terminal.
    Exited,
    /// Crashed or could not start. Terminal.
    Failed,
    /// Its host died. Terminal; set by the controller.
    Lost,
}

impl InstanceState {
    /// Every state, in life-cycle order.
    pub const ALL: [InstanceState; 7] = [
        Self::Pending,
        Self::Claimed,
        Self::Running,
        Self::Stopping,
        Self::Exited,
        Self::Failed,
        Self::Lost,
    ];

    /// Whether no transition leaves this state.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Exited | Self::Failed | Self::Lost)
    }

    /// The state's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Claimed => "claimed",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Exited => "exited",
            Self::Failed => "failed",
            Self::Lost => "lost",
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `/instances/<id>`: one process of an (app, rev, proc); a unit, in relation terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The app it belongs to.
    pub app: Name,
    /// The revision it runs.
    pub rev: Name,
    /// Its process type.
    pub proc: Name,
    /// The host it is assigned to (set at placement) or that claimed it.
    #[serde(default)]
    pub host: Option<Name>,
    /// Where it is in its life cycle.
    pub state: InstanceState,
    /// The port its process listens on once running.
    #[serde(default)]
    pub port: Option<u16>,
    /// How often its host restarted its process.
    #[serde(default)]
    pub restarts: u32,
    /// Why it failed, was lost or exited, when known.
    #[serde(default)]
    pub reason: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed state.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Instance {
    /// A new pending instance, optionally already assigned to a host.
    pub fn pending(
        app: Name,
        rev: Name,
        proc: Name,
        host: Option<Name>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            app,
            rev,
            proc,
            host,
            state: InstanceState::Pending,
            port: None,
            restarts: 0,
            reason: None,
            created_at: now,
            updated_at: None,
        }
    }
}

/// What a ticket asks its host to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketOp {
    /// Start the instance.
    Start,
    /// Stop the instance.
    Stop,
}

impl fmt::Display for TicketOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Start => "start",
            Self::Stop => "stop",
        })
    }
}

/// `/tickets/<host>/<ticket>`: work for one host, processed in creation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Start or stop.
    pub op: TicketOp,
    /// The instance it concerns.
    pub instance: Name,
    /// The instance's app.
    pub app: Name,
    /// The instance's revision.
    pub rev: Name,
    /// The instance's process type.
    pub proc: Name,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The host that claimed it, once claimed.
    #[serde(default)]
    pub claimed_by: Option<Name>,
    /// When it was claimed.
    #[serde(default)]
    pub claimed_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_tolerated_and_optional_ones_defaulted() {
        let json = r#"{"app":"web","rev":"v1","proc":"http","state":"running",
                       "created_at":"2026-01-01T00:00:00Z","from_the_future":true}"#;
        let instance: Instance = serde_json::from_str(json).expect("valid instance");
        assert_eq!(instance.state, InstanceState::Running);
        assert_eq!(instance.host, None);
        assert_eq!(instance.restarts, 0);
    }

    #[test]
    fn invalid_names_inside_documents_are_rejected() {
        let json = r#"{"replicas":1}"#;
        assert!(serde_json::from_str::<Scale>(json).is_ok());
        let json = r#"{"op":"start","instance":"Bad Id","app":"web","rev":"v1","proc":"http",
                       "created_at":"2026-01-01T00:00:00Z"}"#;
        assert!(serde_json::from_str::<Ticket>(json).is_err());
    }

    #[test]
    fn states_round_trip_as_lowercase_strings() {
        for state in InstanceState::ALL {
            let json = serde_json::to_string(&state).expect("serializes");
            assert_eq!(json, format!("\"{state}\""));
            assert_eq!(
                serde_json::from_str::<InstanceState>(&json).ok(),
                Some(state)
            );
        }
    }
}
