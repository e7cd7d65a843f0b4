//! `visor up`: a local registry to try Visor with nothing but this binary and etcd.
//!
//! For now it runs a single-member etcd on loopback (the client port defaults
//! to 2379, which every other command uses by default), writes the schema, and
//! stays up until interrupted.

use std::path::PathBuf;

use clap::Args;

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
}

pub async fn run(config: &RegistryConfig, args: UpArgs) -> Result<(), Error> {
    let mut shutdown = Shutdown::install()
        .map_err(|e| Error::Config(format!("cannot install signal handlers: {e}")))?;
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
        .map_err(|e| Error::Config(e.to_string()))?;
    let local = RegistryConfig {
        endpoints: vec![etcd.endpoint()],
        ..config.clone()
    };
    let visor = Visor::connect(&local).await?;
    let schema = visor.check_schema().await?;
    eprintln!(
        "visor up: registry at {} (root {}, schema v{}, data in {})",
        etcd.endpoint(),
        local.root,
        schema.version,
        args.data_dir.display()
    );
    eprintln!("try: visor app register web --repo-url https://example.com/web.git --stack base");
    eprintln!("     visor watch        (in another terminal)     Ctrl-C or SIGTERM stops");
    shutdown.requested().await;
    eprintln!("visor up: stopping");
    drop(etcd);
    Ok(())
}
