//! The host agent's decisions: how a proc type's command line splits, which
//! port an instance gets, what a process's own exit leads to, and how a
//! relation hook is run (its file, its environment, what `relation-list`
//! shows).

mod command;
mod hooks;
mod ports;
mod restart;

pub use command::{CommandLine, InvalidCommand};
pub use hooks::{
    DEFAULT_PATH, ENV_AGENT_SOCKET, ENV_CONTEXT_ID, ENV_HOOK, ENV_PATH, ENV_RELATION,
    ENV_RELATION_ID, ENV_REMOTE_UNIT, ENV_UNIT, HOOKS_DIR, HookEnvSpec, InvalidEndpointName,
    hook_env, hook_name, members_after,
};
pub use ports::{PortError, PortRange, choose_port};
pub use restart::{ExitCause, ExitVerdict, RestartBudget, judge_exit, restarts_within};
