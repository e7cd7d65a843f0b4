//! `visor shim` (hidden): the supervisor of one instance, spawned by the
//! exec provider; see `provider::exec::shim`.

use std::path::PathBuf;

use super::CliError;

/// Supervise one instance (spawned by the exec provider, not by people).
#[derive(Debug, clap::Args)]
pub struct ShimArgs {
    /// The instance directory, holding the provider's `spec.json`.
    #[arg(long)]
    dir: PathBuf,
}

/// Supervises the instance until its workload ended and its exit is recorded.
pub async fn run(args: ShimArgs) -> Result<(), CliError> {
    Ok(crate::provider::exec::shim::run(args.dir).await?)
}
