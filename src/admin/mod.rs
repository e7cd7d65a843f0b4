//! The admin HTTP endpoints of long-running commands: `/metrics` (Prometheus
//! text format), `/healthz` (the process serves) and `/readyz` (it is ready to
//! do its work: caches synced, and for a controller, whatever it reports).

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

/// What the endpoints report from.
#[derive(Clone)]
struct Admin {
    metrics: prometheus::Registry,
    ready: watch::Receiver<bool>,
}

/// A bound admin server; `serve` runs it.
pub struct AdminServer {
    listener: TcpListener,
    admin: Admin,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port); readiness follows `ready`.
    pub async fn bind(
        addr: SocketAddr,
        metrics: prometheus::Registry,
        ready: watch::Receiver<bool>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            admin: Admin { metrics, ready },
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
            .route("/healthz", get(|| async { "ok\n" }))
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

async fn readyz(State(admin): State<Admin>) -> impl IntoResponse {
    if *admin.ready.borrow() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
