//! Visor: a registry-driven process controller on etcd.
//!
//! Desired state (apps, revisions, proc types, scale factors, services,
//! relations) and observed state (hosts, instances, tickets, endpoints) live
//! in etcd under one root prefix. This crate is the imperative shell around
//! the pure decisions of [`visor_controllers`] (re-exported as [`model`]).
//!
//! Layout, from the bottom up (each layer imports only those below it):
//!
//! - [`registry`]: etcd access: connection and errors, the key layout, typed
//!   versioned objects with compare-and-set writes, leases and fences, the
//!   one resumable prefix watch and the one backoff policy, the typed API
//!   (`Visor`), the event stream, a local etcd for `visor up`.
//! - [`discovery`]: service registration with a lease kept alive, queries,
//!   and `subscribe_new` / `subscribe_down` streams.
//! - [`runtime`]: the controller runtime: election, list+watch caches,
//!   read-your-writes, the work queue, the runner, resync, and
//!   `ReconcileLoop`, the declaration of a loop that wires them.
//! - [`controller`]: the controller: replica and leadership terms, and one
//!   module per reconcile loop (scale, liveness, gc, relations, services),
//!   each declaring its keys and triggers.
//! - [`provider`]: local providers, mistify's task framework on unix sockets:
//!   the wire format, the socket layout, serving typed task handlers, and
//!   the caller that routes a task by priority (no registry involved); and
//!   the built-in exec provider, each instance a process under a supervisor
//!   of its own (`visor shim`).
//! - [`agent`]: the host agent's local state and metrics.
//! - [`admin`]: one admin server for every long-running command:
//!   `/metrics`, `/healthz`, `/readyz`, and the agent's `/logs` (plain text
//!   or TLS).
//! - [`cli`]: the `visor` command line; [`telemetry`] and [`shutdown`]
//!   serve the long-running commands.

pub mod admin;
pub mod agent;
pub mod cli;
pub mod controller;
pub mod discovery;
pub mod durable;
pub mod embedded;
pub mod provider;
pub mod registry;
pub mod runtime;
pub mod shutdown;
pub mod spec;
pub mod telemetry;

pub use registry::{Error, Registry, RegistryConfig, Result, Visor};
pub use visor_controllers as model;
