//! The admin HTTP endpoints of long-running commands, one server for all
//! of them: `/metrics` (Prometheus text format), `/healthz` (liveness, its
//! body saying what the process sees) and `/readyz` (ready to do its work:
//! for a controller, leading with synced caches; for an agent, its host
//! registered); and the agent's `/logs/<instance>` (instance output), with
//! TLS when given a certificate.
//!
//! Invariant: every command's endpoints are served by [`AdminServer`]; the
//! agent's ([`AgentAdmin`]) only adds its routes and its listener.

mod agent;
mod health;
mod logs;
mod server;
mod tls;
mod url;

pub use agent::{AgentAdmin, AgentAdminConfig, AgentAdminError};
pub use health::Health;
pub use server::{AdminServer, metrics_response};
pub use tls::{AdminTls, TlsError};
pub use url::{InvalidAdminUrl, logs_url};
