//! `visor provider`: the local providers of this host, found in the socket
//! directory. `list` shows them as a caller routes them; `call` sends one
//! request through the same caller the agent uses and prints the response;
//! `exec` runs the built-in exec provider.
//!
//! Invariant: no provider command connects to the registry; they only touch
//! the socket directory (and `exec` its data directory).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::Value;

use super::CliError;
use super::output::{Output, Row};
use crate::provider::exec::{self, ExecProvider};
use crate::provider::{
    CallError, Caller, CallerConfig, Candidate, Layout, Liveness, Provider, ProviderArgs,
    check_task_name, default_socket_dir,
};

/// The name of the CLI's response hooks (`response/visor-cli-<uuid>.sock`).
const CALLER_NAME: &str = "visor-cli";
/// The name the exec provider's sockets carry unless configured otherwise.
const EXEC_NAME: &str = "exec";

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// List tasks and their providers in routing order: highest priority first, ties by name.
    List(ListArgs),
    /// Send one request to the best provider of a task that acknowledges it and print the response.
    Call(CallArgs),
    /// Run the built-in exec provider: the instance tasks, each instance a
    /// process under a supervisor of its own.
    Exec(ExecArgs),
}

impl ProviderCommand {
    /// The log filter when `RUST_LOG` is unset: a provider's configured log
    /// level, warnings for the other commands.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Self::Exec(args) => args
                .provider
                .load(EXEC_NAME)
                .map_or("warn", |config| config.log_level.as_filter()),
            Self::List(_) | Self::Call(_) => "warn",
        }
    }
}

/// Where the providers are.
#[derive(Debug, Args)]
pub struct SocketDirArgs {
    /// The socket directory [default: $XDG_RUNTIME_DIR/visor/providers, /run/visor/providers for root, else /tmp/visor-<uid>/providers].
    #[arg(long, env = "VISOR_PROVIDER_SOCKET_DIR", value_name = "DIR")]
    socket_dir: Option<PathBuf>,
}

impl SocketDirArgs {
    fn dir(&self) -> PathBuf {
        self.socket_dir.clone().unwrap_or_else(default_socket_dir)
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    dir: SocketDirArgs,
    /// Only this task's providers.
    #[arg(value_parser = task_name)]
    task: Option<String>,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    #[command(flatten)]
    dir: SocketDirArgs,
    /// The task, e.g. `instance.status`.
    #[arg(value_parser = task_name)]
    task: String,
    /// The task's arguments, as JSON.
    #[arg(long, value_name = "JSON", default_value = "null", value_parser = json_value)]
    args: Value,
    /// How long to wait for the response once the request is acknowledged.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// `visor provider exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Where instances live (`<DIR>/instances/<instance>/`); keep it short:
    /// each instance's control socket path must fit a unix socket address.
    #[arg(long, env = "VISOR_EXEC_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
    #[command(flatten)]
    provider: ProviderArgs,
}

fn task_name(text: &str) -> Result<String, String> {
    check_task_name(text).map_err(|error| error.to_string())?;
    Ok(text.to_owned())
}

fn json_value(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))
}

/// Runs a provider command.
pub async fn run(command: ProviderCommand, out: &Output) -> Result<(), CliError> {
    match command {
        ProviderCommand::List(args) => list(args, out),
        ProviderCommand::Call(args) => call(args, out).await,
        ProviderCommand::Exec(args) => serve_exec(args).await,
    }
}

/// Serves the exec provider's tasks until SIGINT or SIGTERM; the instances
/// it started keep running.
async fn serve_exec(args: ExecArgs) -> Result<(), CliError> {
    let config = args.provider.load(EXEC_NAME)?;
    let exec = ExecProvider::new(args.data_dir)?;
    exec::register(Provider::new(config), &exec)
        .serve_until_signal()
        .await?;
    Ok(())
}

/// A socket as `list` prints it.
#[derive(Debug, Serialize)]
struct SocketRow {
    task: String,
    priority: u32,
    provider: String,
    /// `live`, `stale` (its owner died: not dialled) or `unlocked` (no lock to tell).
    state: Liveness,
    socket: String,
}

impl From<Candidate> for SocketRow {
    fn from(candidate: Candidate) -> Self {
        Self {
            socket: candidate.socket.display().to_string(),
            task: candidate.task,
            priority: candidate.priority,
            provider: candidate.provider,
            state: candidate.liveness,
        }
    }
}

impl Row for SocketRow {
    const HEADERS: &'static [&'static str] = &["task", "priority", "provider", "state", "socket"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.task.clone(),
            self.priority.to_string(),
            self.provider.clone(),
            self.state.to_string(),
            self.socket.clone(),
        ]
    }
}

fn list(args: ListArgs, out: &Output) -> Result<(), CliError> {
    let layout = Layout::new(args.dir.dir());
    let listed = match &args.task {
        Some(task) => layout.candidates(task),
        None => layout.list(),
    }
    .map_err(|source| CliError::ListProviders {
        dir: layout.root().to_owned(),
        source,
    })?;
    let rows: Vec<SocketRow> = listed.into_iter().map(SocketRow::from).collect();
    Ok(out.list(&rows)?)
}

/// A response as `call` prints it.
#[derive(Debug, Serialize)]
struct ResponseRow {
    task: String,
    provider: String,
    priority: u32,
    id: String,
    result: Value,
    stream_url: Option<String>,
}

impl Row for ResponseRow {
    const HEADERS: &'static [&'static str] = &["task", "provider", "priority", "result"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.task.clone(),
            self.provider.clone(),
            self.priority.to_string(),
            self.result.to_string(),
        ]
    }
}

async fn call(args: CallArgs, out: &Output) -> Result<(), CliError> {
    let config = CallerConfig {
        request_timeout: args.timeout,
        ..CallerConfig::new(args.dir.dir(), CALLER_NAME)
    };
    // Before the response hook is created (and with it the socket
    // directory): a task nobody offers leaves no trace.
    let layout = Layout::new(&config.socket_dir);
    let offered = layout
        .candidates(&args.task)
        .map_err(|source| CallError::List {
            task: args.task.clone(),
            dir: layout.task_dir(&args.task),
            source,
        })?;
    if offered.is_empty() {
        return Err(CallError::NoProvider {
            dir: layout.task_dir(&args.task),
            task: args.task,
        }
        .into());
    }
    let caller = Caller::bind(config).await?;
    let reply = caller.call(&args.task, args.args).await?;
    let provider = reply.provider.to_string();
    let response = reply.response;
    if let Some(error) = response.error {
        return Err(CliError::Task {
            task: args.task,
            provider,
            error,
        });
    }
    out.one(&ResponseRow {
        task: args.task,
        provider: reply.provider.provider,
        priority: reply.provider.priority,
        id: response.id.to_string(),
        result: response.result,
        stream_url: response.stream_url,
    })?;
    Ok(())
}
