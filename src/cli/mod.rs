//! The `visor` command line: clap definitions, dispatch, and the mapping of
//! errors to a one-line message and an exit code scripts can rely on.
//!
//! Exit codes: 0 success, 1 any other failure, 2 usage error, 3 not found
//! (no provider offers a task, too), 4 conflict or already exists, 5 registry
//! unavailable (or no provider of a task acknowledged a call, or a host or
//! its agent's admin endpoint cannot be reached).
//!
//! Invariant: a registry command connects (and so may write, if only the
//! schema version of a fresh registry) only after its whole command line was
//! accepted: see `args`.

mod agent;
mod apps;
pub(crate) mod args;
mod controller;
mod follow;
mod generate;
mod hook_tools;
mod hooks;
mod logs;
mod notifications;
mod observed;
mod output;
mod procs;
mod provider;
mod registry_server;
mod relations;
mod rollouts;
mod services;
mod shim;
mod specs;
mod status;
mod up;
mod usage;
mod wait;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::registry::{Error, RegistryConfig, Visor};
use crate::telemetry::LogFormat;
use output::{Format, Output, OutputError};

/// Visor: a registry-driven process controller on etcd.
#[derive(Debug, Parser)]
#[command(name = "visor", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    registry: RegistryConfig,

    /// Log format (logs go to stderr; `RUST_LOG` sets the filter).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,

    /// Output format: a human table, or JSON for scripts (stable field names).
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, global = true)]
    output: Format,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local registry (etcd on loopback) for trying Visor out.
    Up(up::UpArgs),
    /// Run the controller: leader election, scale/placement, host liveness, GC.
    Controller(controller::ControllerArgs),
    /// Run the host agent: register this host, run its instances, drain on SIGTERM.
    Agent(agent::AgentArgs),
    /// Local providers (tasks on unix sockets): list them, call a task, run the exec provider.
    #[command(subcommand)]
    Provider(provider::ProviderCommand),
    /// Supervise one instance of the exec provider.
    #[command(hide = true)]
    Shim(shim::ShimArgs),
    /// In a relation hook: print a unit's settings in the hook's relation.
    #[command(name = "relation-get", hide = true)]
    RelationGet(hook_tools::RelationGetArgs),
    /// In a relation hook: set the unit's settings, written if the hook succeeds.
    #[command(name = "relation-set", hide = true)]
    RelationSet(hook_tools::RelationSetArgs),
    /// In a relation hook: list the relation's members as the unit sees them.
    #[command(name = "relation-list", hide = true)]
    RelationList,
    /// The embedded registry: serve etcd's v3 API from this binary.
    #[command(subcommand, name = "registry")]
    RegistryServer(registry_server::RegistryServerCommand),
    /// Print shell completions: `source <(visor completions bash)`.
    Completions(generate::CompletionsArgs),
    /// Print the man page, or write one per command with `--dir`.
    Man(generate::ManArgs),
    #[command(flatten)]
    Registry(RegistryCommand),
}

/// Commands that talk to a running registry.
#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// Apps: register, unregister, list, show.
    #[command(subcommand)]
    App(apps::AppCommand),
    /// Environment variables of an app.
    #[command(subcommand)]
    Env(apps::EnvCommand),
    /// Proc types of an app.
    #[command(subcommand)]
    Proc(procs::ProcCommand),
    /// Revisions of an app.
    #[command(subcommand)]
    Rev(procs::RevCommand),
    /// Show or set revision scale factors: `visor scale web v1 http=3 worker=1`.
    Scale(procs::ScaleArgs),
    /// List instances.
    Instances(observed::InstancesArgs),
    /// Print an instance's output (stdout, or stderr), read from the agent of its host.
    Logs(logs::LogsArgs),
    /// List live hosts.
    Hosts,
    /// List tickets in registry order.
    Tickets(observed::TicketsArgs),
    /// Relations between apps, units' settings in them, and acknowledged states.
    #[command(subcommand)]
    Relation(relations::RelationCommand),
    /// List outstanding relation hooks, of every unit or of one.
    Hooks(hooks::HooksArgs),
    /// Service definitions (discovery): register, unregister, list, show.
    #[command(subcommand)]
    Service(services::ServiceCommand),
    /// List a service's endpoints, live and departed (passwords masked).
    Endpoints(services::EndpointsArgs),
    /// List the controller's notifications (service down, degraded, restored), or follow them.
    Notifications(notifications::NotificationsArgs),
    /// Stream registry events.
    Watch(observed::WatchArgs),
    /// Desired vs active and running per (app, rev, proc), unplaceable work, hosts alive, leader.
    Status(status::StatusArgs),
    /// Show what applying spec files would change (exit 1 if anything).
    Diff(specs::DiffArgs),
    /// Write spec files: each app's changes in one transaction against what was read.
    Apply(specs::ApplyArgs),
    /// Print registry objects in the spec format.
    #[command(subcommand)]
    Get(specs::GetCommand),
    /// Rollouts of apps with a deployment: `visor rollout status web -w`.
    #[command(subcommand)]
    Rollout(rollouts::RolloutCommand),
}

/// Parses the command line, runs it, and returns the exit code.
pub fn main() -> ExitCode {
    // An instance's supervisor starts with every instance start: it parses
    // its own flag rather than building the whole command tree, which would
    // cost more than the rest of its start.
    if let Some(parsed) = shim::parse_alone(std::env::args_os()) {
        return match parsed {
            Ok(args) => execute(LogFormat::Text, "info", Threads::One, shim::run(args)),
            Err(error) => usage::report(&error),
        };
    }
    let cli = match usage::parse() {
        Ok(cli) => cli,
        Err(error) => return usage::report(&error),
    };
    // Commands print their results; logs are for warnings unless asked for more.
    // Long-running commands log their work; the others only warnings.
    let default_filter = match &cli.command {
        Command::Controller(_)
        | Command::Agent(_)
        | Command::Up(_)
        | Command::Shim(_)
        | Command::RegistryServer(_) => "info",
        Command::Provider(command) => command.default_log_filter(),
        _ => "warn",
    };
    // An instance's supervisor waits on one workload, a hook tool on one
    // reply: one thread is all they need, and starting no worker threads
    // keeps their start quick.
    let threads = match &cli.command {
        Command::Shim(_)
        | Command::RelationGet(_)
        | Command::RelationSet(_)
        | Command::RelationList => Threads::One,
        _ => Threads::Many,
    };
    execute(cli.log_format, default_filter, threads, run(cli))
}

/// The async runtime a command runs on.
enum Threads {
    One,
    Many,
}

/// Starts logging and the runtime, runs `command` to its end, and returns
/// the exit code, reporting a failure on one line.
fn execute(
    log_format: LogFormat,
    default_filter: &str,
    threads: Threads,
    command: impl Future<Output = Result<(), CliError>>,
) -> ExitCode {
    crate::telemetry::init(log_format, default_filter);
    let runtime = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Threads::Many => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        // Whoever read the output stopped reading: what they read is complete.
        Ok(()) | Err(CliError::Output(OutputError::Closed)) => ExitCode::SUCCESS,
        // The differences are the output.
        Err(CliError::Differs) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {}", crate::telemetry::Chain(&error));
            ExitCode::from(exit_code(&error))
        }
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] Error),
    /// The controller stopped with an error.
    #[error(transparent)]
    Controller(#[from] crate::controller::ControllerError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// The admin endpoints could not be served.
    #[error("admin endpoints")]
    Admin(#[source] std::io::Error),
    /// The command line is wrong in a way clap cannot see (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The results could not be printed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The embedded registry could not be served.
    #[error(transparent)]
    RegistryServer(#[from] crate::embedded::ServeError),
    /// A provider's configuration was refused.
    #[error(transparent)]
    ProviderConfig(#[from] crate::provider::ConfigError),
    /// A provider could not serve.
    #[error(transparent)]
    Serve(#[from] crate::provider::ServeError),
    /// An instance task failed.
    #[error(transparent)]
    Instance(#[from] crate::provider::exec::InstanceError),
    /// An instance's supervisor failed.
    #[error(transparent)]
    Shim(#[from] crate::provider::exec::shim::ShimError),
    /// A provider call got no response.
    #[error(transparent)]
    Call(#[from] crate::provider::CallError),
    /// A caller's response hook could not be set up.
    #[error(transparent)]
    Caller(#[from] crate::provider::CallerError),
    /// The socket directory could not be read.
    #[error("cannot list the providers in {}", dir.display())]
    ListProviders {
        /// The socket directory.
        dir: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The agent could not start or run.
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    /// An instance's output could not be printed.
    #[error(transparent)]
    Logs(#[from] logs::LogsError),
    /// A hook tool failed (outside a hook, or refused by the agent).
    #[error(transparent)]
    HookTool(#[from] crate::agent::relation_hooks::ToolError),
    /// A spec file cannot be read, or is refused.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// Man pages could not be rendered or written.
    #[error("cannot write the man pages to {}", path.display())]
    Generate {
        /// The directory (`-`: standard output).
        path: std::path::PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// `--wait` saw what was asked for become unreachable.
    #[error("{why}")]
    WaitFailed {
        /// What went wrong, e.g. a rollout rolled back and why.
        why: String,
    },
    /// `--wait` ran out of time.
    #[error("timed out after {waited} waiting; still missing: {missing}")]
    WaitTimedOut {
        /// The timeout, e.g. `5m`.
        waited: String,
        /// What the registry did not show yet.
        missing: String,
    },
    /// `--wait` was interrupted (SIGINT, SIGTERM) or lost the registry's changes.
    #[error("stopped waiting; still missing: {missing}")]
    WaitStopped {
        /// What the registry did not show yet.
        missing: String,
    },
    /// A followed rollout ended rolled back or paused.
    #[error("the rollout of app {app} to {revision} is {phase}: {reason}")]
    RolloutFailed {
        /// The app.
        app: String,
        /// The revision it rolled to.
        revision: String,
        /// `rolled-back` or `paused`.
        phase: &'static str,
        /// Why.
        reason: String,
    },
    /// `visor diff` found differences (exit 1, with nothing more to say).
    #[error("the registry differs from the specs")]
    Differs,
    /// A provider's task answered with an error.
    #[error("task {task} failed at provider {provider}: {error}")]
    Task {
        /// The task.
        task: String,
        /// The provider that acknowledged it (`<priority>-<name>`).
        provider: String,
        /// The response's error.
        error: String,
    },
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let out = Output::new(cli.output);
    let command = match cli.command {
        Command::Up(args) => return up::run(&cli.registry, args).await,
        Command::Controller(args) => return controller::run(&cli.registry, args).await,
        Command::Agent(args) => return agent::run(&cli.registry, args).await,
        Command::Provider(command) => return provider::run(command, &out).await,
        Command::Shim(args) => return shim::run(args).await,
        Command::RegistryServer(command) => return registry_server::run(command).await,
        Command::Completions(args) => return generate::completions(&args),
        Command::Man(args) => return generate::man(&args),
        Command::RelationGet(args) => return hook_tools::relation_get(args, &out).await,
        Command::RelationSet(args) => return hook_tools::relation_set(args).await,
        Command::RelationList => return hook_tools::relation_list(&out).await,
        Command::Registry(command) => command,
    };
    // Connecting writes the schema version to a fresh registry: a command
    // refused for what its arguments say together must be refused first.
    command.check()?;
    // Spec files are read and checked before anything connects, too.
    let specs = match &command {
        RegistryCommand::Diff(args) => specs::load(&args.specs)?,
        RegistryCommand::Apply(args) => specs::load(&args.specs)?,
        _ => Vec::new(),
    };
    let visor = Visor::connect(&cli.registry).await?;
    match command {
        RegistryCommand::App(command) => apps::app(&visor, command, &out).await,
        RegistryCommand::Env(command) => apps::env(&visor, command, &out).await,
        RegistryCommand::Proc(command) => procs::proc(&visor, command, &out).await,
        RegistryCommand::Rev(command) => procs::rev(&visor, command, &out).await,
        RegistryCommand::Scale(args) => procs::scale(&visor, args, &out).await,
        RegistryCommand::Instances(args) => observed::instances(&visor, args, &out).await,
        RegistryCommand::Logs(args) => logs::logs(&visor, &cli.registry, args, &out).await,
        RegistryCommand::Hosts => observed::hosts(&visor, &out).await,
        RegistryCommand::Tickets(args) => observed::tickets(&visor, args, &out).await,
        RegistryCommand::Relation(command) => relations::relation(&visor, command, &out).await,
        RegistryCommand::Hooks(args) => hooks::hooks(&visor, args, &out).await,
        RegistryCommand::Service(command) => services::service(&visor, command, &out).await,
        RegistryCommand::Endpoints(args) => services::endpoints(&visor, args, &out).await,
        RegistryCommand::Notifications(args) => {
            notifications::notifications(&visor, args, &out).await
        }
        RegistryCommand::Watch(args) => observed::watch(&visor, args, &out).await,
        RegistryCommand::Status(args) => status::run(&visor, args, &out).await,
        RegistryCommand::Diff(args) => specs::diff(&visor, &specs, &args, &out).await,
        RegistryCommand::Apply(args) => specs::apply(&visor, &specs, &args, &out).await,
        RegistryCommand::Get(command) => specs::get(&visor, command, &out).await,
        RegistryCommand::Rollout(command) => rollouts::rollout(&visor, command, &out).await,
    }
}

impl RegistryCommand {
    /// Refuses what the arguments say together (each was checked as it was
    /// parsed), before anything connects.
    fn check(&self) -> Result<(), CliError> {
        match self {
            Self::Env(command) => command.check(),
            Self::Scale(args) => args.check(),
            Self::Proc(procs::ProcCommand::Register { run, .. }) => run.check(),
            Self::Relation(command) => command.check(),
            _ => Ok(()),
        }
    }
}

fn exit_code(error: &CliError) -> u8 {
    let error = match error {
        CliError::Registry(error) => error,
        CliError::Usage(_) | CliError::Spec(_) => return usage::USAGE_EXIT,
        CliError::Call(crate::provider::CallError::NoProvider { .. }) => return 3,
        CliError::Call(crate::provider::CallError::NotAcknowledged { .. }) => return 5,
        CliError::Logs(error) => return error.exit_code(),
        _ => return 1,
    };
    match error {
        Error::NotFound(_) => 3,
        Error::Conflict { .. } | Error::AlreadyExists(_) | Error::TicketClaimed { .. } => 4,
        Error::Unavailable { .. } => 5,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        // Catches clashing argument ids (e.g. a positional named like a global flag).
        super::Cli::command().debug_assert();
    }

    #[test]
    fn hook_tool_command_lines_parse_beside_the_global_flags() {
        use clap::Parser;
        // A positional whose id is a global flag's (`key`) panics only here.
        for line in [
            &["visor", "relation-get"][..],
            &["visor", "relation-get", "host", "db-0", "--format", "json"],
            &["visor", "relation-set", "a=1", "b=x=y"],
            &["visor", "relation-list"],
        ] {
            super::Cli::try_parse_from(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        }
    }

    #[test]
    fn exit_codes() {
        use super::logs::LogsError;
        use super::{CliError, Error, OutputError, exit_code};
        let name = |text| visor_controllers::Name::parse("test", text).expect("valid");
        let table = [
            (
                CliError::Usage("proc http is given more than once".into()),
                2,
            ),
            (CliError::Registry(Error::Config("bad".into())), 1),
            (
                CliError::Call(crate::provider::CallError::NoProvider {
                    task: "instance.start".into(),
                    dir: "/run/p/instance.start".into(),
                }),
                3,
            ),
            (
                CliError::Call(crate::provider::CallError::NotAcknowledged {
                    task: "instance.start".into(),
                    attempts: Vec::new(),
                }),
                5,
            ),
            (
                CliError::Task {
                    task: "instance.start".into(),
                    provider: "50-exec".into(),
                    error: "no such command".into(),
                },
                1,
            ),
            (
                CliError::Output(OutputError::Write(std::io::Error::other("disk full"))),
                1,
            ),
            (
                CliError::Logs(LogsError::HostDown {
                    instance: name("i-1"),
                    host: name("h1"),
                }),
                5,
            ),
            (
                CliError::Logs(LogsError::NoAdminUrl {
                    instance: name("i-1"),
                    host: name("h1"),
                }),
                1,
            ),
            (
                CliError::Logs(LogsError::Refused {
                    host: name("h1"),
                    status: reqwest::StatusCode::NOT_FOUND,
                    message: "no instance i-1 on this host".into(),
                }),
                3,
            ),
        ];
        for (error, code) in table {
            assert_eq!(exit_code(&error), code, "{error}");
        }
    }
}
