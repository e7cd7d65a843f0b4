//! The app spec: a whole app in one document, as `visor apply -f` takes it
//! and `visor get app <name> -o yaml` prints it, and the differences between
//! two of them, object by object and field by field.
//!
//! One type serves both directions, so what `get` prints `apply` takes back
//! unchanged. It holds what a user decides (never a creation time or
//! anything the registry fills in), refuses unknown fields, and checks what
//! one field says about another (the current revision is one of the
//! revisions, scale names only procs of the app, ...) in [`AppSpec::check`].
//! Parsing the text (YAML or JSON) is the shell's; the types here only say
//! what it must hold.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{OnFailure, RestartPolicy, Rollout};
use crate::name::{EnvKey, Name};

mod convert;
mod diff;

pub use convert::AppParts;
pub use diff::{Change, FieldChange, ObjectId, diff};

/// The JSON Schema of [`AppSpec`], for editors (published as
/// `docs/app-spec.schema.json`).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(AppSpec)).unwrap_or_default()
}

/// A whole app: what it is, its env, its proc types, its revisions, which
/// revision runs at what scale, and the services and relations it takes part in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// The app's name.
    pub name: Name,
    /// Where its source lives.
    pub repo_url: String,
    /// The stack (runtime image) its processes need; hosts offer stacks.
    pub stack: Name,
    /// How it is deployed (free-form, e.g. `lxc`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deploy_type: String,
    /// Its environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<EnvKey, String>,
    /// Its process types, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub procs: BTreeMap<Name, ProcSpec>,
    /// Its deployable builds, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revisions: BTreeMap<Name, RevisionSpec>,
    /// The revision that runs; changing it rolls the app to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Name>,
    /// How many instances of each proc type the current revision runs.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "instance_counts"
    )]
    pub scale: BTreeMap<Name, u32>,
    /// How a change of the current revision rolls out.
    #[serde(default, skip_serializing_if = "RolloutSpec::is_default")]
    pub rollout: RolloutSpec,
    /// The services its instances serve, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<Name, ServiceSpec>,
    /// Its relations, by id: each one or two endpoints, `app` or `app:proc`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub relations: BTreeMap<Name, Vec<String>>,
}

/// A process type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcSpec {
    /// The command line that runs it.
    pub command: String,
    /// The port it listens on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Resource limits of one instance.
    #[serde(default, skip_serializing_if = "LimitsSpec::is_default")]
    pub limits: LimitsSpec,
    /// Labels a host must carry (all of them, with equal values) to run it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// How long a stop waits after SIGTERM before it kills the process, in
    /// seconds (10 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_timeout_secs: Option<u32>,
    /// Whether a clean exit is restarted (`always`) or ends the instance
    /// (`on-failure`).
    #[serde(default, skip_serializing_if = "is_default_restart")]
    #[schemars(with = "RestartSpec")]
    pub restart: RestartPolicy,
    /// What must answer before an instance counts as running (and ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<ReadinessSpec>,
    /// The service its running instances are registered as endpoints of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ProcServiceSpec>,
}

fn is_default_restart(policy: &RestartPolicy) -> bool {
    *policy == RestartPolicy::default()
}

/// [`RestartPolicy`] as the schema shows it.
#[derive(JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)]
enum RestartSpec {
    /// A clean exit is restarted like a crash.
    Always,
    /// A clean exit ends the instance; only crashes restart.
    OnFailure,
}

/// Resource limits of one instance; absent means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Relative CPU weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u32>,
}

impl LimitsSpec {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A readiness check, on the instance's port on loopback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadinessSpec {
    /// `tcp`: the port accepts a connection; `http`: `GET <path>` answers 2xx.
    pub check: CheckKind,
    /// The path an `http` check asks, starting with `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How long the check may take to pass, in seconds (30 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
}

/// The kinds of readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// The port accepts a TCP connection.
    Tcp,
    /// `GET <path>` on the port answers 2xx.
    Http,
}

/// The service a proc type's instances serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcServiceSpec {
    /// The service's name.
    pub name: Name,
    /// The schemes the instance's port is registered under (`[http]` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schemes: Option<Vec<String>>,
}

/// A deployable build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevisionSpec {
    /// Where the build artifact lives.
    pub archive_url: String,
}

/// How a change of the current revision rolls out: instances of the new
/// revision start and the old ones stop in steps, counting only instances
/// that are running and ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// How many instances above the desired count may exist during a rollout.
    #[serde(default = "RolloutSpec::default_max_surge")]
    pub max_surge: u32,
    /// How many instances below the desired count may be ready during a rollout.
    #[serde(default)]
    pub max_unavailable: u32,
    /// How long the new revision's instances have to become ready, in seconds.
    #[serde(default = "RolloutSpec::default_deadline_secs")]
    pub deadline_secs: u32,
    /// What a rollout that misses its deadline does.
    #[serde(default)]
    pub on_failure: OnFailure,
}

impl RolloutSpec {
    fn default_max_surge() -> u32 {
        Rollout::DEFAULT_MAX_SURGE
    }

    fn default_deadline_secs() -> u32 {
        Rollout::DEFAULT_DEADLINE_SECS
    }

    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Rollout::default().into()
    }
}

/// A service definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Whether the infrastructure cannot work without it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub critical: bool,
    /// Whether its endpoints are reachable from outside the private network.
    #[serde(default, skip_serializing_if = "is_false")]
    pub public: bool,
    /// How many live endpoints it should have (1 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_endpoints: Option<u32>,
    /// The proc type of the app that serves it, if only one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proc: Option<Name>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A spec whose fields disagree with each other: the path of the field and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct InvalidSpec {
    /// The field, as a dotted path (`scale.web`).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl AppSpec {
    /// Checks what one field says about another; the first disagreement
    /// found is the error.
    pub fn check(&self) -> Result<(), InvalidSpec> {
        let invalid = |path: String, reason: String| Err(InvalidSpec { path, reason });
        if let Some(current) = &self.current
            && !self.revisions.contains_key(current)
        {
            return invalid(
                "current".into(),
                format!("names revision {current}, which is not among the spec's revisions"),
            );
        }
        for proc in self.scale.keys() {
            if !self.procs.contains_key(proc) {
                return invalid(
                    format!("scale.{proc}"),
                    format!("names proc {proc}, which is not among the spec's procs"),
                );
            }
        }
        if !self.scale.is_empty() && self.current.is_none() {
            return invalid(
                "scale".into(),
                "scales the current revision, but the spec names none (`current`)".into(),
            );
        }
        if self.rollout.max_surge == 0 && self.rollout.max_unavailable == 0 {
            return invalid(
                "rollout".into(),
                "max_surge and max_unavailable are both 0: a rollout could never start a new \
                 instance nor stop an old one"
                    .into(),
            );
        }
        for (name, proc) in &self.procs {
            if proc.command.trim().is_empty() {
                return invalid(format!("procs.{name}.command"), "must not be empty".into());
            }
            if let Some(readiness) = &proc.readiness {
                let path = format!("procs.{name}.readiness");
                match (readiness.check, &readiness.path) {
                    (CheckKind::Http, None) => {
                        return invalid(path, "an http check needs a `path`".into());
                    }
                    (CheckKind::Http, Some(asked)) if !asked.starts_with('/') => {
                        return invalid(format!("{path}.path"), "must start with '/'".into());
                    }
                    (CheckKind::Tcp, Some(_)) => {
                        return invalid(format!("{path}.path"), "a tcp check has no path".into());
                    }
                    _ => {}
                }
            }
        }
        for (service, spec) in &self.services {
            if let Some(proc) = &spec.proc
                && !self.procs.contains_key(proc)
            {
                return invalid(
                    format!("services.{service}.proc"),
                    format!("names proc {proc}, which is not among the spec's procs"),
                );
            }
        }
        for (id, endpoints) in &self.relations {
            if endpoints.is_empty() || endpoints.len() > 2 {
                return invalid(
                    format!("relations.{id}"),
                    format!(
                        "a relation has one endpoint (a peer relation) or two, not {}",
                        endpoints.len()
                    ),
                );
            }
            if let Some((at, endpoint)) = endpoints
                .iter()
                .enumerate()
                .find(|(_, endpoint)| parse_endpoint(endpoint).is_err())
            {
                let reason = parse_endpoint(endpoint).err().unwrap_or_default();
                return invalid(format!("relations.{id}[{at}]"), reason);
            }
            let ours = endpoints.iter().filter_map(|e| parse_endpoint(e).ok());
            if !ours.clone().any(|(app, _)| app == self.name) {
                return invalid(
                    format!("relations.{id}"),
                    format!("has no endpoint of app {}", self.name),
                );
            }
            for (app, proc) in ours {
                if let Some(proc) = proc
                    && app == self.name
                    && !self.procs.contains_key(&proc)
                {
                    return invalid(
                        format!("relations.{id}"),
                        format!("names proc {proc}, which is not among the spec's procs"),
                    );
                }
            }
        }
        Ok(())
    }
}

/// An endpoint written `app` or `app:proc`.
pub fn parse_endpoint(text: &str) -> Result<(Name, Option<Name>), String> {
    let (app, proc) = match text.split_once(':') {
        Some((app, proc)) => (app, Some(proc)),
        None => (text, None),
    };
    let app = Name::parse("app", app).map_err(|error| error.to_string())?;
    let proc = proc
        .map(|proc| Name::parse("proc", proc))
        .transpose()
        .map_err(|error| error.to_string())?;
    Ok((app, proc))
}

#[cfg(test)]
mod tests;

/// `scale`'s values: counts of instances, refused with what was given
/// (`-1`, `2.5`, `"three"`) rather than as an `invalid u32`.
fn instance_counts<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<Name, u32>, D::Error> {
    struct Count(u32);

    impl<'de> Deserialize<'de> for Count {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(CountVisitor).map(Count)
        }
    }

    struct CountVisitor;

    impl serde::de::Visitor<'_> for CountVisitor {
        type Value = u32;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "a number of instances: a whole number from 0 to {}",
                u32::MAX
            )
        }

        fn visit_u64<E: serde::de::Error>(self, count: u64) -> Result<u32, E> {
            u32::try_from(count)
                .map_err(|_| E::custom(format_args!("{count} instances is more than {}", u32::MAX)))
        }

        fn visit_i64<E: serde::de::Error>(self, count: i64) -> Result<u32, E> {
            match u64::try_from(count) {
                Ok(count) => self.visit_u64(count),
                Err(_) => Err(E::custom(format_args!(
                    "a number of instances cannot be negative ({count})"
                ))),
            }
        }
    }

    let counts: BTreeMap<Name, Count> = BTreeMap::deserialize(deserializer)?;
    Ok(counts
        .into_iter()
        .map(|(proc, Count(count))| (proc, count))
        .collect())
}
