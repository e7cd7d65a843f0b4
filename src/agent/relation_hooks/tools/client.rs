//! The hook tools' end of the tools socket: the hook's context comes from
//! its environment (`VISOR_AGENT_SOCKET`, `VISOR_CONTEXT_ID`), each tool is
//! one request and one reply.
//!
//! Invariant: a tool run outside a hook fails before connecting anywhere,
//! naming the variable that is missing; every exchange is bounded in time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixStream;
use visor_controllers::{ENV_AGENT_SOCKET, ENV_CONTEXT_ID};

use super::protocol::{ToolCall, ToolReply, ToolRequest};
use crate::provider::wire::{self, WireError};

/// How long a tool waits for the agent: `relation-get` reads the registry.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest reply read: a unit's settings.
const MAX_FRAME: usize = 4 * 1024 * 1024;

/// Why a hook tool failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The tool does not run in a hook.
    #[error(
        "not in a relation hook: {variable} is not set (the agent sets it only for the hooks it runs)"
    )]
    NotInHook {
        /// The variable that is missing.
        variable: &'static str,
    },
    /// The agent's socket does not answer.
    #[error("cannot reach the agent at {}", socket.display())]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The request or the reply could not be sent or read.
    #[error("talking to the agent")]
    Exchange(#[source] WireError),
    /// The agent did not answer in time.
    #[error("the agent did not answer within {TIMEOUT:?}")]
    Timeout,
    /// The agent closed the connection without a reply.
    #[error("the agent closed the connection without a reply")]
    Closed,
    /// The agent refused the request.
    #[error("{0}")]
    Refused(String),
    /// The agent answered with something else than the tool asks for.
    #[error("the agent answered {tool} with {reply:?}")]
    Unexpected {
        /// The tool.
        tool: &'static str,
        /// The reply.
        reply: ToolReply,
    },
}

/// The hook tools of one hook's context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookTools {
    socket: PathBuf,
    context: String,
}

impl HookTools {
    /// The tools of the hook whose environment this process runs in.
    pub fn from_env() -> Result<Self, ToolError> {
        let var = |variable: &'static str| {
            std::env::var_os(variable)
                .filter(|value| !value.is_empty())
                .ok_or(ToolError::NotInHook { variable })
        };
        let socket = PathBuf::from(var(ENV_AGENT_SOCKET)?);
        let context = var(ENV_CONTEXT_ID)?.to_string_lossy().into_owned();
        Ok(Self::new(socket, context))
    }

    /// The tools of context `context` at the agent listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>, context: impl Into<String>) -> Self {
        Self {
            socket: socket.into(),
            context: context.into(),
        }
    }

    /// `relation-get`: `unit`'s settings in the hook's relation (by default
    /// the hook's remote unit's).
    pub async fn relation_get(
        &self,
        unit: Option<&str>,
    ) -> Result<BTreeMap<String, String>, ToolError> {
        let call = ToolCall::RelationGet {
            unit: unit.map(str::to_owned),
        };
        match self.call(call).await? {
            ToolReply::Settings { settings } => Ok(settings),
            reply => Err(unexpected("relation-get", reply)),
        }
    }

    /// `relation-set`: sets `settings` of the hook's unit, if the hook succeeds.
    pub async fn relation_set(&self, settings: BTreeMap<String, String>) -> Result<(), ToolError> {
        match self.call(ToolCall::RelationSet { settings }).await? {
            ToolReply::Done => Ok(()),
            reply => Err(unexpected("relation-set", reply)),
        }
    }

    /// `relation-list`: the relation's members as the hook's unit sees them.
    pub async fn relation_list(&self) -> Result<Vec<String>, ToolError> {
        match self.call(ToolCall::RelationList).await? {
            ToolReply::Units { units } => Ok(units),
            reply => Err(unexpected("relation-list", reply)),
        }
    }

    async fn call(&self, call: ToolCall) -> Result<ToolReply, ToolError> {
        let request = ToolRequest {
            context: self.context.clone(),
            call,
        };
        let reply = tokio::time::timeout(TIMEOUT, exchange(&self.socket, &request))
            .await
            .map_err(|_| ToolError::Timeout)??;
        match reply {
            ToolReply::Error { error } => Err(ToolError::Refused(error)),
            reply => Ok(reply),
        }
    }
}

async fn exchange(socket: &Path, request: &ToolRequest) -> Result<ToolReply, ToolError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ToolError::Connect {
            socket: socket.to_owned(),
            source,
        })?;
    let mut frames = wire::framed(stream, MAX_FRAME);
    wire::send(&mut frames, request)
        .await
        .map_err(ToolError::Exchange)?;
    wire::receive(&mut frames)
        .await
        .map_err(ToolError::Exchange)?
        .ok_or(ToolError::Closed)
}

fn unexpected(tool: &'static str, reply: ToolReply) -> ToolError {
    ToolError::Unexpected { tool, reply }
}
