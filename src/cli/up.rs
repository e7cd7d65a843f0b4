//! `visor up`: Visor on one machine with nothing but this binary.
//!
//! It serves the embedded registry on loopback in the same process (or, with
//! `--etcd`, runs a single-member etcd child), on the client port every
//! other command uses by default (2379), writes the schema, and runs the
//! controller and an agent for this machine in the same process, each with
//! its admin endpoint, until SIGINT or SIGTERM; then the agent stops every
//! instance (there is no other host to move them to) and leaves, and the
//! registry stops last.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use visor_controllers::Name;

use super::CliError;
use crate::admin::{AdminServer, AgentAdminConfig};
use crate::agent::{Agent, AgentConfig};
use crate::controller::{Controller, ControllerConfig};
use crate::embedded::{EmbeddedRegistry, ServeOptions};
use crate::registry::{Error, LocalRegistry, LocalRegistryOptions, RegistryConfig, Visor};
use crate::shutdown::Shutdown;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the registry keeps its data (kept across runs).
    #[arg(long, default_value = ".visor/registry")]
    data_dir: PathBuf,
    /// Run etcd (`etcd` in PATH, or VISOR_ETCD_BIN) as the registry instead
    /// of the embedded one.
    #[arg(long)]
    etcd: bool,
    /// Loopback port for registry clients.
    #[arg(long, default_value_t = 2379)]
    port: u16,
    /// Where the controller's `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin_addr: SocketAddr,
    #[command(flatten)]
    controller: ControllerConfig,
    /// This machine's host name in the registry [default: the machine's host name].
    #[arg(long, value_parser = crate::cli::args::name("host"))]
    host: Option<Name>,
    /// Where the agent keeps its state (instances, artifacts, provider sockets).
    #[arg(long, default_value = ".visor/agent")]
    agent_data_dir: PathBuf,
    /// Where the agent's `/logs`, `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "127.0.0.1:9091")]
    agent_admin_addr: SocketAddr,
    /// How many instances the agent runs at once.
    #[arg(long, default_value_t = 16)]
    capacity: u32,
}

impl UpArgs {
    /// The agent's configuration: `visor agent`'s defaults, with this
    /// command's host, data dir, admin address and capacity.
    fn agent(&self) -> AgentConfig {
        AgentConfig {
            host: self.host.clone(),
            data_dir: self.agent_data_dir.clone(),
            admin: AgentAdminConfig::new(self.agent_admin_addr),
            capacity: self.capacity,
            ..AgentConfig::defaults()
        }
    }
}

pub async fn run(config: &RegistryConfig, args: UpArgs) -> Result<(), CliError> {
    // Before anything is written or started.
    args.controller
        .validate()
        .map_err(|error| CliError::Usage(crate::telemetry::Chain(&error).to_string()))?;
    let agent_config = args.agent();
    agent_config
        .validate()
        .map_err(|error| CliError::Usage(crate::telemetry::Chain(&error).to_string()))?;
    let mut signals = Shutdown::install().map_err(CliError::Signals)?;
    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        Error::Config(format!(
            "cannot create data dir {}: {e}",
            args.data_dir.display()
        ))
    })?;
    let shutdown = CancellationToken::new();
    // The registry stops last, on its own: the controller and the agent
    // use it until they have stopped (the controller's last act is to give
    // its leadership up).
    let registry = LocalRegistryKind::start(&args).await?;
    let local = RegistryConfig {
        endpoints: vec![registry.endpoint()],
        ..config.clone()
    };
    let visor = Visor::connect(&local).await?;
    let schema = visor.check_schema().await?;

    let prometheus = prometheus::Registry::new();
    let controller = Controller::new(args.controller, &prometheus)?;
    let (ready_tx, ready) = watch::channel(false);
    let admin = AdminServer::bind(args.admin_addr, prometheus, ready, controller.health())
        .await
        .map_err(CliError::Admin)?;
    let admin_addr = admin.local_addr().map_err(CliError::Admin)?;
    let admin_task = tokio::spawn(admin.serve(shutdown.clone()));
    let agent = Agent::start(visor.clone(), agent_config).await?;
    eprintln!(
        "visor up: {} registry at {} (root {}, schema v{}, data in {}); controller metrics at http://{admin_addr}/metrics; agent at {}",
        registry.kind(),
        registry.endpoint(),
        local.root,
        schema.version,
        args.data_dir.display(),
        agent.admin_url(),
    );
    eprintln!(
        "try: visor hosts      visor status      visor watch      (README.md: the quick start)"
    );
    eprintln!("     Ctrl-C or SIGTERM stops every instance and then Visor");
    let controller = tokio::spawn(controller.run(visor, ready_tx, shutdown.clone()));
    let drain = CancellationToken::new();
    let agent = tokio::spawn(agent.run(drain.clone(), Duration::ZERO, shutdown.clone()));
    signals.requested().await;
    eprintln!("visor up: stopping");
    drain.cancel();
    match agent.await {
        Ok(Err(error)) => {
            let error = crate::telemetry::Chain(&error);
            tracing::warn!(%error, "agent stopped with an error");
        }
        Err(error) => tracing::warn!(%error, "agent task failed"),
        Ok(Ok(())) => {}
    }
    shutdown.cancel();
    match controller.await {
        Ok(Err(error)) => {
            let error = crate::telemetry::Chain(&error);
            tracing::warn!(%error, "controller stopped with an error");
        }
        Err(error) => tracing::warn!(%error, "controller task failed"),
        Ok(Ok(())) => {}
    }
    if let Ok(Err(error)) = admin_task.await {
        tracing::warn!(%error, "admin server failed");
    }
    registry.stop().await;
    Ok(())
}

/// The registry `visor up` runs, in the process or as a child.
enum LocalRegistryKind {
    Embedded(EmbeddedRegistry),
    Etcd(Box<LocalRegistry>),
}

impl LocalRegistryKind {
    /// Starts the registry `args` ask for in `args.data_dir`, refusing a
    /// data dir that holds the other kind's data (it would start empty).
    async fn start(args: &UpArgs) -> Result<Self, CliError> {
        let etcd_data = args.data_dir.join("member").exists();
        let embedded_data = args.data_dir.join(crate::embedded::log::FILE).exists();
        let refuse = |holds: &str, flag: &str| {
            CliError::Usage(format!(
                "data dir {} holds {holds}'s data: run visor up {flag}to keep using it, or choose another --data-dir",
                args.data_dir.display()
            ))
        };
        if args.etcd {
            if embedded_data {
                return Err(refuse("the embedded registry", ""));
            }
            let options = LocalRegistryOptions {
                data_dir: Some(args.data_dir.clone()),
                client_port: Some(args.port),
                ..LocalRegistryOptions::default()
            };
            let etcd = LocalRegistry::start_with(options)
                .await
                .map_err(|e| Error::Config(crate::telemetry::Chain(&e).to_string()))?;
            return Ok(Self::Etcd(Box::new(etcd)));
        }
        if etcd_data {
            return Err(refuse("etcd", "--etcd "));
        }
        let listen = SocketAddr::from(([127, 0, 0, 1], args.port));
        let options = ServeOptions::new(args.data_dir.clone(), listen);
        let registry = EmbeddedRegistry::start(options, &CancellationToken::new()).await?;
        Ok(Self::Embedded(registry))
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "embedded",
            Self::Etcd(_) => "etcd",
        }
    }

    fn endpoint(&self) -> String {
        match self {
            Self::Embedded(registry) => registry.endpoint(),
            Self::Etcd(etcd) => etcd.endpoint(),
        }
    }

    /// Stops it, once nothing of this process uses it any more.
    async fn stop(self) {
        match self {
            Self::Embedded(registry) => {
                if let Err(error) = registry.stop().await {
                    let error = crate::telemetry::Chain(&error);
                    tracing::warn!(%error, "the embedded registry stopped with an error");
                }
            }
            Self::Etcd(etcd) => drop(etcd),
        }
    }
}
