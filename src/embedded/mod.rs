//! The embedded registry: a single-node registry inside `visor` that speaks
//! etcd's v3 gRPC API, so that every part of Visor, and `etcdctl`, talks to
//! it exactly as to etcd.
//!
//! For one machine it replaces an etcd child process: `visor up` needs no
//! etcd binary. It is single-node by design (no raft, one writer); more
//! than one machine means a real etcd cluster. The functional core is the
//! MVCC index ([`mvcc`]) and the requests on it ([`state`]); the shell
//! serves them over gRPC and makes every acknowledged change durable first.

pub mod committer;
pub mod error;
pub mod hub;
pub mod log;
pub mod metrics;
pub mod mvcc;
pub mod node;
pub mod server;
pub mod services;
pub mod state;
pub mod wal;
pub mod watch;

pub use server::{EmbeddedRegistry, ServeError, ServeOptions};

#[cfg(test)]
mod tests;
