//! The admin URL a host document carries (`admin_url`), and the URL of an
//! instance's output under it: the one place where the client side
//! (`visor logs`) and the server side (`/logs`) agree on path and
//! parameters.
//!
//! An admin URL is `http://` or `https://`, a host, an optional port and
//! an optional path prefix (an agent behind a reverse proxy); nothing else.

use url::Url;
use visor_controllers::Name;

use crate::provider::exec::output::{OutputStream, ReadOptions};

/// Why an admin URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("admin URL {url:?} {reason}")]
pub struct InvalidAdminUrl {
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks an admin URL.
pub(super) fn parse(text: &str) -> Result<Url, InvalidAdminUrl> {
    let invalid = |reason| InvalidAdminUrl {
        url: text.to_owned(),
        reason,
    };
    let url = Url::parse(text).map_err(|_| invalid("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must start with http:// or https://"));
    }
    if url.host().is_none() {
        return Err(invalid("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not hold credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or a fragment"));
    }
    Ok(url)
}

/// An admin URL as a flag gives it, checked; a trailing `/` dropped.
pub(super) fn parse_flag(text: &str) -> Result<String, InvalidAdminUrl> {
    parse(text)?;
    Ok(text.trim_end_matches('/').to_owned())
}

/// Whether an admin URL is `https`.
pub(super) fn is_https(url: &str) -> bool {
    url.starts_with("https://")
}

/// Where `instance`'s `stream` is read as `options` say, at the agent
/// serving its admin endpoint at `admin_url`.
pub fn logs_url(
    admin_url: &str,
    instance: &Name,
    stream: OutputStream,
    options: ReadOptions,
) -> Result<Url, InvalidAdminUrl> {
    let mut url = parse(admin_url)?;
    url.path_segments_mut()
        .map_err(|()| InvalidAdminUrl {
            url: admin_url.to_owned(),
            reason: "cannot be a base",
        })?
        .pop_if_empty()
        .push("logs")
        .push(instance.as_str());
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("stream", stream.as_str());
        if let Some(tail) = options.tail {
            query.append_pair("tail", &tail.to_string());
        }
        query.append_pair("follow", if options.follow { "true" } else { "false" });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logs_url_extends_the_admin_url() {
        let instance = Name::parse("instance", "i-1").expect("valid");
        let everything = ReadOptions {
            tail: None,
            follow: false,
        };
        let followed = ReadOptions {
            tail: Some(5),
            follow: true,
        };
        let cases = [
            (
                "http://10.0.0.1:9091",
                OutputStream::Stdout,
                everything,
                "http://10.0.0.1:9091/logs/i-1?stream=stdout&follow=false",
            ),
            (
                "https://h1.example:9091/",
                OutputStream::Stderr,
                followed,
                "https://h1.example:9091/logs/i-1?stream=stderr&tail=5&follow=true",
            ),
            (
                "https://proxy.example/agents/h1",
                OutputStream::Stdout,
                everything,
                "https://proxy.example/agents/h1/logs/i-1?stream=stdout&follow=false",
            ),
            (
                "http://[::1]:9091",
                OutputStream::Stdout,
                everything,
                "http://[::1]:9091/logs/i-1?stream=stdout&follow=false",
            ),
        ];
        for (admin, stream, options, want) in cases {
            let url = logs_url(admin, &instance, stream, options).expect(admin);
            assert_eq!(url.as_str(), want);
        }
    }

    #[test]
    fn an_admin_url_is_http_or_https_to_a_host_and_nothing_more() {
        for (bad, reason) in [
            ("10.0.0.1:9091", "is not a URL"),
            ("h1:9091", "must start with http:// or https://"),
            ("ftp://h:21", "must start with http:// or https://"),
            ("h1", "is not a URL"),
            ("http://user:pw@h:9091", "must not hold credentials"),
            ("http://h:9091/?x=1", "must not have a query or a fragment"),
        ] {
            let error = parse(bad).expect_err(bad);
            assert_eq!(error.reason, reason, "{bad}");
            assert!(error.to_string().contains(bad), "{error}");
        }
        assert_eq!(
            parse_flag("https://h1.example:9091/"),
            Ok("https://h1.example:9091".to_owned())
        );
    }
}
