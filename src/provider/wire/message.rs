//! The three messages: a [`Request`], the [`Ack`] that answers it (and that a
//! response hook returns for a response), and the [`Response`].
//!
//! Invariant: a [`Request`] only exists with a non-empty id and task and a
//! usable response hook; everything that cannot be read as one is a
//! [`Refusal`] saying which field is wrong.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::hook::{HookError, ResponseHook, UrlForm};

/// A request's id: unique among the requests a caller has in flight (see the
/// tracker), echoed in the ack and the response.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh id: a uuid (v7, so ids sort by creation time in logs).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for RequestId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for RequestId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request for a task: `{"id","task","responsehook","args"}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Request {
    /// Echoed in the ack and the response.
    pub id: RequestId,
    /// The task's name, e.g. `instance.start`.
    pub task: String,
    /// Where the response goes.
    #[serde(rename = "responsehook")]
    pub response_hook: ResponseHook,
    /// The task's arguments (`null` when it takes none).
    pub args: Value,
}

impl Request {
    /// A request with a fresh id.
    pub fn new(task: impl Into<String>, response_hook: ResponseHook, args: Value) -> Self {
        Self {
            id: RequestId::generate(),
            task: task.into(),
            response_hook,
            args,
        }
    }

    /// Reads a request frame, checking each field so that a refusal can say
    /// which one is wrong; the refusal carries the id when it could be read,
    /// so the ack can echo it.
    pub fn parse(frame: &[u8]) -> Result<Request, Refusal> {
        let value: Value = serde_json::from_slice(frame).map_err(|source| Refusal {
            id: None,
            reason: InvalidRequest::NotJson { source },
        })?;
        Self::from_value(value)
    }

    fn from_value(value: Value) -> Result<Request, Refusal> {
        let Value::Object(mut fields) = value else {
            return Err(Refusal {
                id: None,
                reason: InvalidRequest::NotAnObject,
            });
        };
        let id = match fields.remove("id") {
            Some(Value::String(id)) if !id.is_empty() => RequestId(id),
            other => {
                return Err(Refusal {
                    id: None,
                    reason: string_problem("id", other),
                });
            }
        };
        let refuse = |reason| Refusal {
            id: Some(id.clone()),
            reason,
        };
        let task = match fields.remove("task") {
            Some(Value::String(task)) if !task.is_empty() => task,
            other => return Err(refuse(string_problem("task", other))),
        };
        let response_hook = match fields.remove("responsehook") {
            None | Some(Value::Null) => {
                return Err(refuse(InvalidRequest::Missing("responsehook")));
            }
            Some(value) => ResponseHook::from_value(value)
                .map_err(|source| refuse(InvalidRequest::ResponseHook { source }))?,
        };
        let args = fields.remove("args").unwrap_or(Value::Null);
        Ok(Request {
            id,
            task,
            response_hook,
            args,
        })
    }
}

fn string_problem(field: &'static str, value: Option<Value>) -> InvalidRequest {
    match value {
        None | Some(Value::Null) => InvalidRequest::Missing(field),
        Some(Value::String(_)) => InvalidRequest::Empty(field),
        Some(_) => InvalidRequest::NotAString(field),
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Request::from_value(value).map_err(|refusal| D::Error::custom(refusal.reason))
    }
}

/// A request refused before its handler ran, and the id to echo in the ack.
/// It displays as its reason (whose causes are its own).
#[derive(Debug)]
pub struct Refusal {
    /// The request's id, when it could be read.
    pub id: Option<RequestId>,
    /// What is wrong with it.
    pub reason: InvalidRequest,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.reason.fmt(f)
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.reason)
    }
}

/// What is wrong with a request frame.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRequest {
    /// The frame is not JSON.
    #[error("request is not JSON")]
    NotJson {
        /// What serde_json refused.
        #[source]
        source: serde_json::Error,
    },
    /// The frame is JSON but not an object.
    #[error("request is not a JSON object")]
    NotAnObject,
    /// A required field is missing (or null).
    #[error("request has no {0:?}")]
    Missing(&'static str),
    /// A string field is empty.
    #[error("request's {0:?} is empty")]
    Empty(&'static str),
    /// A string field is not a string.
    #[error("request's {0:?} is not a string")]
    NotAString(&'static str),
    /// The response hook is unusable.
    #[error("request's \"responsehook\" is unusable")]
    ResponseHook {
        /// Why.
        #[source]
        source: HookError,
    },
}

/// The acknowledgement of a request (or of a response, by a response hook):
/// `{"id","error"}`, `error` `""` when accepted.
///
/// Extra fields are ignored: acomm sends an empty response as its ack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The acknowledged request's id; `None` (`""` on the wire) when a refused
    /// request's id could not be read.
    #[serde(with = "empty_is_none", default)]
    pub id: Option<RequestId>,
    /// Why the request was refused; `None` (`""` on the wire) when accepted.
    #[serde(with = "empty_is_none", default)]
    pub error: Option<String>,
}

impl Ack {
    /// Accepts request `id`.
    pub fn accepted(id: RequestId) -> Self {
        Self {
            id: Some(id),
            error: None,
        }
    }

    /// Refuses a request, saying why.
    pub fn refused(id: Option<RequestId>, reason: impl fmt::Display) -> Self {
        Self {
            id,
            error: Some(reason.to_string()),
        }
    }

    /// Whether the request was accepted.
    pub fn is_accepted(&self) -> bool {
        self.error.is_none()
    }
}

/// The outcome of a task: `{"id","result","stream_url","error"}`, `error`
/// always present, `""` when the task succeeded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: RequestId,
    /// The handler's result (`null` on failure).
    #[serde(default)]
    pub result: Value,
    /// Where the task streams data, when it does (acomm's object form of the
    /// URL is accepted and read as a string).
    #[serde(default, deserialize_with = "stream_url")]
    pub stream_url: Option<String>,
    /// Why the task failed; `None` (`""` on the wire) when it succeeded.
    #[serde(with = "empty_is_none", default)]
    pub error: Option<String>,
}

impl Response {
    /// A successful outcome.
    pub fn success(id: RequestId, result: Value) -> Self {
        Self {
            id,
            result,
            stream_url: None,
            error: None,
        }
    }

    /// A failed outcome.
    pub fn failure(id: RequestId, error: impl fmt::Display) -> Self {
        Self {
            id,
            result: Value::Null,
            stream_url: None,
            error: Some(error.to_string()),
        }
    }

    /// The result, or the error the task ended with.
    pub fn into_result(self) -> Result<Value, String> {
        match self.error {
            None => Ok(self.result),
            Some(error) => Err(error),
        }
    }
}

fn stream_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<UrlForm>::deserialize(deserializer)? {
        None => None,
        Some(UrlForm::Text(text)) if text.is_empty() => None,
        Some(UrlForm::Text(text)) => Some(text),
        Some(UrlForm::Object(url)) => Some(format!(
            "{}://{}{}",
            url.scheme,
            url.host,
            url.path.display()
        )),
    })
}

/// acomm's `""`-means-none strings as `Option`s.
mod empty_is_none {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T, S>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error>
    where
        T: Serialize,
        S: Serializer,
    {
        match value {
            Some(value) => value.serialize(serializer),
            None => serializer.serialize_str(""),
        }
    }

    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        T: From<String>,
        D: Deserializer<'de>,
    {
        let text = Option::<String>::deserialize(deserializer)?;
        Ok(text.filter(|text| !text.is_empty()).map(T::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(value: Value) -> Refusal {
        Request::parse(&serde_json::to_vec(&value).expect("json")).expect_err("refused")
    }

    #[test]
    fn a_request_reads_every_field_and_args_default_to_null() {
        let frame = br#"{"id":"r1","task":"instance.start","responsehook":"unix:///r.sock"}"#;
        let request = Request::parse(frame).expect("valid");
        assert_eq!(request.id, RequestId::from("r1"));
        assert_eq!(request.task, "instance.start");
        assert_eq!(
            request.response_hook.path(),
            std::path::Path::new("/r.sock")
        );
        assert_eq!(request.args, Value::Null);
    }

    #[test]
    fn a_request_round_trips_with_acomms_field_names() {
        let hook = ResponseHook::unix("/r.sock").expect("absolute");
        let request = Request::new("hook.run", hook, json!({"a": 1}));
        let sent = serde_json::to_value(&request).expect("serialize");
        assert_eq!(
            sent,
            json!({
                "id": request.id.as_str(), "task": "hook.run",
                "responsehook": {"Scheme": "unix", "Host": "", "Path": "/r.sock"},
                "args": {"a": 1}
            })
        );
        let back: Request = serde_json::from_value(sent).expect("read back");
        assert_eq!(back, request);
    }

    #[test]
    fn a_refusal_names_the_field_and_echoes_the_id_it_could_read() {
        let hook = json!("unix:///r.sock");
        let cases = [
            (json!([1]), None, "not a JSON object"),
            (
                json!({"task": "t", "responsehook": hook}),
                None,
                "no \"id\"",
            ),
            (
                json!({"id": "", "task": "t", "responsehook": hook}),
                None,
                "\"id\" is empty",
            ),
            (
                json!({"id": 7, "task": "t", "responsehook": hook}),
                None,
                "\"id\" is not a string",
            ),
            (
                json!({"id": "r", "responsehook": hook}),
                Some("r"),
                "no \"task\"",
            ),
            (
                json!({"id": "r", "task": "t"}),
                Some("r"),
                "no \"responsehook\"",
            ),
            (
                json!({"id": "r", "task": "t", "responsehook": "tcp://x"}),
                Some("r"),
                "\"responsehook\" is unusable",
            ),
        ];
        for (value, id, expected) in cases {
            let refused = refusal(value.clone());
            assert_eq!(refused.id.as_ref().map(RequestId::as_str), id, "{value}");
            assert!(
                refused.to_string().contains(expected),
                "{value}: {refused} does not say {expected:?}"
            );
        }
        let not_json = Request::parse(b"{not json").expect_err("not JSON");
        assert!(matches!(not_json.reason, InvalidRequest::NotJson { .. }));
    }

    #[test]
    fn acks_say_empty_strings_for_none() {
        let accepted = serde_json::to_value(Ack::accepted("r".into())).expect("serialize");
        assert_eq!(accepted, json!({"id": "r", "error": ""}));
        let refused = serde_json::to_value(Ack::refused(None, "bad")).expect("serialize");
        assert_eq!(refused, json!({"id": "", "error": "bad"}));
    }

    /// acomm acknowledges with a whole empty response.
    #[test]
    fn acomms_response_shaped_ack_is_an_ack() {
        let ack: Ack = serde_json::from_value(
            json!({"id": "", "result": null, "stream_url": null, "error": ""}),
        )
        .expect("acomm's ack");
        assert!(ack.is_accepted());
        assert_eq!(ack.id, None);
    }

    #[test]
    fn a_response_always_carries_an_error_string() {
        let ok = serde_json::to_value(Response::success("r".into(), json!({"pid": 1})))
            .expect("serialize");
        assert_eq!(
            ok,
            json!({"id": "r", "result": {"pid": 1}, "stream_url": null, "error": ""})
        );
        let failed =
            serde_json::to_value(Response::failure("r".into(), "boom")).expect("serialize");
        assert_eq!(
            failed,
            json!({"id": "r", "result": null, "stream_url": null, "error": "boom"})
        );
    }

    #[test]
    fn a_response_reads_acomms_forms() {
        let response: Response = serde_json::from_value(json!({
            "id": "r", "result": null, "error": "boom",
            "stream_url": {"Scheme": "unix", "Host": "", "Path": "/s.sock"}
        }))
        .expect("acomm's response");
        assert_eq!(response.stream_url.as_deref(), Some("unix:///s.sock"));
        assert_eq!(response.into_result(), Err("boom".to_owned()));
        let bare: Response = serde_json::from_value(json!({"id": "r", "result": 3})).expect("bare");
        assert_eq!(bare.into_result(), Ok(json!(3)));
    }
}
