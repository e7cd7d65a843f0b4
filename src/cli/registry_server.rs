//! `visor registry serve`: the embedded registry on its own, so that several
//! Visor processes on one machine (a controller, agents, the CLI, `etcdctl`)
//! share it as they would share an etcd.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use super::CliError;
use crate::embedded::{EmbeddedRegistry, ServeOptions};
use crate::shutdown::Shutdown;

/// The embedded registry's commands.
#[derive(Debug, Subcommand)]
pub enum RegistryServerCommand {
    /// Serve the embedded registry (etcd's v3 API) until SIGINT or SIGTERM.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the registry keeps its log (kept across runs).
    #[arg(long, default_value = ".visor/registry")]
    data_dir: PathBuf,
    /// The loopback address to serve on (port 0: any free port, printed).
    #[arg(long, default_value = "127.0.0.1:2379")]
    listen: SocketAddr,
    /// How many revisions of history automatic compaction keeps.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(1..))]
    history: i64,
    /// How often automatic compaction runs.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    compaction_interval: Duration,
}

impl ServeArgs {
    /// The server's options for these flags.
    pub fn options(&self) -> ServeOptions {
        ServeOptions {
            history: self.history,
            compaction_interval: self.compaction_interval,
            ..ServeOptions::new(self.data_dir.clone(), self.listen)
        }
    }
}

pub async fn run(command: RegistryServerCommand) -> Result<(), CliError> {
    let RegistryServerCommand::Serve(args) = command;
    if args.compaction_interval.is_zero() {
        return Err(CliError::Usage(
            "--compaction-interval must be longer than zero".into(),
        ));
    }
    let mut signals = Shutdown::install().map_err(CliError::Signals)?;
    let shutdown = CancellationToken::new();
    let registry = EmbeddedRegistry::start(args.options(), &shutdown).await?;
    // The one line scripts wait for (and read the port from, with port 0).
    println!("visor registry: serving on {}", registry.endpoint());
    tokio::select! {
        () = signals.requested() => {}
        () = shutdown.cancelled() => {}
    }
    registry.stop().await?;
    Ok(())
}
