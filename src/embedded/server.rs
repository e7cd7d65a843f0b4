//! Serving the embedded registry: the node behind etcd's gRPC services on a
//! loopback address, with automatic compaction, until shut down.
//!
//! It listens on loopback only: it has neither TLS nor auth, so an address
//! another machine could reach is refused before anything starts. Requests
//! are held to etcd's limits (a request over 1.5 MiB is refused as etcd
//! refuses it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use etcd_client::proto::{
    PbClusterServer, PbKvServer, PbLeaseServer, PbMaintenanceServer, PbWatchServer,
};

use super::log::LogError;
use super::metrics::RegistryMetrics;
use super::node::{Node, WriteOp};
use super::services::{ClusterService, KvService, LeaseService, MaintenanceService};
use super::watch::WatchService;

/// etcd's default `--max-request-bytes`.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// What gRPC accepts beyond a request's own size, as etcd allows.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// How the embedded registry is served.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where its log lives.
    pub data_dir: PathBuf,
    /// The loopback address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The member's name (`member list`).
    pub name: String,
    /// How many revisions of history automatic compaction keeps.
    pub history: i64,
    /// How often automatic compaction runs.
    pub compaction_interval: Duration,
    /// How often a watch that asked for progress notifications gets one.
    pub progress_interval: Duration,
}

impl ServeOptions {
    /// The defaults for a data dir and a listen address: 10,000 revisions of
    /// history compacted every minute, progress every ten minutes (etcd's).
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            data_dir,
            listen,
            name: "visor".into(),
            history: 10_000,
            compaction_interval: Duration::from_secs(60),
            progress_interval: Duration::from_secs(600),
        }
    }
}

/// Why the embedded registry cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An address beyond loopback without TLS.
    #[error(
        "refusing to serve the embedded registry on {0}: it has no TLS or auth, so it listens on loopback only (127.0.0.1 or ::1); use an etcd cluster to serve other machines"
    )]
    NotLoopback(SocketAddr),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The log cannot be opened.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Serving connections failed.
    #[error("the embedded registry's server failed: {0}")]
    Io(#[source] std::io::Error),
    /// The metrics could not be set up.
    #[error("cannot set up the embedded registry's metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A running embedded registry.
#[derive(Debug)]
pub struct EmbeddedRegistry {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServeError>>,
    /// Cancelled once the node's threads have finished.
    closed: CancellationToken,
}

impl EmbeddedRegistry {
    /// Opens the log, listens, and serves until [`stop`](Self::stop) or
    /// `shutdown`.
    pub async fn start(
        options: ServeOptions,
        shutdown: &CancellationToken,
    ) -> Result<Self, ServeError> {
        if !options.listen.ip().is_loopback() {
            return Err(ServeError::NotLoopback(options.listen));
        }
        let listener =
            TcpListener::bind(options.listen)
                .await
                .map_err(|source| ServeError::Listen {
                    addr: options.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Listen {
            addr: options.listen,
            source,
        })?;
        let shutdown = shutdown.child_token();
        let metrics = RegistryMetrics::new()?;
        let node = Node::start(&options.data_dir, shutdown.clone(), metrics.clone())?;
        tracing::info!(%addr, data_dir = %options.data_dir.display(), revision = node.revision(), "embedded registry serving");
        let limit = MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES;
        let kv = PbKvServer::new(KvService { node: node.clone() }).max_decoding_message_size(limit);
        let watch = PbWatchServer::new(WatchService::new(node.clone(), options.progress_interval))
            .max_decoding_message_size(limit);
        let lease = PbLeaseServer::new(LeaseService { node: node.clone() });
        let maintenance = PbMaintenanceServer::new(MaintenanceService { node: node.clone() });
        let cluster = PbClusterServer::new(ClusterService {
            node: node.clone(),
            name: options.name.clone(),
            client_url: format!("http://{addr}"),
        });
        tokio::spawn(compact_automatically(
            node.clone(),
            options.history,
            options.compaction_interval,
        ));
        // gRPC and etcd's plain-HTTP `/health` and `/metrics` share the
        // client port, as on etcd.
        let router = Routes::new(kv)
            .add_service(watch)
            .add_service(lease)
            .add_service(maintenance)
            .add_service(cluster)
            .into_axum_router()
            .merge(
                axum::Router::new()
                    .route("/health", get(health))
                    .route(
                        "/metrics",
                        get(move || {
                            let registry = metrics.registry.clone();
                            async move { crate::admin::metrics_response(&registry) }
                        }),
                    )
                    .with_state(node.clone()),
            );
        let stopped = node.stopped();
        let closed = node.closed();
        let task = tokio::spawn(async move {
            axum::serve(NoDelay(listener), router)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await
                .map_err(ServeError::Io)
        });
        Ok(Self {
            addr,
            shutdown,
            task,
            closed,
        })
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL clients connect to.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits until the server has stopped.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the server stops (shut down, or its log failed) and its
    /// log is synced and closed.
    pub async fn wait(self) -> Result<(), ServeError> {
        let served = match self.task.await {
            Ok(result) => result,
            // The server task panicked or was cancelled: it is stopped either way.
            Err(error) => {
                tracing::error!(%error, "the embedded registry's server task ended abnormally");
                Ok(())
            }
        };
        self.closed.cancelled().await;
        served
    }
}

/// etcd's `/health`: healthy while the node serves.
async fn health(State(node): State<Node>) -> (axum::http::StatusCode, &'static str) {
    if node.stopped().is_cancelled() {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "{\"health\":\"false\"}",
        )
    } else {
        (axum::http::StatusCode::OK, "{\"health\":\"true\"}")
    }
}

/// A listener whose connections send small responses at once (no Nagle
/// delay on a watch event or a put's answer).
struct NoDelay(TcpListener);

impl axum::serve::Listener for NoDelay {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    // Best effort: a stream without it is only slower.
                    let _ = stream.set_nodelay(true);
                    return (stream, addr);
                }
                // Out of file descriptors or similar: axum's own listener
                // waits a moment and tries again too.
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a registry connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Compacts every `interval`, keeping `history` revisions, as etcd's
/// `--auto-compaction-mode=revision` does.
async fn compact_automatically(node: Node, history: i64, interval: Duration) {
    let stopped = node.stopped();
    let mut ticks = tokio::time::interval(interval);
    ticks.reset();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stopped.cancelled() => return,
        }
        let (revision, compacted) = {
            let inner = node.lock();
            (inner.visible, inner.state.store().compacted())
        };
        let at = revision - history;
        if at > compacted.max(0) {
            match node.write(WriteOp::Compact(at)).await {
                Ok(_) => tracing::debug!(revision = at, "compacted automatically"),
                Err(error) => tracing::warn!(revision = at, %error, "automatic compaction failed"),
            }
        }
    }
}

/// Refuses a request whose encoding is over etcd's limit.
pub fn check_size(request: &impl Message) -> Result<(), tonic::Status> {
    if request.encoded_len() > MAX_REQUEST_BYTES {
        return Err(super::error::RequestError::TooLarge.into());
    }
    Ok(())
}
