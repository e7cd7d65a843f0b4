//! The agent's end of the tools socket: answers each tool's request from
//! the context of the hook it runs in.
//!
//! `relation-get` reads the registry's latest settings (a unit's own
//! settings show what the hook set so far on top); `relation-set` only
//! buffers, so settings reach the registry with the hook's acknowledgement
//! or never; `relation-list` answers from the context. Invariant: every
//! connection gets one reply (or is closed after a bounded wait), and a
//! request outside a running hook's context is refused, never guessed.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use visor_controllers::{HookKind, Name};

use super::contexts::{Contexts, HookContext};
use super::protocol::{ToolCall, ToolReply, ToolRequest};
use crate::provider::OwnedSocket;
use crate::provider::wire;
use crate::registry::{Error, Visor};
use crate::telemetry::Chain;

/// How long a tool may take to send its request or read the reply.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request read: a hook's settings are small.
const MAX_FRAME: usize = 1024 * 1024;

/// Answers tools on `socket` until `stop`, then waits for the connections
/// being answered.
pub async fn serve(socket: OwnedSocket, contexts: Contexts, visor: Visor, stop: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = socket.accept() => match accepted {
                Ok(stream) => {
                    connections.spawn(answer(stream, contexts.clone(), visor.clone()));
                }
                Err(error) => {
                    tracing::warn!(socket = %socket.path().display(), %error, "accepting a hook tool failed");
                    // A failing accept (no file descriptors left) fails at once: don't spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    connections.close();
    connections.wait().await;
}

/// Reads one request and sends its reply.
async fn answer(stream: UnixStream, contexts: Contexts, visor: Visor) {
    let mut frames = wire::framed(stream, MAX_FRAME);
    let request =
        tokio::time::timeout(IO_TIMEOUT, wire::receive::<_, ToolRequest>(&mut frames)).await;
    let reply = match request {
        Err(_) | Ok(Ok(None)) => return,
        Ok(Err(error)) => ToolReply::Error {
            error: format!("unreadable request: {}", Chain(&error)),
        },
        Ok(Ok(Some(request))) => reply(&request, &contexts, &visor).await,
    };
    let sent = tokio::time::timeout(IO_TIMEOUT, wire::send(&mut frames, &reply)).await;
    if let Ok(Err(error)) = sent {
        tracing::debug!(error = %Chain(&error), "a hook tool went away before its reply");
    }
}

async fn reply(request: &ToolRequest, contexts: &Contexts, visor: &Visor) -> ToolReply {
    let tool = request.call.tool();
    let refuse = |reason: String| ToolReply::Error {
        error: format!("{tool}: {reason}"),
    };
    let finished = || {
        refuse(format!(
            "no hook context {:?}: it is unknown, or its hook has finished",
            request.context
        ))
    };
    let Some(context) = contexts.get(&request.context) else {
        return finished();
    };
    match &request.call {
        ToolCall::RelationList => ToolReply::Units {
            units: context.members,
        },
        ToolCall::RelationGet { unit } => {
            let unit = match unit.as_deref().or(context.remote_unit.as_deref()) {
                Some(unit) => unit,
                None => {
                    return refuse("a broken hook has no remote unit: name the unit".to_owned());
                }
            };
            let unit = match Name::parse("unit", unit) {
                Ok(unit) => unit,
                Err(invalid) => return refuse(invalid.to_string()),
            };
            let mut settings = match settings_of(visor, &context, &unit).await {
                Ok(settings) => settings,
                Err(reason) => return refuse(reason),
            };
            if unit == context.unit {
                // Its own settings as the hook left them so far.
                let Some(now) = contexts.get(&request.context) else {
                    return finished();
                };
                settings.extend(now.settings);
            }
            ToolReply::Settings { settings }
        }
        ToolCall::RelationSet { settings } => {
            if context.kind == HookKind::Broken {
                return refuse(format!(
                    "a broken hook sets no settings: after it the unit is out of relation {}",
                    context.relation
                ));
            }
            if settings.keys().any(String::is_empty) {
                return refuse("a setting's name must not be empty".to_owned());
            }
            match visor.relation(context.relation.as_str()).await {
                Ok(_) => {}
                Err(Error::NotFound(_)) => {
                    return refuse(format!(
                        "relation {} was removed: its settings can no longer be set",
                        context.relation
                    ));
                }
                Err(error) => {
                    return refuse(format!("reading relation {}: {error}", context.relation));
                }
            }
            match contexts.set(&request.context, settings.clone()) {
                true => ToolReply::Done,
                false => finished(),
            }
        }
    }
}

/// `unit`'s latest settings in the context's relation; none if it has none.
async fn settings_of(
    visor: &Visor,
    context: &HookContext,
    unit: &Name,
) -> Result<BTreeMap<String, String>, String> {
    match visor
        .settings(context.relation.as_str(), unit.as_str())
        .await
    {
        Ok(settings) => Ok(settings.value.0),
        Err(Error::NotFound(_)) => Ok(BTreeMap::new()),
        Err(error) => Err(format!(
            "reading the settings of {unit} in relation {}: {error}",
            context.relation
        )),
    }
}
