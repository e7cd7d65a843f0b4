//! The host agent's decisions: how a proc type's command line splits, which
//! port an instance gets, and what a process's own exit leads to.

mod command;
mod ports;
mod restart;

pub use command::{CommandLine, InvalidCommand};
pub use ports::{PortError, PortRange, choose_port};
pub use restart::{ExitCause, ExitVerdict, RestartBudget, judge_exit, restarts_within};
