//! The contract of the instance tasks: their arguments and their one result,
//! as callers in any language send and read them.
//!
//! Nothing in the field names is specific to processes where another
//! backend (systemd units, containers) would need something else: a
//! workload is a `command` with `args`, `env` and a `working_dir`, stopped
//! within a `kill_timeout`; its result is a `state`, an `exit {code,
//! signal}` and `started_at`. The process id and the log files appear as
//! backend detail, never needed to drive an instance.
//!
//! Invariants: unknown fields are refused (a misspelt field is an error,
//! not a default), and durations are strings such as `"10s"` or `"250ms"`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::instance_dir::InstanceDir;
use super::status::{Exit, State, Status};

/// The kill timeout when `instance.start` gives none.
pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// `instance.start`: run an invocation of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartArgs {
    /// The instance id (a registry name).
    pub instance: String,
    /// The invocation id: the caller's name for this run of the instance, a
    /// registry name, new for every run.
    pub invocation: String,
    /// The program (a path, or a name looked up in `env`'s `PATH`, else in
    /// the provider's).
    pub command: String,
    /// Its arguments (no shell is involved).
    #[serde(default)]
    pub args: Vec<String>,
    /// Its whole environment: nothing else is inherited.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Its working directory (absolute); `/` when absent.
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    /// How long a stop waits after asking the workload to terminate before
    /// killing it; 10s when absent.
    #[serde(default, with = "duration::option")]
    pub kill_timeout: Option<Duration>,
    /// Output rotation; 10 MiB files, five kept, when absent.
    #[serde(default)]
    pub logs: Option<LogArgs>,
}

/// How the workload's output files rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogArgs {
    /// A file rotates once it holds this many bytes (at least 1).
    pub max_bytes: usize,
    /// How many rotated files are kept (at least 1).
    pub keep: usize,
}

/// `instance.status` and `instance.attach`: which invocation of which
/// instance the caller asks about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceArgs {
    /// The instance id.
    pub instance: String,
    /// The invocation id it was started with.
    pub invocation: String,
}

/// `instance.stop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopArgs {
    /// The instance id.
    pub instance: String,
    /// The invocation id it was started with.
    pub invocation: String,
    /// Overrides the kill timeout it was started with.
    #[serde(default, with = "duration::option")]
    pub kill_timeout: Option<Duration>,
}

/// `instance.wait`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitArgs {
    /// The instance id.
    pub instance: String,
    /// The invocation id it was started with.
    pub invocation: String,
    /// How long to wait for the exit: the answer comes at the exit or at
    /// this deadline (`state` then still `running`). Keep it below the
    /// task's timeout.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

/// The result of every instance task: where an invocation is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceStatus {
    /// The instance id.
    pub instance: String,
    /// The invocation id.
    pub invocation: String,
    /// `running`, `stopping`, `exited`, or `lost` (no supervisor answers and
    /// no exit was recorded: the host restarted, or the supervisor was
    /// killed).
    pub state: State,
    /// When the workload started.
    pub started_at: DateTime<Utc>,
    /// How it ended, once `exited`.
    pub exit: Option<Exit>,
    /// Backend detail: the workload's process id.
    pub pid: Option<u32>,
    /// Backend detail: the current files of the workload's output.
    pub logs: LogFiles,
}

/// Where the workload's output goes (rotated files sit beside each, with
/// `.1`, `.2`, ... appended, `.1` the newest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFiles {
    /// The current stdout file.
    pub stdout: PathBuf,
    /// The current stderr file.
    pub stderr: PathBuf,
}

impl InstanceStatus {
    /// The result for `status`, recorded in `dir`.
    pub fn new(status: Status, dir: &InstanceDir) -> Self {
        Self {
            instance: status.instance,
            invocation: status.invocation,
            state: status.state,
            started_at: status.started_at,
            exit: status.exit,
            pid: status.pid,
            logs: LogFiles {
                stdout: dir.stdout_log(),
                stderr: dir.stderr_log(),
            },
        }
    }
}

/// Durations as humantime strings (`"10s"`, `"1m 30s"`, `"250ms"`).
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*value))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a duration: {e}")))
    }

    /// The same for an optional duration.
    pub(crate) mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer>(
            value: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(value) => super::serialize(value, s),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] Duration);
            Option::<Wrapped>::deserialize(d).map(|wrapped| wrapped.map(|Wrapped(d)| d))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_args_read_as_documented() {
        let text = r#"{
            "instance": "i-1", "invocation": "a", "command": "/bin/sh",
            "args": ["-c", "echo hi"], "env": {"PATH": "/bin"},
            "working_dir": "/tmp", "kill_timeout": "250ms",
            "logs": {"max_bytes": 1024, "keep": 2}
        }"#;
        let args: StartArgs = serde_json::from_str(text).expect("start args");
        assert_eq!(args.kill_timeout, Some(Duration::from_millis(250)));
        assert_eq!(
            args.logs,
            Some(LogArgs {
                max_bytes: 1024,
                keep: 2
            })
        );
        let minimal: StartArgs =
            serde_json::from_str(r#"{"instance":"i","invocation":"a","command":"true"}"#)
                .expect("only three fields are required");
        assert_eq!((minimal.args.len(), minimal.kill_timeout), (0, None));
    }

    #[test]
    fn unknown_fields_and_bad_durations_are_refused() {
        let refused = [
            r#"{"instance":"i","invocation":"a","command":"true","cmd":"x"}"#,
            r#"{"instance":"i","invocation":"a","command":"true","kill_timeout":"soon"}"#,
            r#"{"instance":"i","invocation":"a","command":"true","kill_timeout":10}"#,
        ];
        for text in refused {
            assert!(serde_json::from_str::<StartArgs>(text).is_err(), "{text}");
        }
        let wait = r#"{"instance":"i","invocation":"a"}"#;
        assert!(
            serde_json::from_str::<WaitArgs>(wait).is_err(),
            "timeout is required"
        );
    }

    #[test]
    fn durations_round_trip() {
        let args = StopArgs {
            instance: "i".into(),
            invocation: "a".into(),
            kill_timeout: Some(Duration::from_millis(1500)),
        };
        let value = serde_json::to_value(&args).expect("serializes");
        assert_eq!(value["kill_timeout"], "1s 500ms");
        assert_eq!(serde_json::from_value::<StopArgs>(value).ok(), Some(args));
    }
}
