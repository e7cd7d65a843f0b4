//! `visor agent`: the host agent, until SIGINT or SIGTERM, which drain the
//! host (its instances move elsewhere or are stopped) before it leaves.

use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::CliError;
use crate::agent::{Agent, AgentConfig};
use crate::registry::{RegistryConfig, Visor};
use crate::shutdown::Shutdown;
use crate::telemetry::Chain;

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub agent: AgentConfig,
    /// On SIGTERM, how long the controller has to move the host's instances
    /// elsewhere before the agent stops what is left.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

/// Checks the flags, connects, and runs the agent until a signal drains it.
pub async fn run(registry: &RegistryConfig, args: AgentArgs) -> Result<(), CliError> {
    args.agent
        .validate()
        .map_err(|error| CliError::Usage(Chain(&error).to_string()))?;
    let mut signals = Shutdown::install().map_err(CliError::Signals)?;
    let visor = Visor::connect(registry).await?;
    visor.check_schema().await?;
    let agent = Agent::start(visor, args.agent).await?;
    tracing::info!(admin = agent.admin_url(), "agent started");
    let drain = CancellationToken::new();
    {
        let drain = drain.clone();
        tokio::spawn(async move {
            signals.requested().await;
            drain.cancel();
        });
    }
    agent
        .run(drain, args.drain_timeout, CancellationToken::new())
        .await?;
    Ok(())
}
