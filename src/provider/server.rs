//! The provider side: task handlers served on their sockets.
//!
//! Per connection, one request: read whole (bounded in size and time), then
//! acknowledged at once, before the handler runs. A request that cannot be
//! read, names another task or carries args the handler cannot take is
//! refused in the ack, and nothing else happens. An accepted request's
//! handler runs under its task's timeout and its outcome goes to the
//! request's response hook.
//!
//! Invariants: a handler runs only after its ack was written, and at most
//! once per request; every accepted request is answered at its hook, with the
//! handler's outcome, a timeout, a panic or the provider's stop; stopping
//! removes the sockets first, then waits for handlers in flight, bounded.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod connection;

use super::config::ProviderConfig;
use super::error::ServeError;
use super::layout::{Layout, check_task_name};
use super::listener::OwnedSocket;
use super::wire;
use crate::shutdown::Shutdown;
use crate::telemetry::Chain;

/// How long a connection may take to send its request.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long delivering a response to its hook may take.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long stopping waits for handlers in flight before cutting them short.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The boxed outcome of a handler: its result as JSON, or its error as text.
type TaskFuture = Pin<Box<dyn Future<Output = Result<Value, String>> + Send>>;
/// A handler with its args type erased: reading the args happens before the
/// ack (and can refuse), running the returned future after.
type Handler = Arc<dyn Fn(Value) -> Result<TaskFuture, serde_json::Error> + Send + Sync>;

/// How long the steps of a connection may take, and how large its frames may be.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_frame: usize,
    read_timeout: Duration,
    delivery_timeout: Duration,
    drain_timeout: Duration,
}

/// A provider: its configuration and task handlers, before it serves.
pub struct Provider {
    config: ProviderConfig,
    tasks: BTreeMap<String, Handler>,
    duplicate: Option<String>,
    limits: Limits,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("config", &self.config)
            .field("tasks", &self.tasks.keys().collect::<Vec<_>>())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Provider {
    /// A provider with no tasks yet.
    pub fn new(config: ProviderConfig) -> Self {
        Self {
            config,
            tasks: BTreeMap::new(),
            duplicate: None,
            limits: Limits {
                max_frame: wire::DEFAULT_MAX_FRAME,
                read_timeout: DEFAULT_READ_TIMEOUT,
                delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
                drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            },
        }
    }

    /// Registers `handler` for task `name`. Args are deserialized before the
    /// ack: args that do not parse are refused in the ack, the handler never
    /// runs. The handler's future is dropped at the task's timeout, so it
    /// must leave nothing half-done when cancelled at an await point.
    #[must_use]
    pub fn task<A, R, E, F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let erased: Handler = Arc::new(move |args: Value| {
            let args: A = serde_json::from_value(args)?;
            let run = handler(args);
            Ok(Box::pin(async move {
                match run.await {
                    Ok(result) => serde_json::to_value(result)
                        .map_err(|error| format!("the result cannot be encoded: {error}")),
                    Err(error) => Err(Chain(&*error.into()).to_string()),
                }
            }) as TaskFuture)
        });
        if self.tasks.insert(name.to_owned(), erased).is_some() {
            self.duplicate.get_or_insert_with(|| name.to_owned());
        }
        self
    }

    /// Refuses frames longer than `bytes` (default [`wire::DEFAULT_MAX_FRAME`]).
    #[must_use]
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.limits.max_frame = bytes;
        self
    }

    /// How long a connection may take to send its request (default
    /// [`DEFAULT_READ_TIMEOUT`]); past it, it is refused.
    #[must_use]
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.read_timeout = timeout;
        self
    }

    /// How long delivering a response may take (default [`DEFAULT_DELIVERY_TIMEOUT`]).
    #[must_use]
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.limits.delivery_timeout = timeout;
        self
    }

    /// How long stopping waits for handlers in flight (default
    /// [`DEFAULT_DRAIN_TIMEOUT`]); past it, they are cut short and answered
    /// with an error.
    #[must_use]
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.limits.drain_timeout = timeout;
        self
    }

    /// The configuration it serves with.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// Creates every task's socket (replacing stale ones), ready to serve:
    /// from now on callers find it, and connections queue until
    /// [`Bound::serve`].
    pub async fn bind(self) -> Result<Bound, ServeError> {
        self.config.validate().map_err(ServeError::Config)?;
        if let Some(task) = self.duplicate {
            return Err(ServeError::DuplicateTask { task });
        }
        if self.tasks.is_empty() {
            return Err(ServeError::NoTasks);
        }
        for configured in self.config.tasks.keys() {
            if !self.tasks.contains_key(configured) {
                tracing::warn!(task = %configured, "the configuration sets a task this provider does not serve");
            }
        }
        let layout = Layout::new(&self.config.socket_dir);
        let name: Arc<str> = self.config.service_name.as_str().into();
        let mut served = Vec::new();
        for (task, handler) in self.tasks {
            check_task_name(&task).map_err(|source| ServeError::TaskName {
                task: task.clone(),
                source,
            })?;
            let priority = self.config.task_priority(&task);
            let paths = layout.socket(&task, priority, &name);
            let (socket, stale) =
                OwnedSocket::bind(paths)
                    .await
                    .map_err(|source| ServeError::Socket {
                        task: task.clone(),
                        source,
                    })?;
            if stale {
                tracing::info!(socket = %socket.path().display(), "replaced a stale socket");
            }
            served.push(Served {
                socket,
                task: Arc::new(TaskContext {
                    timeout: self.config.task_timeout(&task),
                    provider: Arc::clone(&name),
                    task,
                    handler,
                    limits: self.limits,
                }),
            });
        }
        Ok(Bound {
            served,
            limits: self.limits,
        })
    }

    /// Binds, then serves until `shutdown` is cancelled.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        self.bind().await?.serve(shutdown).await;
        Ok(())
    }

    /// Installs SIGINT and SIGTERM handlers, binds, then serves until one
    /// of them arrives (see [`Bound::serve_until`]).
    pub async fn serve_until_signal(self) -> Result<(), ServeError> {
        let signals = Shutdown::install().map_err(ServeError::Signals)?;
        self.bind().await?.serve_until(signals).await;
        Ok(())
    }
}

/// A task's handler and what its connections need to know.
struct TaskContext {
    task: String,
    provider: Arc<str>,
    handler: Handler,
    timeout: Duration,
    limits: Limits,
}

struct Served {
    socket: OwnedSocket,
    task: Arc<TaskContext>,
}

/// A provider whose sockets exist: callers find it from now on.
pub struct Bound {
    served: Vec<Served>,
    limits: Limits,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("sockets", &self.sockets())
            .finish()
    }
}

impl Bound {
    /// Its sockets, one per task.
    pub fn sockets(&self) -> Vec<&Path> {
        self.served.iter().map(|s| s.socket.path()).collect()
    }

    /// Serves until `signals` reports SIGINT or SIGTERM, then stops as
    /// [`serve`](Self::serve) does. Install the handlers before binding, so
    /// that a signal during start-up is not lost.
    pub async fn serve_until(self, mut signals: Shutdown) {
        let shutdown = CancellationToken::new();
        let serving = self.serve(shutdown.clone());
        tokio::pin!(serving);
        tokio::select! {
            () = &mut serving => return,
            () = signals.requested() => {}
        }
        tracing::info!("stopping: signal received");
        shutdown.cancel();
        serving.await;
    }

    /// Serves until `shutdown` is cancelled; then removes the sockets, waits
    /// for handlers in flight up to the drain timeout, and answers those
    /// still running with an error.
    pub async fn serve(self, shutdown: CancellationToken) {
        let connections = TaskTracker::new();
        // Cancelled when the drain timeout expires: what still runs stops.
        let cut = CancellationToken::new();
        let accepting = TaskTracker::new();
        for Served { socket, task } in self.served {
            accepting.spawn(accept_loop(
                socket,
                task,
                shutdown.clone(),
                connections.clone(),
                cut.clone(),
            ));
        }
        accepting.close();
        // Each loop returns (dropping its socket) once `shutdown` fires.
        accepting.wait().await;
        connections.close();
        let drain = self.limits.drain_timeout;
        if tokio::time::timeout(drain, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = connections.len(),
                "handlers still running after {}: cutting them short",
                humantime::format_duration(drain)
            );
            cut.cancel();
            // Each now sends its error response, each delivery bounded.
            let _ = tokio::time::timeout(self.limits.delivery_timeout, connections.wait()).await;
        }
    }
}

async fn accept_loop(
    socket: OwnedSocket,
    task: Arc<TaskContext>,
    shutdown: CancellationToken,
    connections: TaskTracker,
    cut: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = socket.accept() => accepted,
        };
        match accepted {
            Ok(stream) => {
                connections.spawn(connection::serve_connection(
                    stream,
                    Arc::clone(&task),
                    cut.clone(),
                ));
            }
            Err(error) => {
                // Out of descriptors, typically: give in-flight work a moment to free some.
                tracing::warn!(socket = %socket.path().display(), %error, "accept failed");
                if !crate::registry::backoff::sleep(Duration::from_millis(50), &shutdown).await {
                    break;
                }
            }
        }
    }
    tracing::debug!(socket = %socket.path().display(), "stopped accepting");
}
