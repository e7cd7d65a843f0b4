//! Response hooks: where a request's response goes, read from either of the
//! two forms peers send (acomm's Go `url.URL` object, or a `unix://` string).
//!
//! Invariant: a [`ResponseHook`] always names an absolute socket path, so a
//! provider holding one can dial it without further checks.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Where a request's response goes: a unix socket that accepts one
/// [`Response`] frame per connection and answers it with an [`Ack`].
///
/// On the wire it is acomm's form, Go's `url.URL` marshalled as an object
/// (`{"Scheme":"unix","Path":"/run/x.sock"}`), which acomm peers require;
/// the string form `"unix:///run/x.sock"` is accepted as well.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseHook {
    /// A unix socket at an absolute path.
    Unix(PathBuf),
}

impl ResponseHook {
    /// A hook at the unix socket `path`, which must be absolute.
    pub fn unix(path: impl Into<PathBuf>) -> Result<Self, HookError> {
        let path = path.into();
        if !path.is_absolute() {
            return Err(HookError::RelativePath { path });
        }
        Ok(Self::Unix(path))
    }

    /// The socket to dial.
    pub fn path(&self) -> &Path {
        match self {
            ResponseHook::Unix(path) => path,
        }
    }

    /// Parses the string form, `unix://` and an absolute path (percent-escapes
    /// decoded, as Go's `url.Parse` does).
    pub fn parse(url: &str) -> Result<Self, HookError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(HookError::NotAUrl { url: url.into() });
        };
        if !scheme.eq_ignore_ascii_case("unix") {
            return Err(HookError::UnsupportedScheme {
                scheme: scheme.into(),
            });
        }
        if rest.contains(['?', '#']) {
            return Err(HookError::QueryOrFragment { url: url.into() });
        }
        if !rest.starts_with('/') {
            return Err(HookError::HostInUnixUrl { url: url.into() });
        }
        let path = percent_decode(rest).ok_or_else(|| HookError::BadEscape { url: url.into() })?;
        Self::unix(path)
    }

    /// Reads acomm's object form (Go's `url.URL` fields; only `Scheme`,
    /// `Opaque`, `Host` and `Path` matter to a unix socket).
    fn from_go_url(url: GoUrl) -> Result<Self, HookError> {
        if !url.scheme.eq_ignore_ascii_case("unix") {
            return Err(HookError::UnsupportedScheme { scheme: url.scheme });
        }
        if !url.opaque.is_empty() || !url.host.is_empty() {
            return Err(HookError::HostInUnixUrl {
                url: format!(
                    "{}://{}{}{}",
                    url.scheme,
                    url.opaque,
                    url.host,
                    url.path.display()
                ),
            });
        }
        Self::unix(url.path)
    }
}

impl fmt::Display for ResponseHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseHook::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// Go's `url.URL` as `encoding/json` marshals it (field names capitalised,
/// every field present); missing fields default, as in Go.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct GoUrl {
    #[serde(rename = "Scheme")]
    pub(super) scheme: String,
    #[serde(rename = "Opaque", skip_serializing)]
    pub(super) opaque: String,
    #[serde(rename = "Host")]
    pub(super) host: String,
    #[serde(rename = "Path")]
    pub(super) path: PathBuf,
}

/// A URL on the wire: acomm's object or a string.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum UrlForm {
    Text(String),
    Object(GoUrl),
}

impl Serialize for ResponseHook {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        GoUrl {
            scheme: "unix".into(),
            path: self.path().to_path_buf(),
            ..GoUrl::default()
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ResponseHook {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        ResponseHook::from_value(value).map_err(D::Error::custom)
    }
}

impl ResponseHook {
    pub(super) fn from_value(value: Value) -> Result<Self, HookError> {
        match serde_json::from_value::<UrlForm>(value) {
            Ok(UrlForm::Text(text)) => Self::parse(&text),
            Ok(UrlForm::Object(url)) => Self::from_go_url(url),
            Err(_) => Err(HookError::NotAUrlValue),
        }
    }
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is
/// not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why a response hook is unusable.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// Neither a string nor acomm's URL object.
    #[error("not a URL (a string or acomm's URL object)")]
    NotAUrlValue,
    /// A string without a scheme.
    #[error("{url:?} is not a URL")]
    NotAUrl {
        /// The string given.
        url: String,
    },
    /// A scheme other than `unix`.
    #[error("scheme {scheme:?} is not supported (only unix://)")]
    UnsupportedScheme {
        /// The scheme given.
        scheme: String,
    },
    /// A unix URL with a host (`unix://host/path`) or an opaque part.
    #[error("{url:?} names a host: a unix URL is unix:// and an absolute path")]
    HostInUnixUrl {
        /// The URL given.
        url: String,
    },
    /// A unix URL with a query or fragment.
    #[error("{url:?} has a query or fragment")]
    QueryOrFragment {
        /// The URL given.
        url: String,
    },
    /// A malformed percent-escape.
    #[error("{url:?} has a malformed percent-escape")]
    BadEscape {
        /// The URL given.
        url: String,
    },
    /// A socket path that is not absolute.
    #[error("socket path {path:?} is not absolute")]
    RelativePath {
        /// The path given.
        path: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hook(value: Value) -> Result<ResponseHook, HookError> {
        ResponseHook::from_value(value)
    }

    #[test]
    fn the_string_form_is_unix_and_an_absolute_path() {
        let parsed = hook(json!("unix:///run/visor/response/a%20b.sock")).expect("valid");
        assert_eq!(parsed.path(), Path::new("/run/visor/response/a b.sock"));
        assert_eq!(parsed.to_string(), "unix:///run/visor/response/a b.sock");
        let upper = hook(json!("UNIX:///x.sock")).expect("schemes are case-insensitive");
        assert_eq!(upper.path(), Path::new("/x.sock"));
    }

    /// What acomm's Go peers send: `url.URL` marshalled by `encoding/json`.
    #[test]
    fn acomms_object_form_is_accepted() {
        let go = json!({
            "Scheme": "unix", "Opaque": "", "User": null, "Host": "",
            "Path": "/tmp/mistify/response/agent.sock", "RawPath": "", "OmitHost": false,
            "ForceQuery": false, "RawQuery": "", "Fragment": "", "RawFragment": ""
        });
        let parsed = hook(go).expect("acomm's form");
        assert_eq!(parsed.path(), Path::new("/tmp/mistify/response/agent.sock"));
        let minimal = hook(json!({"Scheme": "unix", "Path": "/x.sock"})).expect("minimal");
        assert_eq!(minimal.path(), Path::new("/x.sock"));
    }

    #[test]
    fn a_hook_is_sent_in_acomms_object_form() {
        let hook = ResponseHook::unix("/run/x.sock").expect("absolute");
        let sent = serde_json::to_value(&hook).expect("serialize");
        assert_eq!(
            sent,
            json!({"Scheme": "unix", "Host": "", "Path": "/run/x.sock"})
        );
        let back: ResponseHook = serde_json::from_value(sent).expect("read back");
        assert_eq!(back, hook);
    }

    #[test]
    fn unusable_hooks_are_refused_with_the_reason() {
        let cases = [
            (json!(42), "not a URL"),
            (json!("/run/x.sock"), "is not a URL"),
            (
                json!("http://localhost:8080/hook"),
                "scheme \"http\" is not supported",
            ),
            (
                json!({"Scheme": "https", "Host": "example", "Path": "/"}),
                "scheme \"https\"",
            ),
            (json!("unix://host/x.sock"), "names a host"),
            (
                json!({"Scheme": "unix", "Host": "h", "Path": "/x.sock"}),
                "names a host",
            ),
            (json!("unix:///x.sock?q=1"), "query or fragment"),
            (json!("unix:///x%2.sock"), "malformed percent-escape"),
            (
                json!({"Scheme": "unix", "Path": "x.sock"}),
                "is not absolute",
            ),
            (json!({"Scheme": "unix"}), "is not absolute"),
        ];
        for (value, expected) in cases {
            let error = hook(value.clone()).expect_err(&format!("{value} is unusable"));
            assert!(
                error.to_string().contains(expected),
                "{value}: {error} does not say {expected:?}"
            );
        }
    }
}
