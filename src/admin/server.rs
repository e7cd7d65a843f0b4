//! The one admin server: `/metrics`, `/healthz` and `/readyz` for every
//! long-running command, plus the routes a command adds (the agent's
//! `/logs`), served by axum over plain TCP or TLS.
//!
//! Invariant: `serve` returns once its shutdown signal fired and every
//! response in flight has finished; routes that stream (a followed log)
//! end their streams on the same signal, so shutdown is never held up.

use std::future::Future;
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

use super::health::{self, Health, Role};
use super::tls::TlsListener;

/// What the common endpoints report from.
#[derive(Clone)]
pub(super) struct Endpoints {
    pub(super) role: Role,
    pub(super) metrics: prometheus::Registry,
    pub(super) ready: watch::Receiver<bool>,
    pub(super) health: watch::Receiver<Health>,
}

/// Where connections come from.
pub(super) enum Listener {
    Plain(TcpListener),
    Tls(TlsListener),
}

impl Listener {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Self::Plain(listener) => listener.local_addr(),
            Self::Tls(listener) => Ok(listener.local_addr()),
        }
    }
}

/// A bound admin server; `serve` runs it.
pub struct AdminServer {
    listener: Listener,
    router: Router,
}

impl AdminServer {
    /// The controller's: binds `addr` (port 0 picks a free port) in plain
    /// text; readiness follows `ready`, and the body of `/healthz` follows
    /// `health`.
    pub async fn bind(
        addr: SocketAddr,
        metrics: prometheus::Registry,
        ready: watch::Receiver<bool>,
        health: watch::Receiver<Health>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let endpoints = Endpoints {
            role: Role::Controller,
            metrics,
            ready,
            health,
        };
        Ok(Self::new(
            Listener::Plain(listener),
            endpoints,
            Router::new(),
        ))
    }

    /// A server on `listener` with the common endpoints and `routes`.
    pub(super) fn new(listener: Listener, endpoints: Endpoints, routes: Router) -> Self {
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(endpoints)
            .merge(routes);
        Self { listener, router }
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn serve(self, shutdown: CancellationToken) -> std::io::Result<()> {
        self.serve_until(shutdown.cancelled_owned()).await
    }

    /// Serves until `signal` completes, then lets responses in flight finish.
    pub(super) async fn serve_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        match self.listener {
            Listener::Plain(listener) => {
                axum::serve(listener, self.router)
                    .with_graceful_shutdown(signal)
                    .await
            }
            Listener::Tls(listener) => {
                axum::serve(listener, self.router)
                    .with_graceful_shutdown(signal)
                    .await
            }
        }
    }
}

async fn metrics(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    metrics_response(&endpoints.metrics)
}

/// `registry`'s metrics in Prometheus's text format, as `/metrics` answers.
pub fn metrics_response(registry: &prometheus::Registry) -> axum::response::Response {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut body) {
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

async fn healthz(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    let health = *endpoints.health.borrow();
    let ready = *endpoints.ready.borrow();
    (StatusCode::OK, health::body(endpoints.role, health, ready))
}

async fn readyz(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    if *endpoints.ready.borrow() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
