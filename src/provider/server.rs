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
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::ProviderConfig;
use super::error::ServeError;
use super::layout::{Layout, check_task_name};
use super::listener::OwnedSocket;
use super::wire::{self, Ack, Frames, Request, Response};
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

    /// Binds, then serves until SIGINT or SIGTERM.
    pub async fn serve_until_signal(self) -> Result<(), ServeError> {
        let mut signals = crate::shutdown::Shutdown::install().map_err(ServeError::Signals)?;
        let bound = self.bind().await?;
        let shutdown = CancellationToken::new();
        let serving = bound.serve(shutdown.clone());
        tokio::pin!(serving);
        tokio::select! {
            () = &mut serving => return Ok(()),
            () = signals.requested() => {}
        }
        tracing::info!("stopping: signal received");
        shutdown.cancel();
        serving.await;
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
                connections.spawn(serve_connection(stream, Arc::clone(&task), cut.clone()));
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

async fn serve_connection(stream: UnixStream, task: Arc<TaskContext>, cut: CancellationToken) {
    let mut frames = wire::framed(stream, task.limits.max_frame);
    let accepted = tokio::select! {
        () = cut.cancelled() => return,
        accepted = accept_request(&mut frames, &task) => accepted,
    };
    let Some((request, work)) = accepted else {
        return;
    };
    // The request connection's part is over: the response goes to the hook.
    drop(frames);
    let id = request.id.clone();
    tracing::debug!(task = %task.task, %id, "request accepted");
    let response = tokio::select! {
        () = cut.cancelled() => Response::failure(
            id,
            format!("provider {} stopped before task {} finished", task.provider, task.task),
        ),
        outcome = tokio::time::timeout(task.timeout, AssertUnwindSafe(work).catch_unwind()) => {
            match outcome {
                Ok(Ok(Ok(result))) => Response::success(id, result),
                Ok(Ok(Err(error))) => Response::failure(id, error),
                Ok(Err(_panic)) => Response::failure(id, format!("task {} panicked", task.task)),
                Err(_) => Response::failure(
                    id,
                    format!(
                        "task {} timed out after {}",
                        task.task,
                        humantime::format_duration(task.timeout)
                    ),
                ),
            }
        }
    };
    if let Err(error) = deliver(&request, &response, &task.limits).await {
        tracing::warn!(
            task = %task.task,
            id = %request.id,
            hook = %request.response_hook,
            error = %Chain(&error),
            "response not delivered"
        );
    }
}

/// Reads the request and acknowledges it; `None` when it was refused (the
/// refusal sent) or the connection ended without one.
async fn accept_request(
    frames: &mut Frames<UnixStream>,
    task: &TaskContext,
) -> Option<(Request, TaskFuture)> {
    let limits = &task.limits;
    let frame = match tokio::time::timeout(limits.read_timeout, wire::receive_frame(frames)).await {
        Err(_) => {
            let reason = format!(
                "no request within {}",
                humantime::format_duration(limits.read_timeout)
            );
            refuse(frames, task, Ack::refused(None, reason)).await;
            return None;
        }
        Ok(Ok(None)) => return None,
        Ok(Ok(Some(frame))) => frame,
        Ok(Err(error)) => {
            refuse(frames, task, Ack::refused(None, Chain(&error))).await;
            return None;
        }
    };
    let request = match Request::parse(&frame) {
        Ok(request) => request,
        Err(refusal) => {
            refuse(
                frames,
                task,
                Ack::refused(refusal.id.clone(), Chain(&refusal)),
            )
            .await;
            return None;
        }
    };
    let id = Some(request.id.clone());
    if request.task != task.task {
        let reason = format!(
            "unknown task {:?}: this socket serves {:?}",
            request.task, task.task
        );
        refuse(frames, task, Ack::refused(id, reason)).await;
        return None;
    }
    let work = match (task.handler)(request.args.clone()) {
        Ok(work) => work,
        Err(error) => {
            let reason = format!("invalid args for task {}: {error}", task.task);
            refuse(frames, task, Ack::refused(id, reason)).await;
            return None;
        }
    };
    let acked = tokio::time::timeout(
        limits.read_timeout,
        wire::send(frames, &Ack::accepted(request.id.clone())),
    )
    .await;
    match acked {
        Ok(Ok(())) => Some((request, work)),
        // Not acknowledged, so not run: the caller may try another provider.
        Ok(Err(error)) => {
            tracing::debug!(task = %task.task, error = %Chain(&error), "ack not sent");
            None
        }
        Err(_) => {
            tracing::debug!(task = %task.task, "ack not sent in time");
            None
        }
    }
}

async fn refuse(frames: &mut Frames<UnixStream>, task: &TaskContext, ack: Ack) {
    tracing::warn!(task = %task.task, id = ?ack.id, reason = ?ack.error, "request refused");
    // The peer may be gone already (a truncated frame): nothing more to do then.
    let _ = tokio::time::timeout(task.limits.read_timeout, wire::send(frames, &ack)).await;
}

/// Sends `response` to the request's hook and reads the hook's ack.
async fn deliver(
    request: &Request,
    response: &Response,
    limits: &Limits,
) -> Result<(), DeliveryError> {
    let delivery = async {
        let stream = UnixStream::connect(request.response_hook.path())
            .await
            .map_err(DeliveryError::Connect)?;
        let mut frames = wire::framed(stream, limits.max_frame);
        wire::send(&mut frames, response)
            .await
            .map_err(DeliveryError::Send)?;
        match wire::receive::<_, Ack>(&mut frames).await {
            Ok(Some(Ack {
                error: Some(reason),
                ..
            })) => Err(DeliveryError::Refused(reason)),
            // A hook that closes without acknowledging has the response.
            Ok(_) => Ok(()),
            Err(error) => Err(DeliveryError::Ack(error)),
        }
    };
    tokio::time::timeout(limits.delivery_timeout, delivery)
        .await
        .map_err(|_| DeliveryError::Timeout(limits.delivery_timeout))?
}

/// Why a response did not reach its hook (logged: the provider has nobody
/// else to tell).
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("cannot connect to the response hook")]
    Connect(#[source] std::io::Error),
    #[error("cannot send the response")]
    Send(#[source] wire::WireError),
    #[error("the hook's acknowledgement is unreadable")]
    Ack(#[source] wire::WireError),
    #[error("the hook refused the response: {0}")]
    Refused(String),
    #[error("not delivered within {0:?}")]
    Timeout(Duration),
}
