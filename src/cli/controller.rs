//! `visor controller`: the long-running controller with its admin endpoints.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::CliError;
use crate::admin::AdminServer;
use crate::controller::{self, ControllerConfig};
use crate::registry::{RegistryConfig, Visor};
use crate::shutdown::Shutdown;

#[derive(Debug, Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    controller: ControllerConfig,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, env = "VISOR_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    admin_addr: SocketAddr,
}

/// Connects (retrying while the registry is unreachable), serves the admin
/// endpoints, and runs the controller until SIGINT or SIGTERM.
pub async fn run(registry: &RegistryConfig, args: ControllerArgs) -> Result<(), CliError> {
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
    let (ready_tx, ready) = watch::channel(false);
    let admin = AdminServer::bind(args.admin_addr, prometheus.clone(), ready)
        .await
        .map_err(CliError::Admin)?;
    tracing::info!(addr = %admin.local_addr().map_err(CliError::Admin)?, "admin endpoints serving");
    let admin_task = tokio::spawn(admin.serve(shutdown.clone()));
    let Some(visor) = connect(registry, &shutdown).await else {
        return Ok(());
    };
    controller::run(
        visor,
        args.controller,
        prometheus,
        ready_tx,
        shutdown.clone(),
    )
    .await?;
    shutdown.cancel();
    // The admin server stops with the shutdown token; its own failure is only logged.
    if let Ok(Err(error)) = admin_task.await {
        tracing::warn!(%error, "admin server failed");
    }
    Ok(())
}

/// Connects to the registry, retrying with backoff; `None` if shut down first.
async fn connect(config: &RegistryConfig, shutdown: &CancellationToken) -> Option<Visor> {
    let mut delay = Duration::from_millis(200);
    loop {
        match Visor::connect(config).await {
            Ok(visor) => return Some(visor),
            Err(error) => tracing::warn!(%error, ?delay, "cannot reach the registry; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => delay = (delay * 2).min(Duration::from_secs(10)),
            () = shutdown.cancelled() => return None,
        }
    }
}
