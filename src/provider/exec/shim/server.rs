//! The supervisor's side of the control socket: one request per connection,
//! answered from the supervisor's current status.
//!
//! Invariants: only a request naming this instance and invocation gets a
//! status or moves the workload; `wait` and `stop` answer when the status is
//! `exited` (or, for `wait`, at its timeout), so every answer a caller reads
//! was recorded in the status file first.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::provider::exec::control::{self, Op, Reply, Request};
use crate::provider::exec::status::Status;
use crate::provider::wire;

/// How long a caller may take to send its request.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// What every connection's handler shares.
#[derive(Debug)]
pub struct Shared {
    /// The status, as last recorded.
    pub status: watch::Receiver<Status>,
    /// Stop requests, with their kill timeout when they give one.
    pub stop: mpsc::UnboundedSender<Option<Duration>>,
}

/// Serves `listener` until `token` is cancelled; handlers run on `tracker`.
pub async fn serve(
    listener: UnixListener,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    token: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            () = token.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "control socket accept failed");
                    continue;
                }
            },
        };
        let shared = Arc::clone(&shared);
        tracker.spawn(async move {
            if let Err(error) = handle(stream, &shared).await {
                tracing::debug!(error = %crate::telemetry::Chain(&error), "control connection");
            }
        });
    }
}

async fn handle(stream: UnixStream, shared: &Shared) -> Result<(), wire::WireError> {
    let mut frames = wire::framed(stream, control::MAX_FRAME);
    let request =
        tokio::time::timeout(REQUEST_LIMIT, wire::receive::<_, Request>(&mut frames)).await;
    let request = match request {
        Err(_) | Ok(Ok(None)) => return Ok(()),
        Ok(Err(error)) => {
            let reason = crate::telemetry::Chain(&error).to_string();
            return wire::send(&mut frames, &Reply::Refused { reason }).await;
        }
        Ok(Ok(Some(request))) => request,
    };
    let reply = answer(request, shared).await;
    wire::send(&mut frames, &reply).await
}

async fn answer(request: Request, shared: &Shared) -> Reply {
    let mut status = shared.status.clone();
    let current = status.borrow().clone();
    if request.instance != current.instance {
        let reason = format!("this is the supervisor of instance {}", current.instance);
        return Reply::Refused { reason };
    }
    if request.invocation != current.invocation {
        return Reply::OtherInvocation {
            live: current.is_live(),
            invocation: current.invocation,
        };
    }
    let ended = |status: &Status| !status.is_live();
    match request.op {
        Op::Status => Reply::Status(current),
        Op::Wait { timeout_ms } => {
            let limit = Duration::from_millis(timeout_ms);
            let _ = tokio::time::timeout(limit, status.wait_for(ended)).await;
            let now = status.borrow().clone();
            Reply::Status(now)
        }
        Op::Stop { kill_timeout_ms } => {
            // Unanswered only if the supervisor is ending: it then exits anyway.
            let _ = shared.stop.send(kill_timeout_ms.map(Duration::from_millis));
            let _ = status.wait_for(ended).await;
            let now = status.borrow().clone();
            Reply::Status(now)
        }
    }
}
