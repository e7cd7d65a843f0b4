//! What Visor's integration tests (`tests/<layer>/`) and benchmarks
//! (`benches/`) share, compiled once for all of them.
//!
//! Everything here talks to real processes: an etcd per test
//! ([`registry`]), the built `visor` binary as a child ([`cli`],
//! [`controller`]), a fault-injecting proxy in front of etcd
//! ([`fault_proxy`]). Invariants every module keeps: a child process or
//! proxy never outlives its handle (killed on drop), and every wait is
//! bounded, failing with a message that names what did not happen
//! ([`wait`]), so a test fails instead of hanging.

pub mod agent;
pub mod bench;
pub mod cli;
pub mod controller;
pub mod examples;
pub mod exec_provider;
pub mod fault_proxy;
pub mod fixtures;
pub mod path_without;
pub mod pki;
pub mod procfs;
pub mod promtool;
pub mod raw;
pub mod registry;
pub mod relations;
pub mod sessions;
pub mod stats;
pub mod wait;

pub use registry::TestRegistry;
pub use wait::{eventually, within};
