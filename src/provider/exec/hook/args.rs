//! The arguments and result of `hook.run`, validated as they are read, so a
//! request that could never run is refused in its acknowledgement.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use visor_controllers::EnvKey;

use super::tail::Output;
use visor_controllers::Name;

use crate::provider::exec::artifact::{Refusal, relative_path};

/// The arguments of `hook.run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookArgs {
    /// The app whose revision holds the hook.
    pub app: Name,
    /// The revision, fetched before by `artifact.fetch`.
    pub revision: Name,
    /// The hook's path in the revision, e.g. `hooks/db-relation-joined`.
    pub hook: InsidePath,
    /// The hook's whole environment: nothing is inherited from the
    /// provider (give `PATH` if the hook needs one).
    #[serde(default)]
    pub env: HookEnv,
    /// The directory the hook runs in, in the revision; by default the
    /// revision's top directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<InsidePath>,
    /// How long the hook may run before its process group is killed (a
    /// duration string: `"30s"`, `"2m"`); by default the runner's.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::provider::exec::instance::duration::option"
    )]
    pub timeout: Option<Duration>,
}

/// A path inside a revision's directory: relative, with no `..` (`.` and
/// empty components dropped). Symlinks in the tree are checked when the
/// hook runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PathBuf", into = "PathBuf")]
pub struct InsidePath(PathBuf);

/// Why a path cannot name something inside a revision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path {} {reason}", path.display())]
pub struct InvalidPath {
    /// The path given.
    pub path: PathBuf,
    /// The rule it breaks.
    pub reason: Refusal,
}

impl InsidePath {
    /// Validates `path`.
    pub fn parse(path: impl AsRef<Path>) -> Result<Self, InvalidPath> {
        let path = path.as_ref();
        relative_path(path).map(Self).map_err(|reason| InvalidPath {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The clean relative path (empty for the top directory).
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl TryFrom<PathBuf> for InsidePath {
    type Error = InvalidPath;

    fn try_from(path: PathBuf) -> Result<Self, Self::Error> {
        Self::parse(path)
    }
}

impl From<InsidePath> for PathBuf {
    fn from(path: InsidePath) -> Self {
        path.0
    }
}

/// A hook's environment: keys are environment variable names, values have
/// no NUL byte (neither could reach the process).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct HookEnv(BTreeMap<String, String>);

/// Why an environment cannot be a hook's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEnv {
    /// A key is not a variable name.
    #[error(transparent)]
    Key(#[from] visor_controllers::InvalidName),
    /// A value holds a NUL byte.
    #[error("env value of {key} holds a NUL byte")]
    Nul {
        /// The variable.
        key: String,
    },
}

impl HookEnv {
    /// The variables, by name.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

impl TryFrom<BTreeMap<String, String>> for HookEnv {
    type Error = InvalidEnv;

    fn try_from(vars: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        for (key, value) in &vars {
            EnvKey::parse(key)?;
            if value.contains('\0') {
                return Err(InvalidEnv::Nul { key: key.clone() });
            }
        }
        Ok(Self(vars))
    }
}

impl From<HookEnv> for BTreeMap<String, String> {
    fn from(env: HookEnv) -> Self {
        env.0
    }
}

/// The result of `hook.run`: how the hook ended, with the tail of what it
/// wrote on stdout and stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum HookRun {
    /// The revision has no such hook; nothing ran (as Juju, a missing hook
    /// is not a failure).
    Missing,
    /// The hook exited with `code`.
    Exited {
        /// Its exit code.
        code: i32,
        /// What it wrote on stdout.
        stdout: Output,
        /// What it wrote on stderr.
        stderr: Output,
    },
    /// The hook was killed by `signal`, not by the runner.
    Signaled {
        /// The signal's number.
        signal: i32,
        /// What it wrote on stdout.
        stdout: Output,
        /// What it wrote on stderr.
        stderr: Output,
    },
    /// The hook ran past its timeout; its process group was killed.
    TimedOut {
        /// What it wrote on stdout.
        stdout: Output,
        /// What it wrote on stderr.
        stderr: Output,
    },
}

impl HookRun {
    /// Whether the hook took effect as a success: it exited 0, or is missing.
    pub fn succeeded(&self) -> bool {
        matches!(self, Self::Missing | Self::Exited { code: 0, .. })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{HookArgs, HookRun};
    use crate::provider::exec::hook::tail::Output;

    fn parse(args: serde_json::Value) -> Result<HookArgs, String> {
        serde_json::from_value(args).map_err(|error| error.to_string())
    }

    #[test]
    fn arguments_that_could_never_run_are_refused_as_they_are_read() {
        let base = json!({"app": "web", "revision": "v1", "hook": "hooks/db-relation-joined"});
        let args = parse(base.clone()).expect("minimal arguments");
        assert_eq!(
            args.hook.as_path().to_str(),
            Some("hooks/db-relation-joined")
        );
        assert!(args.env.vars().is_empty());
        let with = |key: &str, value: serde_json::Value| {
            let mut args = base.clone();
            args[key] = value;
            parse(args)
        };
        let refusals = [
            (
                "hook",
                json!("../../bin/sh"),
                "path ../../bin/sh has a `..` component",
            ),
            ("hook", json!("/bin/sh"), "path /bin/sh is an absolute path"),
            (
                "working_dir",
                json!("hooks/.."),
                "path hooks/.. has a `..` component",
            ),
            ("env", json!({"A=B": "x"}), "invalid env name \"A=B\""),
            (
                "env",
                json!({"A": "x\u{0}y"}),
                "env value of A holds a NUL byte",
            ),
            (
                "revision",
                json!(".."),
                "must start with a lower-case letter or a digit",
            ),
            (
                "timeout",
                json!(5),
                "invalid type: integer `5`, expected a string",
            ),
            ("timeout", json!("soon"), "\"soon\" is not a duration"),
            ("timeout_ms", json!(5), "unknown field `timeout_ms`"),
        ];
        for (key, value, expected) in refusals {
            let refused = with(key, value).expect_err("refused");
            assert!(refused.contains(expected), "{key}: {refused}");
        }
    }

    #[test]
    fn a_run_reads_as_its_status_with_its_fields() {
        let run = HookRun::Exited {
            code: 3,
            stdout: Output {
                tail: "out\n".into(),
                dropped_bytes: 0,
            },
            stderr: Output::default(),
        };
        assert_eq!(
            serde_json::to_value(&run).expect("serializable"),
            json!({
                "status": "exited",
                "code": 3,
                "stdout": {"tail": "out\n", "dropped_bytes": 0},
                "stderr": {"tail": "", "dropped_bytes": 0},
            })
        );
        assert_eq!(
            serde_json::to_value(HookRun::Missing).expect("serializable"),
            json!({"status": "missing"})
        );
        assert!(HookRun::Missing.succeeded());
        assert!(!run.succeeded());
    }
}
