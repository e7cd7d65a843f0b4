//! The caller side, what the agent uses: route a task to its providers by
//! priority, falling back until one acknowledges, then await the response on
//! the caller's own hook.
//!
//! Fallback rule: the next provider is tried when one is stale (its lock
//! says its owner is dead: not dialled), cannot be connected to, closes
//! without acknowledging, does not acknowledge within the ack timeout, or
//! refuses (a refusal guarantees its handler did not run). Never after an
//! accepted ack: a task may not be idempotent, so one that was accepted is
//! awaited, to its response or its timeout, and never sent elsewhere.
//!
//! Invariants: each attempt carries a fresh request id, tracked before it is
//! sent, so a response is matched only to the attempt that was acknowledged;
//! a call ends with a response or a timeout response, never waits unbounded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::UnixStream;
use tokio_util::task::AbortOnDropHandle;

use super::config::{DEFAULT_REQUEST_TIMEOUT, ProviderConfig};
use super::error::{Attempt, AttemptFailure, CallError, CallerError};
use super::layout::{Candidate, Layout, SocketPaths, check_provider_name, check_task_name};
use super::listener::OwnedSocket;
use super::lock::{Acquire, Liveness, OwnerLock};
use super::tracker::{Ending, Tracker};
use super::wire::{self, Ack, Request, Response, ResponseHook};
use crate::telemetry::Chain;

/// How long a provider may take to accept a connection and acknowledge.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// What a caller needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerConfig {
    /// Where providers' sockets are (and the caller's response hook goes).
    pub socket_dir: PathBuf,
    /// The caller's name, in its response socket's name.
    pub name: String,
    /// How long an acknowledged request waits for its response.
    pub request_timeout: Duration,
    /// How long a provider may take to acknowledge.
    pub ack_timeout: Duration,
    /// The largest frame read or sent.
    pub max_frame: usize,
}

impl CallerConfig {
    /// Defaults for a caller named `name` of the providers in `socket_dir`.
    pub fn new(socket_dir: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        Self {
            socket_dir: socket_dir.into(),
            name: name.into(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            max_frame: wire::DEFAULT_MAX_FRAME,
        }
    }

    /// A provider's, for the requests it makes itself.
    pub fn of_provider(config: &ProviderConfig) -> Self {
        Self {
            request_timeout: config.request_timeout,
            ..Self::new(&config.socket_dir, &config.service_name)
        }
    }
}

/// The response to a call, and who answered it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The provider that acknowledged the request.
    pub provider: Candidate,
    /// Its response, or the caller's timeout response.
    pub response: Response,
    /// Whether the response arrived or the request timed out.
    pub ending: Ending,
}

/// A caller: its response hook, listening, and the requests awaiting it.
/// Cheap to clone; the hook stops listening when the last clone and call end.
#[derive(Debug, Clone)]
pub struct Caller {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: CallerConfig,
    layout: Layout,
    hook: ResponseHook,
    tracker: Arc<Tracker>,
    // Declared last: dropped after the fields above, it aborts the loop and
    // then the socket (owned by the loop) is removed.
    _listening: AbortOnDropHandle<()>,
}

impl Caller {
    /// Creates the response hook `<socket_dir>/response/<name>-<uuid>.sock`
    /// and listens on it.
    pub async fn bind(config: CallerConfig) -> Result<Self, CallerError> {
        check_provider_name(&config.name).map_err(CallerError::Name)?;
        let layout = Layout::new(&config.socket_dir);
        let hook_name = format!("{}-{}", config.name, uuid::Uuid::now_v7().simple());
        let dir = layout.response_dir();
        let dir = std::path::absolute(&dir)
            .map_err(|source| CallerError::SocketDir { path: dir, source })?;
        let paths = SocketPaths {
            socket: dir.join(format!("{hook_name}.sock")),
            lock: dir.join(format!("{hook_name}.lock")),
        };
        let (socket, _) = OwnedSocket::bind(paths)
            .await
            .map_err(CallerError::Socket)?;
        let hook = ResponseHook::unix(socket.path())
            .expect("invariant: the response socket's path was made absolute");
        sweep_stale_hooks(&dir);
        let tracker = Tracker::new();
        let listening = AbortOnDropHandle::new(tokio::spawn(listen(
            socket,
            Arc::clone(&tracker),
            config.ack_timeout,
            config.max_frame,
        )));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                layout,
                hook,
                tracker,
                _listening: listening,
            }),
        })
    }

    /// Where its responses go.
    pub fn response_hook(&self) -> &ResponseHook {
        &self.inner.hook
    }

    /// The socket layout it routes in.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// How many acknowledged requests await their response.
    pub fn in_flight(&self) -> usize {
        self.inner.tracker.len()
    }

    /// `task`'s providers in routing order.
    pub fn candidates(&self, task: &str) -> Result<Vec<Candidate>, CallError> {
        check_task_name(task).map_err(CallError::TaskName)?;
        self.inner
            .layout
            .candidates(task)
            .map_err(|source| CallError::List {
                task: task.to_owned(),
                dir: self.inner.layout.task_dir(task),
                source,
            })
    }

    /// Sends `task` with `args` to the best provider that acknowledges it and
    /// awaits the response for up to the configured request timeout.
    pub async fn call(&self, task: &str, args: Value) -> Result<Reply, CallError> {
        self.call_with_timeout(task, args, self.inner.config.request_timeout)
            .await
    }

    /// The same, awaiting the response for up to `timeout`.
    pub async fn call_with_timeout(
        &self,
        task: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Reply, CallError> {
        let candidates = self.candidates(task)?;
        if candidates.is_empty() {
            return Err(CallError::NoProvider {
                task: task.to_owned(),
                dir: self.inner.layout.task_dir(task),
            });
        }
        let mut attempts = Vec::new();
        for candidate in candidates {
            if candidate.liveness == Liveness::Stale {
                attempts.push(Attempt {
                    candidate,
                    failure: AttemptFailure::Stale,
                });
                continue;
            }
            let request = Request::new(task, self.inner.hook.clone(), args.clone());
            // Tracked before it is sent: the response may come before the ack is read.
            let pending = self
                .inner
                .tracker
                .track(request.id.clone())
                .map_err(CallError::Track)?;
            match self.offer(&candidate, &request).await {
                Ok(()) => {
                    let (response, ending) = pending.wait(timeout).await;
                    return Ok(Reply {
                        provider: candidate,
                        response,
                        ending,
                    });
                }
                Err(failure) => {
                    tracing::debug!(task, provider = %candidate, error = %Chain(&failure), "falling back");
                    attempts.push(Attempt { candidate, failure });
                }
            }
        }
        Err(CallError::NotAcknowledged {
            task: task.to_owned(),
            attempts,
        })
    }

    /// Sends `request` to `candidate` and reads its ack.
    async fn offer(&self, candidate: &Candidate, request: &Request) -> Result<(), AttemptFailure> {
        let limit = self.inner.config.ack_timeout;
        let stream = tokio::time::timeout(limit, UnixStream::connect(&candidate.socket))
            .await
            .map_err(|_| AttemptFailure::ConnectTimeout(limit))?
            .map_err(AttemptFailure::Connect)?;
        let mut frames = wire::framed(stream, self.inner.config.max_frame);
        let exchange = async {
            wire::send(&mut frames, request)
                .await
                .map_err(AttemptFailure::Send)?;
            wire::receive::<_, Ack>(&mut frames)
                .await
                .map_err(AttemptFailure::BadAck)
        };
        let ack = tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| AttemptFailure::AckTimeout(limit))??
            .ok_or(AttemptFailure::Closed)?;
        if let Some(reason) = ack.error {
            return Err(AttemptFailure::Refused(reason));
        }
        match ack.id {
            Some(id) if id == request.id => Ok(()),
            other => Err(AttemptFailure::WrongId {
                sent: request.id.to_string(),
                got: other.map(|id| id.to_string()).unwrap_or_default(),
            }),
        }
    }
}

/// Accepts responses until aborted, each connection on its own task.
async fn listen(
    socket: OwnedSocket,
    tracker: Arc<Tracker>,
    read_timeout: Duration,
    max_frame: usize,
) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        match socket.accept().await {
            Ok(stream) => {
                connections.spawn(receive_response(
                    stream,
                    Arc::clone(&tracker),
                    read_timeout,
                    max_frame,
                ));
            }
            Err(error) => {
                tracing::warn!(socket = %socket.path().display(), %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads one response, hands it to its request, and acknowledges it (or
/// refuses it: unreadable, or awaited by nobody).
async fn receive_response(
    stream: UnixStream,
    tracker: Arc<Tracker>,
    read_timeout: Duration,
    max_frame: usize,
) {
    let mut frames = wire::framed(stream, max_frame);
    let ack = match tokio::time::timeout(read_timeout, wire::receive::<_, Response>(&mut frames))
        .await
    {
        Err(_) => return,
        Ok(Ok(None)) => return,
        Ok(Err(error)) => Ack::refused(None, Chain(&error)),
        Ok(Ok(Some(response))) => {
            let id = response.id.clone();
            if tracker.deliver(response) {
                Ack::accepted(id)
            } else {
                // A call that timed out or was dropped by its caller.
                tracing::debug!(%id, "response to a request nobody awaits (timed out, or unknown)");
                Ack::refused(Some(id.clone()), format!("no request {id} is awaited"))
            }
        }
    };
    let _ = tokio::time::timeout(read_timeout, wire::send(&mut frames, &ack)).await;
}

/// Removes the response hooks of callers that died (their locks unheld),
/// each under its lock, as a provider replaces its stale socket: a caller
/// binding meanwhile either holds the lock first (and is skipped) or retries
/// on a fresh lock file.
fn sweep_stale_hooks(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let lock = entry.path();
        if lock.extension().is_none_or(|ext| ext != "lock") {
            continue;
        }
        if let Ok(Acquire::Taken(owner)) = OwnerLock::try_acquire(&lock) {
            tracing::debug!(hook = %lock.with_extension("sock").display(), "removing a dead caller's response hook");
            let _ = std::fs::remove_file(lock.with_extension("sock"));
            let _ = owner.release();
        }
    }
}
