//! The smallest program that registers a service endpoint, used by the
//! tests (`tests/controller/services_acceptance.rs`) and as an example of the
//! [`visor::discovery`] library.
//!
//! It registers, prints `registered <uuid>` once the endpoint is in the
//! registry, and on SIGINT or SIGTERM stops cleanly (a `departed` tombstone,
//! which is no death) and prints `stopped`. Killed with SIGKILL instead, it
//! leaves its endpoint to die when the lease expires: one `service-down`.
//!
//! ```text
//! cargo run --example register_endpoint -- --endpoints http://127.0.0.1:2379 \
//!     --service db --hostname db-1.example --port pg=5432 --ttl 5
//! ```

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use visor::discovery::{self, DEFAULT_TTL, RegisterRequest};
use visor::shutdown::Shutdown;
use visor::{RegistryConfig, Visor};

/// Registers one endpoint until SIGINT or SIGTERM.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    registry: RegistryConfig,
    /// The service to register an endpoint of.
    #[arg(long)]
    service: String,
    /// The endpoint's public hostname.
    #[arg(long)]
    hostname: String,
    /// A port as `scheme=port` (e.g. `http=8080`); repeatable.
    #[arg(long = "port", required = true, value_parser = scheme_port)]
    ports: Vec<(String, String)>,
    /// The lease TTL, in seconds.
    #[arg(long, default_value_t = DEFAULT_TTL.as_secs())]
    ttl: u64,
}

fn scheme_port(arg: &str) -> Result<(String, String), String> {
    let (scheme, port) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected scheme=port, got {arg:?}"))?;
    Ok((scheme.to_owned(), port.to_owned()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    // Before anything is announced: a SIGTERM sent as soon as the
    // `registered` line is read must be a clean stop, not the default death.
    let mut shutdown = Shutdown::install()?;
    let visor = Visor::connect(&args.registry).await?;
    let request = RegisterRequest {
        hostname: args.hostname,
        ports: args.ports.into_iter().collect(),
        ttl: Duration::from_secs(args.ttl),
        ..RegisterRequest::default()
    };
    let registration = discovery::register(&visor, &args.service, request).await?;
    registration.wait_registered().await;
    say(&format!("registered {}", registration.id()))?;

    shutdown.requested().await;
    registration.stop().await?;
    say("stopped")?;
    Ok(())
}

/// Prints one line and flushes it: the tests read it through a pipe.
fn say(line: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}
