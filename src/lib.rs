//! Visor: a registry-driven process controller on etcd.
//!
//! Desired state (apps, revisions, proc types, scale factors) and observed state
//! (hosts, instances, tickets) live in etcd under one root prefix. This crate is
//! the imperative shell around the pure decisions of [`visor_controllers`]: the
//! registry client and typed API ([`registry`]) and the `visor` CLI ([`cli`]).

pub mod admin;
pub mod agent;
pub mod cli;
pub mod controller;
pub mod discovery;
pub mod registry;
pub mod runtime;
pub mod shutdown;
pub mod telemetry;

pub use registry::{Error, Registry, RegistryConfig, Result, Visor};
pub use visor_controllers as model;
