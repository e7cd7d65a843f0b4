//! `GET /logs/<instance>?stream=stdout|stderr&tail=N&follow=true|false`:
//! an instance's output as the exec provider's supervisor keeps it, the
//! last N lines (all that is kept without `tail`), then with `follow` what
//! is written next, in one chunked response.
//!
//! Invariants: the instance id is a registry name before it touches the
//! file system (400 otherwise, so no path leaves the instances directory);
//! every parameter is checked, a bad or unknown one refused naming it; and
//! a followed response ends when the server shuts down.

use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;
use visor_controllers::Name;

use crate::provider::exec::output::{InstanceOutput, OutputError, OutputStream, ReadOptions};

/// What the route serves from.
#[derive(Clone)]
struct Logs {
    /// `<exec_data_dir>/instances`.
    root: PathBuf,
    /// Cancelled when the server shuts down: followers end.
    stop: CancellationToken,
}

/// The `/logs/{instance}` route over the instances under `root`; followed
/// responses end when `stop` is cancelled.
pub(super) fn routes(root: PathBuf, stop: CancellationToken) -> Router {
    Router::new()
        .route("/logs/{instance}", get(logs))
        .with_state(Logs { root, stop })
}

/// The parameters of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogsQuery {
    stream: OutputStream,
    options: ReadOptions,
}

/// Why the parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BadParameter {
    #[error("unknown parameter {0:?}: expected stream, tail or follow")]
    Unknown(String),
    #[error("parameter {0} is given more than once")]
    Repeated(&'static str),
    #[error("parameter {name}: expected {expected}, got {value:?}")]
    Value {
        name: &'static str,
        expected: &'static str,
        value: String,
    },
}

impl LogsQuery {
    /// Parses the query string: stdout, everything kept, no follow by default.
    fn parse(query: Option<&str>) -> Result<Self, BadParameter> {
        let mut stream = None;
        let mut tail = None;
        let mut follow = None;
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let bad = |name, expected| BadParameter::Value {
                name,
                expected,
                value: value.clone().into_owned(),
            };
            match &*name {
                "stream" => {
                    let parsed = match &*value {
                        "stdout" => OutputStream::Stdout,
                        "stderr" => OutputStream::Stderr,
                        _ => return Err(bad("stream", "stdout or stderr")),
                    };
                    once(&mut stream, "stream", parsed)?;
                }
                "tail" => {
                    let parsed = value
                        .parse::<u64>()
                        .map_err(|_| bad("tail", "a number of lines (0 or more)"))?;
                    once(&mut tail, "tail", parsed)?;
                }
                "follow" => {
                    let parsed = match &*value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("follow", "true or false")),
                    };
                    once(&mut follow, "follow", parsed)?;
                }
                other => return Err(BadParameter::Unknown(other.to_owned())),
            }
        }
        Ok(Self {
            stream: stream.unwrap_or(OutputStream::Stdout),
            options: ReadOptions {
                tail,
                follow: follow.unwrap_or(false),
            },
        })
    }
}

fn once<T>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), BadParameter> {
    match slot.replace(value) {
        Some(_) => Err(BadParameter::Repeated(name)),
        None => Ok(()),
    }
}

fn refuse(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, format!("{message}\n")).into_response()
}

async fn logs(
    State(logs): State<Logs>,
    Path(instance): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let instance = match Name::parse("instance", &instance) {
        Ok(instance) => instance,
        Err(invalid) => return refuse(StatusCode::BAD_REQUEST, invalid),
    };
    let query = match LogsQuery::parse(query.as_deref()) {
        Ok(query) => query,
        Err(bad) => return refuse(StatusCode::BAD_REQUEST, bad),
    };
    let output = match InstanceOutput::find(&logs.root, &instance) {
        Ok(output) => output,
        Err(error @ OutputError::NoInstance { .. }) => {
            return refuse(StatusCode::NOT_FOUND, error);
        }
        Err(error) => return internal(&instance, &error),
    };
    let reader = match output
        .read(query.stream, query.options, logs.stop.clone())
        .await
    {
        Ok(reader) => reader,
        Err(error) => return internal(&instance, &error),
    };
    let stream = query.stream.as_str();
    let chunks = reader.into_stream().inspect_err(move |error| {
        tracing::warn!(%instance, stream, %error, "reading instance output failed; the response is cut short");
    });
    (
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(chunks),
    )
        .into_response()
}

fn internal(instance: &Name, error: &OutputError) -> Response {
    let error = crate::telemetry::Chain(error);
    tracing::warn!(%instance, %error, "cannot serve instance output");
    refuse(StatusCode::INTERNAL_SERVER_ERROR, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_default_to_everything_of_stdout() {
        let defaults = LogsQuery {
            stream: OutputStream::Stdout,
            options: ReadOptions {
                tail: None,
                follow: false,
            },
        };
        assert_eq!(LogsQuery::parse(None), Ok(defaults));
        assert_eq!(LogsQuery::parse(Some("")), Ok(defaults));
        let given = LogsQuery::parse(Some("stream=stderr&tail=10&follow=true"));
        assert_eq!(
            given,
            Ok(LogsQuery {
                stream: OutputStream::Stderr,
                options: ReadOptions {
                    tail: Some(10),
                    follow: true,
                },
            })
        );
    }

    #[test]
    fn a_bad_parameter_is_refused_naming_it() {
        let cases = [
            (
                "stream=both",
                "parameter stream: expected stdout or stderr, got \"both\"",
            ),
            (
                "tail=-1",
                "parameter tail: expected a number of lines (0 or more), got \"-1\"",
            ),
            ("tail=ten", "got \"ten\""),
            (
                "follow=yes",
                "parameter follow: expected true or false, got \"yes\"",
            ),
            ("tail=1&tail=2", "parameter tail is given more than once"),
            (
                "lines=3",
                "unknown parameter \"lines\": expected stream, tail or follow",
            ),
        ];
        for (query, want) in cases {
            let message = LogsQuery::parse(Some(query)).expect_err(query).to_string();
            assert!(message.contains(want), "{query}: {message}");
        }
    }
}
