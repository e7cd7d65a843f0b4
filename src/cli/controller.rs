//! `visor controller`: the long-running controller with its admin endpoints.

use std::net::SocketAddr;

use clap::Args;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::CliError;
use crate::admin::AdminServer;
use crate::controller::{Controller, ControllerConfig};
use crate::registry::RegistryConfig;
use crate::shutdown::Shutdown;

#[derive(Debug, Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    controller: ControllerConfig,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, env = "VISOR_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    admin_addr: SocketAddr,
}

/// Checks the flags, serves the admin endpoints (reporting the replica's
/// standing from the start), connects (retrying while the registry is
/// unreachable), and runs the controller until SIGINT or SIGTERM.
pub async fn run(registry: &RegistryConfig, args: ControllerArgs) -> Result<(), CliError> {
    // Before anything else: a usage error must not depend on reaching the registry.
    args.controller
        .validate()
        .map_err(|error| CliError::Usage(crate::telemetry::Chain(&error).to_string()))?;
    let mut signals = Shutdown::install().map_err(CliError::Signals)?;
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            signals.requested().await;
            shutdown.cancel();
        });
    }
    let prometheus = prometheus::Registry::new();
    let controller = Controller::new(args.controller, &prometheus)?;
    let (ready_tx, ready) = watch::channel(false);
    let admin = AdminServer::bind(args.admin_addr, prometheus, ready, controller.health())
        .await
        .map_err(CliError::Admin)?;
    tracing::info!(addr = %admin.local_addr().map_err(CliError::Admin)?, "admin endpoints serving");
    let admin_task = tokio::spawn(admin.serve(shutdown.clone()));
    let Some(visor) = controller.connect(registry, &shutdown).await else {
        return Ok(());
    };
    controller.run(visor, ready_tx, shutdown.clone()).await?;
    shutdown.cancel();
    // The admin server stops with the shutdown token; its own failure is only logged.
    if let Ok(Err(error)) = admin_task.await {
        tracing::warn!(%error, "admin server failed");
    }
    Ok(())
}
