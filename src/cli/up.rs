//! `visor up`: Visor on one machine with nothing but this binary and etcd.
//!
//! It runs a single-member etcd on loopback as the registry (the client port
//! defaults to 2379, which every other command uses by default), writes the
//! schema, and runs the controller in the same process with its admin
//! endpoints, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::CliError;
use crate::admin::AdminServer;
use crate::controller::{Controller, ControllerConfig};
use crate::registry::{Error, LocalEtcd, LocalEtcdOptions, RegistryConfig, Visor};
use crate::shutdown::Shutdown;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the registry keeps its data (kept across runs).
    #[arg(long, default_value = ".visor/registry")]
    data_dir: PathBuf,
    /// Loopback port for registry clients.
    #[arg(long, default_value_t = 2379)]
    port: u16,
    /// Where the controller's `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin_addr: SocketAddr,
    #[command(flatten)]
    controller: ControllerConfig,
}

pub async fn run(config: &RegistryConfig, args: UpArgs) -> Result<(), CliError> {
    // Before anything is written or started.
    args.controller
        .validate()
        .map_err(|error| CliError::Usage(crate::telemetry::Chain(&error).to_string()))?;
    let mut signals = Shutdown::install().map_err(CliError::Signals)?;
    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        Error::Config(format!(
            "cannot create data dir {}: {e}",
            args.data_dir.display()
        ))
    })?;
    let options = LocalEtcdOptions {
        data_dir: Some(args.data_dir.clone()),
        client_port: Some(args.port),
        ..LocalEtcdOptions::default()
    };
    let etcd = LocalEtcd::start_with(options)
        .await
        .map_err(|e| Error::Config(crate::telemetry::Chain(&e).to_string()))?;
    let local = RegistryConfig {
        endpoints: vec![etcd.endpoint()],
        ..config.clone()
    };
    let visor = Visor::connect(&local).await?;
    let schema = visor.check_schema().await?;

    let shutdown = CancellationToken::new();
    let prometheus = prometheus::Registry::new();
    let controller = Controller::new(args.controller, &prometheus)?;
    let (ready_tx, ready) = watch::channel(false);
    let admin = AdminServer::bind(args.admin_addr, prometheus, ready, controller.health())
        .await
        .map_err(CliError::Admin)?;
    let admin_addr = admin.local_addr().map_err(CliError::Admin)?;
    let admin_task = tokio::spawn(admin.serve(shutdown.clone()));
    eprintln!(
        "visor up: registry at {} (root {}, schema v{}, data in {}); controller metrics at http://{admin_addr}/metrics",
        etcd.endpoint(),
        local.root,
        schema.version,
        args.data_dir.display()
    );
    eprintln!("try: visor app register web --repo-url https://example.com/web.git --stack base");
    eprintln!("     visor watch        (in another terminal)     Ctrl-C or SIGTERM stops");
    let controller = tokio::spawn(controller.run(visor, ready_tx, shutdown.clone()));
    signals.requested().await;
    eprintln!("visor up: stopping");
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
    drop(etcd);
    Ok(())
}
