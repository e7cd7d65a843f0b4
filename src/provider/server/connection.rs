//! One connection to a task's socket: read the request, acknowledge or
//! refuse it, run the handler under the task's timeout, deliver the response.
//!
//! Invariants: the handler runs only once its ack was written; whatever ends
//! an accepted request (its outcome, its timeout, a panic, a cut) is answered
//! at its hook.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use super::{Limits, TaskContext, TaskFuture};
use crate::provider::wire::{self, Ack, Frames, Request, Response};
use crate::telemetry::Chain;

pub(super) async fn serve_connection(
    stream: UnixStream,
    task: Arc<TaskContext>,
    cut: CancellationToken,
) {
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
    match deliver(&request, &response, &task.limits).await {
        // The caller no longer awaits it (it gave up, or stopped waiting on
        // purpose): its decision, not a fault.
        Err(error @ DeliveryError::Refused(_)) => tracing::debug!(
            task = %task.task,
            id = %request.id,
            error = %Chain(&error),
            "response refused by its caller"
        ),
        Err(error) => tracing::warn!(
            task = %task.task,
            id = %request.id,
            hook = %request.response_hook,
            error = %Chain(&error),
            "response not delivered"
        ),
        Ok(()) => {}
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
    let mut request = match Request::parse(&frame) {
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
    let work = match (task.handler)(std::mem::take(&mut request.args)) {
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
