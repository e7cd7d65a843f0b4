//! The admin HTTP endpoints of long-running commands: `/metrics` (Prometheus
//! text format), `/healthz` (liveness) and `/readyz` (ready to do its work:
//! for a controller, leading with synced caches).
//!
//! `/healthz` is 200 for as long as the process serves HTTP, from start-up
//! on, whether or not the registry can be reached: the process retries the
//! registry itself, and restarting it (what a failed liveness probe does)
//! would not bring an unreachable registry back. Its body says what the
//! process sees — whether the registry is reachable and whether it leads —
//! for a human or a script; `/metrics` carries the same as gauges to alert on.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What `/healthz` reports besides "ok", as the command keeps it current.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    /// The last attempt to use the registry succeeded.
    pub registry_reachable: bool,
    /// This process leads its election.
    pub leading: bool,
}

impl Health {
    /// The body of `/healthz`: `ok`, then one `name: value` line per fact.
    fn body(self) -> String {
        let registry = match self.registry_reachable {
            true => "reachable",
            false => "unreachable",
        };
        let leader = match self.leading {
            true => "yes",
            false => "no",
        };
        format!("ok\nregistry: {registry}\nleader: {leader}\n")
    }
}

/// What the endpoints report from.
#[derive(Clone)]
struct Admin {
    metrics: prometheus::Registry,
    ready: watch::Receiver<bool>,
    health: watch::Receiver<Health>,
}

/// A bound admin server; `serve` runs it.
pub struct AdminServer {
    listener: TcpListener,
    admin: Admin,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port); readiness follows `ready`,
    /// and the body of `/healthz` follows `health`.
    pub async fn bind(
        addr: SocketAddr,
        metrics: prometheus::Registry,
        ready: watch::Receiver<bool>,
        health: watch::Receiver<Health>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            admin: Admin {
                metrics,
                ready,
                health,
            },
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn serve(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(self.admin);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&admin.metrics.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            body,
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {error}\n"),
        )
            .into_response(),
    }
}

async fn healthz(State(admin): State<Admin>) -> impl IntoResponse {
    let health = *admin.health.borrow();
    (StatusCode::OK, health.body())
}

async fn readyz(State(admin): State<Admin>) -> impl IntoResponse {
    if *admin.ready.borrow() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[cfg(test)]
mod tests {
    use super::Health;

    #[test]
    fn the_health_body_names_each_fact() {
        assert_eq!(
            Health::default().body(),
            "ok\nregistry: unreachable\nleader: no\n"
        );
        let leading = Health {
            registry_reachable: true,
            leading: true,
        };
        assert_eq!(leading.body(), "ok\nregistry: reachable\nleader: yes\n");
    }
}
