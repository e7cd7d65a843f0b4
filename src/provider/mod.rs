//! Providers: programs that offer named tasks on unix sockets, found through
//! the filesystem, after mistify's provider/acomm design and wire-compatible
//! with it (`docs/providers.md` is the reference for peers in any language).
//!
//! - [`wire`]: the frames and the request, ack and response messages.
//! - [`Layout`]: `<socket_dir>/<task>/<priority>-<provider>.sock`, the lock
//!   beside each socket, and the routing order (numeric priority, highest
//!   first, ties by name).
//! - [`Provider`]: register typed task handlers, bind their sockets, serve
//!   until shut down (acknowledging each request before its handler runs,
//!   enforcing each task's timeout).
//! - [`Caller`]: route a task to its providers with fallback until one
//!   acknowledges, and await the response on the caller's own hook, tracked
//!   to its response or its timeout.
//! - [`ProviderConfig`] / [`ProviderArgs`]: file, flags and environment.
//! - [`exec`]: the built-in exec provider (instances as supervised
//!   processes).

mod caller;
mod config;
mod error;
pub mod exec;
mod layout;
mod listener;
mod lock;
mod server;
mod tracker;
pub mod wire;

pub use caller::{Caller, CallerConfig, DEFAULT_ACK_TIMEOUT, Reply};
pub use config::{
    ConfigError, DEFAULT_PRIORITY, DEFAULT_REQUEST_TIMEOUT, DEFAULT_TIMEOUT, LogLevel,
    ProviderArgs, ProviderConfig, TaskConfig, default_socket_dir,
};
pub use error::{Attempt, AttemptFailure, CallError, CallerError, ServeError};
pub use layout::{
    Candidate, Layout, MAX_SOCKET_PATH, NameError, Priority, RESPONSE_DIR, SocketPaths,
    check_provider_name, check_task_name,
};
pub use listener::BindError;
pub(crate) use listener::OwnedSocket;
pub use lock::{Acquire, Liveness, OwnerLock};
pub use server::{
    Bound, DEFAULT_DELIVERY_TIMEOUT, DEFAULT_DRAIN_TIMEOUT, DEFAULT_READ_TIMEOUT, Provider,
};
pub use tracker::{DuplicateId, Ending, Pending, Tracker};
