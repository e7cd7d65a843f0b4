//! The hook tools (`visor relation-get`, `relation-set`, `relation-list`)
//! and the agent's server for them, on one unix socket of the agent's:
//! [`protocol`] is what travels, [`Contexts`] the hooks running now,
//! [`serve`] the agent's end, [`HookTools`] the tools' end.
//!
//! Invariant: a tool is answered only from the context of a hook that is
//! running, and what `relation-set` sets waits in that context for the
//! hook's acknowledgement.

mod client;
mod contexts;
pub mod protocol;
mod server;

pub use client::{HookTools, ToolError};
pub(super) use contexts::{Contexts, HookContext};
pub(super) use server::serve;
