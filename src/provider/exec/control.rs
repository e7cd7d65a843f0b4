//! The supervisor's control socket: the messages, in the provider's wire
//! frames, and the caller's side.
//!
//! One request per connection: `{"instance", "invocation", "op"}`, answered
//! by one [`Reply`]. A supervisor answers only a caller presenting the
//! instance id and the invocation id it was started with; a caller
//! presenting another invocation hears which invocation this is, and
//! nothing else.
//!
//! Invariant: a supervisor that is not there, or that goes away before
//! answering, is [`Answer::Gone`] (then the status file tells), never an
//! error; a supervisor that is there and does not answer in time is an
//! error (it may still be running the workload).

use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;

use super::instance_dir::InstanceDir;
use super::status::{Answer, Status};
use crate::provider::wire::{self, WireError};

/// Control messages are a status at most: small frames.
pub const MAX_FRAME: usize = 64 * 1024;

/// A request to an instance's supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The instance id the caller knows.
    pub instance: String,
    /// The invocation id the caller knows.
    pub invocation: String,
    /// What it asks.
    pub op: Op,
}

/// What a caller asks a supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// The status now.
    Status,
    /// The status once the workload exited, or at the end of `timeout_ms`.
    Wait {
        /// How long to wait, in milliseconds.
        timeout_ms: u64,
    },
    /// Stop the workload (SIGTERM, then SIGKILL after the kill timeout:
    /// `kill_timeout_ms`, or the one it was started with) and answer with
    /// its exit.
    Stop {
        /// The time between SIGTERM and SIGKILL, in milliseconds.
        kill_timeout_ms: Option<u64>,
    },
}

/// A supervisor's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// The status of the invocation asked about.
    Status(Status),
    /// The supervisor is another invocation's.
    OtherInvocation {
        /// That invocation.
        invocation: String,
        /// Whether its workload may still run (not yet exited).
        live: bool,
    },
    /// The request was not for this supervisor (another instance) or could
    /// not be read.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Why a supervisor could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The control socket could not be dialled.
    #[error("cannot connect to the supervisor of instance {instance}")]
    Connect {
        /// The instance.
        instance: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The exchange failed.
    #[error("the supervisor of instance {instance} did not answer")]
    Exchange {
        /// The instance.
        instance: String,
        /// The cause.
        #[source]
        source: WireError,
    },
    /// The supervisor did not answer within the time allowed.
    #[error("the supervisor of instance {instance} did not answer within {limit:?}")]
    Timeout {
        /// The instance.
        instance: String,
        /// The time allowed.
        limit: Duration,
    },
    /// The supervisor refused the request.
    #[error("the supervisor of instance {instance} refused: {reason}")]
    Refused {
        /// The instance.
        instance: String,
        /// Its reason.
        reason: String,
    },
}

/// Asks the supervisor in `dir` for `op` on behalf of `instance` and
/// `invocation`, allowing it `limit` to answer.
pub async fn ask(
    dir: &InstanceDir,
    instance: &str,
    invocation: &str,
    op: Op,
    limit: Duration,
) -> Result<Answer, ControlError> {
    let request = Request {
        instance: instance.to_owned(),
        invocation: invocation.to_owned(),
        op,
    };
    let exchange = async {
        let stream = match UnixStream::connect(dir.control_socket()).await {
            Ok(stream) => stream,
            Err(e) if is_gone(&e) => return Ok(None),
            Err(source) => {
                return Err(ControlError::Connect {
                    instance: instance.to_owned(),
                    source,
                });
            }
        };
        let mut frames = wire::framed(stream, MAX_FRAME);
        let result = async {
            wire::send(&mut frames, &request).await?;
            wire::receive::<_, Reply>(&mut frames).await
        };
        match result.await {
            Ok(reply) => Ok(reply),
            // Gone between the dial and the answer: it exited meanwhile.
            Err(WireError::Io { source }) if is_gone(&source) => Ok(None),
            Err(WireError::Truncated { .. }) => Ok(None),
            Err(source) => Err(ControlError::Exchange {
                instance: instance.to_owned(),
                source,
            }),
        }
    };
    let reply =
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| ControlError::Timeout {
                instance: instance.to_owned(),
                limit,
            })??;
    match reply {
        None => Ok(Answer::Gone),
        Some(Reply::Status(status)) => Ok(Answer::Status(status)),
        Some(Reply::OtherInvocation { invocation, live }) => {
            Ok(Answer::OtherInvocation { invocation, live })
        }
        Some(Reply::Refused { reason }) => Err(ControlError::Refused {
            instance: instance.to_owned(),
            reason,
        }),
    }
}

/// Errors that mean nobody serves the socket (any more).
fn is_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented() {
        let text = r#"{"instance":"i-1","invocation":"a","op":{"kind":"wait","timeout_ms":500}}"#;
        let request: Request = serde_json::from_str(text).expect("a request");
        assert_eq!(request.op, Op::Wait { timeout_ms: 500 });
        let text =
            r#"{"instance":"i-1","invocation":"a","op":{"kind":"wait","timeout_ms":1,"x":1}}"#;
        assert!(serde_json::from_str::<Request>(text).is_err());
    }

    #[tokio::test]
    async fn a_missing_or_stale_socket_is_gone() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let dir = InstanceDir::at(root.path());
        let limit = Duration::from_secs(5);
        let answer = ask(&dir, "i", "a", Op::Status, limit).await.expect("asked");
        assert_eq!(answer, Answer::Gone);
        // A socket file nobody listens on any more, as a killed supervisor leaves.
        drop(std::os::unix::net::UnixListener::bind(dir.control_socket()).expect("bound"));
        let answer = ask(&dir, "i", "a", Op::Status, limit).await.expect("asked");
        assert_eq!(answer, Answer::Gone);
    }
}
