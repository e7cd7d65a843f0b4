//! `visor provider …`: providers on this host. `visor provider exec` runs
//! the built-in exec provider on its own.

use std::path::PathBuf;

use clap::Subcommand;

use super::CliError;
use crate::provider::exec::{self, ExecProvider};
use crate::provider::{Provider, ProviderArgs};

/// The name the exec provider's sockets carry unless configured otherwise.
const EXEC_NAME: &str = "exec";

/// Providers on this host.
#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Run the built-in exec provider: the instance tasks, each instance a
    /// process under a supervisor of its own.
    Exec(ExecArgs),
}

/// `visor provider exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Where instances live (`<DIR>/instances/<instance>/`); keep it short:
    /// each instance's control socket path must fit a unix socket address.
    #[arg(long, env = "VISOR_EXEC_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
    #[command(flatten)]
    provider: ProviderArgs,
}

impl ProviderCommand {
    /// The log filter when `RUST_LOG` is unset: the configured log level.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Self::Exec(args) => args
                .provider
                .load(EXEC_NAME)
                .map_or("warn", |config| config.log_level.as_filter()),
        }
    }
}

/// Runs a `visor provider` command.
pub async fn run(command: ProviderCommand) -> Result<(), CliError> {
    match command {
        ProviderCommand::Exec(args) => {
            let config = args.provider.load(EXEC_NAME)?;
            let data_dir = std::path::absolute(&args.data_dir).map_err(|source| {
                CliError::Usage(format!("--data-dir {}: {source}", args.data_dir.display()))
            })?;
            let exec = ExecProvider::new(data_dir)?;
            let provider = exec::register(Provider::new(config), &exec);
            provider.serve_until_signal().await?;
            Ok(())
        }
    }
}
