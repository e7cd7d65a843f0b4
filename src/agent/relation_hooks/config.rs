//! What the relation hooks runner is given: each unit it serves, and how it
//! runs their hooks.
//!
//! Invariant: a configuration that [`validate`](RelationHooksConfig::validate)
//! accepts can run every hook — a positive timeout, a backoff that waits,
//! paths that can go into a hook's environment (UTF-8).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use visor_controllers::Name;

use super::error::RelationHooksError;
use crate::provider::exec::hook::DEFAULT_TIMEOUT;
use crate::registry::BackoffPolicy;

/// How a hook that failed is retried unless configured otherwise: after 1s,
/// doubling with jitter up to 5 minutes. The delays start over only when
/// the hook succeeds or is withdrawn (`healthy` is not used: a hook that
/// ran long and failed still failed).
pub const DEFAULT_RETRY: BackoffPolicy = BackoffPolicy {
    min: Duration::from_secs(1),
    max: Duration::from_secs(300),
    healthy: Duration::MAX,
};

/// A unit (an instance) running on this host, as its hooks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitContext {
    /// Its unit name: the instance id.
    pub unit: Name,
    /// Its app.
    pub app: Name,
    /// The revision it runs: its hooks come from this revision, unpacked
    /// (`artifact.fetch`) before the unit is handed over.
    pub rev: Name,
    /// Its proc type (which endpoint of a relation it is on).
    pub proc: Name,
    /// The app's environment variables.
    pub env: BTreeMap<String, String>,
}

/// How relation hooks are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationHooksConfig {
    /// Where the providers' sockets are (`hook.run` is called there).
    pub socket_dir: PathBuf,
    /// The local relation state: one [`StateDirs`](crate::agent::StateDirs)
    /// per unit, at `<state_root>/<unit>`.
    pub state_root: PathBuf,
    /// The unix socket the hook tools reach the agent on.
    pub tools_socket: PathBuf,
    /// How long a hook may run. It must stay below the `hook.run` task's
    /// timeout at the provider (30s unless configured), or the provider
    /// cuts it off first and its output is lost.
    pub hook_timeout: Duration,
    /// How a failed hook is retried.
    pub retry: BackoffPolicy,
    /// The directory of the `visor` executable whose hook tools
    /// (`visor relation-get`, ...) hooks call; first in their `PATH`.
    pub tools_dir: PathBuf,
}

impl RelationHooksConfig {
    /// Defaults for the given directories and socket: the exec provider's
    /// default hook timeout, [`DEFAULT_RETRY`], and the running
    /// executable's directory for the tools.
    pub fn new(
        socket_dir: impl Into<PathBuf>,
        state_root: impl Into<PathBuf>,
        tools_socket: impl Into<PathBuf>,
    ) -> Result<Self, RelationHooksError> {
        let exe = std::env::current_exe().map_err(RelationHooksError::ToolsDir)?;
        let tools_dir = exe
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        Ok(Self {
            socket_dir: socket_dir.into(),
            state_root: state_root.into(),
            tools_socket: tools_socket.into(),
            hook_timeout: DEFAULT_TIMEOUT,
            retry: DEFAULT_RETRY,
            tools_dir,
        })
    }

    /// Refuses a configuration that could not run hooks, naming the field.
    pub fn validate(&self) -> Result<(), RelationHooksError> {
        let invalid =
            |field: &'static str, reason: String| RelationHooksError::Config { field, reason };
        if self.hook_timeout.is_zero() {
            return Err(invalid("hook_timeout", "must be positive".to_owned()));
        }
        let retry = self.retry;
        if retry.min.is_zero() || retry.min > retry.max {
            return Err(invalid(
                "retry",
                format!(
                    "min {:?} must be positive and at most max {:?}",
                    retry.min, retry.max
                ),
            ));
        }
        let paths = [
            ("tools_dir", &self.tools_dir),
            ("tools_socket", &self.tools_socket),
        ];
        for (field, path) in paths {
            if path.to_str().is_none() {
                let reason = format!(
                    "{} is not UTF-8: it goes into hooks' environment",
                    path.display()
                );
                return Err(invalid(field, reason));
            }
        }
        Ok(())
    }
}
