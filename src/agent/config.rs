//! `visor agent`'s flags, and the checks that make a configuration run as
//! asked: a configuration that passes [`AgentConfig::validate`] is used
//! unchanged (the lease TTL is one etcd grants, the port range is not
//! empty, the restart budget allows at least one restart).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use visor_controllers::{InvalidName, Name, PortRange};

use crate::admin::{AgentAdminConfig, AgentAdminError};
use crate::registry::{BackoffPolicy, LeaseTimingError};

/// How `visor agent` runs.
#[derive(Debug, Clone, Args)]
pub struct AgentConfig {
    /// This host's name in the registry [default: the machine's host name].
    #[arg(long, value_parser = parse_host)]
    pub host: Option<Name>,
    /// The address other hosts reach this one at (endpoints are registered with it).
    #[arg(long, default_value = "127.0.0.1")]
    pub addr: String,
    /// How many instances this host runs at once.
    #[arg(long, default_value_t = 8)]
    pub capacity: u32,
    /// A stack this host can run (repeatable).
    #[arg(long = "stack", value_parser = parse_stack, default_values = ["base"])]
    pub stacks: Vec<Name>,
    /// A label proc types select hosts by, `key=value` (repeatable).
    #[arg(long = "label", value_parser = crate::cli::args::assignment)]
    pub labels: Vec<(String, String)>,
    /// Where the agent keeps its state: its host's lease, each instance's
    /// write-ahead record, the exec provider's instances and artifacts.
    /// Keep it short: instance control sockets live under it.
    #[arg(
        long,
        env = "VISOR_AGENT_DATA_DIR",
        default_value = "/var/lib/visor/agent"
    )]
    pub data_dir: PathBuf,
    /// Where providers' sockets are [default: <DATA_DIR>/providers].
    #[arg(long, env = "VISOR_PROVIDER_SOCKET_DIR", value_name = "DIR")]
    pub socket_dir: Option<PathBuf>,
    /// Where and how `/logs`, `/metrics`, `/healthz` and `/readyz` are served.
    #[command(flatten)]
    pub admin: AgentAdminConfig,
    /// TTL of the host's lease (whole seconds).
    #[arg(long, default_value = "10s", value_parser = parse_ttl)]
    pub lease_ttl: Duration,
    /// How long after losing its lease the agent stops its instances, unless
    /// it has registered again by then [default: the lease TTL].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub stop_after_disconnect: Option<Duration>,
    /// The ports instances get, FIRST-LAST.
    #[arg(long, default_value = "20000-29999")]
    pub port_range: PortRange,
    /// Restarts an instance may have within --restart-window before it fails.
    #[arg(long, default_value_t = 5)]
    pub max_restarts: u32,
    /// The window restarts are counted in.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub restart_window: Duration,
    /// The delay before the first restart; it doubles (with jitter) up to --restart-delay-max.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub restart_delay: Duration,
    /// The longest delay between restarts.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub restart_delay_max: Duration,
    /// How many tickets are executed at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

/// A configuration that cannot run as asked.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No host name given and the machine's is not a valid one.
    #[error("--host is needed: the machine's host name {0:?} is not a valid host name ({1})")]
    HostName(String, InvalidName),
    /// The lease TTL is not one etcd grants as asked.
    #[error("--lease-ttl")]
    LeaseTtl(#[source] LeaseTimingError),
    /// No instance could ever run.
    #[error("--capacity must be at least 1")]
    ZeroCapacity,
    /// No ticket could ever run.
    #[error("--concurrency must be at least 1")]
    ZeroConcurrency,
    /// A window restarts cannot be counted in.
    #[error("--restart-window must be above 0s")]
    ZeroRestartWindow,
    /// Backoff delays that do not grow.
    #[error("--restart-delay must be above 0s and at most --restart-delay-max")]
    RestartDelays,
    /// The admin endpoint cannot be served as asked.
    #[error("admin endpoint")]
    Admin(#[source] AgentAdminError),
    /// A label key that cannot be matched.
    #[error("--label {0:?}: the key must not be empty")]
    EmptyLabel(String),
}

impl AgentConfig {
    /// Checks every value and how they fit together, before anything runs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        LeaseTimingError::check_ttl(self.lease_ttl).map_err(ConfigError::LeaseTtl)?;
        if self.capacity == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        if self.concurrency == 0 {
            return Err(ConfigError::ZeroConcurrency);
        }
        if self.restart_window.is_zero() {
            return Err(ConfigError::ZeroRestartWindow);
        }
        if self.restart_delay.is_zero() || self.restart_delay > self.restart_delay_max {
            return Err(ConfigError::RestartDelays);
        }
        if let Some((key, _)) = self.labels.iter().find(|(key, _)| key.is_empty()) {
            return Err(ConfigError::EmptyLabel(key.clone()));
        }
        self.admin.validate().map_err(ConfigError::Admin)?;
        self.host_name().map(drop)
    }

    /// Every flag at its default, as `visor agent` with no flags has them.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            agent: AgentConfig,
        }
        <Defaults as clap::Parser>::parse_from(["visor-agent"]).agent
    }

    /// The host name: `--host`, or the machine's.
    pub fn host_name(&self) -> Result<Name, ConfigError> {
        if let Some(host) = &self.host {
            return Ok(host.clone());
        }
        let machine = machine_host_name();
        Name::parse("host", &machine.to_ascii_lowercase())
            .map_err(|invalid| ConfigError::HostName(machine, invalid))
    }

    /// Where providers' sockets are.
    pub fn socket_dir(&self) -> PathBuf {
        self.socket_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("providers"))
    }

    /// How long after losing its lease the agent stops its instances.
    pub fn stop_after_disconnect(&self) -> Duration {
        self.stop_after_disconnect.unwrap_or(self.lease_ttl)
    }

    /// How restarts back off: a process that ran for a restart window
    /// starts the delays over.
    pub fn restart_backoff(&self) -> BackoffPolicy {
        BackoffPolicy {
            min: self.restart_delay,
            max: self.restart_delay_max,
            healthy: self.restart_window,
        }
    }
}

/// The machine's host name, as the kernel has it.
fn machine_host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

fn parse_host(text: &str) -> Result<Name, InvalidName> {
    Name::parse("host", text)
}

fn parse_stack(text: &str) -> Result<Name, InvalidName> {
    Name::parse("stack", text)
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    LeaseTimingError::check_ttl(ttl).map_err(|error| error.to_string())?;
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentConfig,
    }

    fn parse(args: &[&str]) -> Result<AgentConfig, clap::Error> {
        let mut argv = vec!["agent"];
        if !args.contains(&"--host") {
            argv.extend(["--host", "h1"]);
        }
        argv.extend(args);
        Cli::try_parse_from(argv).map(|cli| cli.agent)
    }

    #[test]
    fn defaults_run_as_documented() {
        let config = parse(&[]).expect("defaults parse");
        config.validate().expect("defaults are valid");
        assert_eq!(config.stacks.len(), 1);
        assert_eq!(config.stop_after_disconnect(), Duration::from_secs(10));
        assert_eq!(
            config.socket_dir(),
            PathBuf::from("/var/lib/visor/agent/providers")
        );
        assert_eq!(config.port_range.to_string(), "20000-29999");
    }

    #[test]
    fn bad_flags_are_refused_naming_the_flag() {
        for (args, mention) in [
            (&["--host", "Web_1"][..], "invalid host name"),
            (&["--lease-ttl", "1500ms"], "whole number of seconds"),
            (&["--port-range", "10-5"], "invalid port range"),
            (&["--stack", "a b"], "invalid stack name"),
            (&["--label", "novalue"], "expected KEY=VALUE"),
        ] {
            let error = parse(args).expect_err(mention).to_string();
            assert!(error.contains(mention), "{args:?}: {error}");
        }
        let mut config = parse(&["--restart-delay", "2m"]).expect("parses");
        assert!(matches!(config.validate(), Err(ConfigError::RestartDelays)));
        config = parse(&["--capacity", "0"]).expect("parses");
        assert!(matches!(config.validate(), Err(ConfigError::ZeroCapacity)));
    }
}
