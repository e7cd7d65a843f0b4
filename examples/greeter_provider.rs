//! The smallest provider program built on [`visor::provider`]: one task,
//! `greet`, with typed args and a typed error. Used by the tests
//! (`tests/provider/program.rs`) and as the Rust example of
//! `docs/providers.md`.
//!
//! Its configuration comes from flags, `VISOR_PROVIDER_*` variables and a
//! JSON config file (`--config`); it prints `serving <socket>` once its
//! socket exists, and on SIGINT or SIGTERM removes it and prints `stopped`.
//!
//! ```text
//! cargo run --example greeter_provider -- --socket-dir /tmp/providers --default-priority 60
//! visor provider call greet --socket-dir /tmp/providers --args '{"name":"visor"}'
//! ```

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use serde::{Deserialize, Serialize};
use visor::provider::{Provider, ProviderArgs};
use visor::shutdown::Shutdown;
use visor::telemetry::{self, Chain, LogFormat};

/// Serves the task `greet` until SIGINT or SIGTERM.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    provider: ProviderArgs,
}

/// `greet`'s args.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GreetArgs {
    /// Who to greet; not empty.
    name: String,
}

/// `greet`'s result.
#[derive(Debug, Serialize)]
struct Greeting {
    /// The greeting.
    greeting: String,
    /// The provider that greeted.
    by: String,
}

/// Why `greet` failed.
#[derive(Debug, thiserror::Error)]
enum GreetError {
    /// The name is empty.
    #[error("nobody to greet: name is empty")]
    Nobody,
}

async fn greet(args: GreetArgs, by: String) -> Result<Greeting, GreetError> {
    if args.name.is_empty() {
        return Err(GreetError::Nobody);
    }
    Ok(Greeting {
        greeting: format!("hello, {}", args.name),
        by,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match args.provider.load("greeter") {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {}", Chain(&error));
            return ExitCode::from(2);
        }
    };
    telemetry::init(LogFormat::Text, config.log_level.as_filter());
    let signals = match Shutdown::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("error: cannot install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let by = config.service_name.clone();
    let provider = Provider::new(config).task("greet", move |args| greet(args, by.clone()));
    let bound = match provider.bind().await {
        Ok(bound) => bound,
        Err(error) => {
            eprintln!("error: {}", Chain(&error));
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    for socket in bound.sockets() {
        let _ = writeln!(stdout, "serving {}", socket.display());
    }
    let _ = stdout.flush();
    bound.serve_until(signals).await;
    let _ = writeln!(stdout, "stopped");
    ExitCode::SUCCESS
}
