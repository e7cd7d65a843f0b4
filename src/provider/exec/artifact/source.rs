//! Where a revision's archive comes from, decided from its URL alone:
//! `file://` (a gzip-compressed tar, or a directory, on this host) or
//! `http://` / `https://`.
//!
//! A [`Source`] is parsed as the request's arguments are, so an unsupported
//! URL is refused in the acknowledgement and nothing is fetched.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

/// A revision archive's location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Source {
    /// A file or directory on this host (`file:///srv/web-v42.tar.gz`).
    Local {
        /// The URL as given.
        url: Url,
        /// The path it names.
        path: PathBuf,
    },
    /// An archive served over HTTP or HTTPS.
    Remote(Url),
}

/// Why a URL is not a source this provider fetches from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The text is not a URL.
    #[error("archive URL {url:?} is malformed")]
    Malformed {
        /// The text given.
        url: String,
        /// What the parser refused.
        #[source]
        source: url::ParseError,
    },
    /// The URL's scheme is not `file`, `http` or `https`.
    #[error("archive URL {url} has scheme {scheme:?}; file, http and https are fetched")]
    UnsupportedScheme {
        /// The URL.
        url: Url,
        /// Its scheme.
        scheme: String,
    },
    /// A `file://` URL names another host, or no absolute path.
    #[error("archive URL {url} does not name an absolute path on this host")]
    NotLocal {
        /// The URL.
        url: Url,
    },
}

impl Source {
    /// Classifies `text`.
    pub fn parse(text: &str) -> Result<Self, SourceError> {
        let url = Url::parse(text).map_err(|source| SourceError::Malformed {
            url: text.to_owned(),
            source,
        })?;
        match url.scheme() {
            "file" => match url.to_file_path() {
                Ok(path) => Ok(Self::Local { url, path }),
                Err(()) => Err(SourceError::NotLocal { url }),
            },
            "http" | "https" => Ok(Self::Remote(url)),
            scheme => Err(SourceError::UnsupportedScheme {
                scheme: scheme.to_owned(),
                url,
            }),
        }
    }

    /// The URL.
    pub fn url(&self) -> &Url {
        match self {
            Self::Local { url, .. } | Self::Remote(url) => url,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.url().fmt(f)
    }
}

impl TryFrom<String> for Source {
    type Error = SourceError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<Source> for String {
    fn from(source: Source) -> Self {
        match source {
            Source::Local { url, .. } | Source::Remote(url) => url.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::Source;

    /// What a URL is classified as: "local <path>", "remote" or the error.
    fn classify(text: &str) -> String {
        match Source::parse(text) {
            Ok(Source::Local { path, .. }) => format!("local {}", path.display()),
            Ok(Source::Remote(_)) => "remote".to_owned(),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn urls_are_classified_by_scheme() {
        let cases = [
            ("file:///srv/web-v42.tar.gz", "local /srv/web-v42.tar.gz"),
            ("file:///srv/web/v42/", "local /srv/web/v42/"),
            ("file://localhost/srv/a%20b.tar.gz", "local /srv/a b.tar.gz"),
            ("http://127.0.0.1:8080/web.tar.gz", "remote"),
            ("HTTPS://example.com/web.tar.gz?sig=x", "remote"),
            (
                "file://builder/srv/web.tar.gz",
                "archive URL file://builder/srv/web.tar.gz does not name an absolute path on this host",
            ),
            (
                "ftp://example.com/web.tar.gz",
                "archive URL ftp://example.com/web.tar.gz has scheme \"ftp\"; file, http and https are fetched",
            ),
            (
                "s3://bucket/web.tar.gz",
                "archive URL s3://bucket/web.tar.gz has scheme \"s3\"; file, http and https are fetched",
            ),
            (
                "/srv/web.tar.gz",
                "archive URL \"/srv/web.tar.gz\" is malformed",
            ),
            ("", "archive URL \"\" is malformed"),
        ];
        for (text, expected) in cases {
            assert_eq!(classify(text), expected, "{text:?}");
        }
    }

    #[test]
    fn a_source_reads_and_writes_as_its_url() {
        let source: Source =
            serde_json::from_str("\"file:///srv/web.tar.gz\"").expect("a file URL");
        assert!(
            matches!(&source, Source::Local { path, .. } if path == Path::new("/srv/web.tar.gz"))
        );
        assert_eq!(
            serde_json::to_string(&source).expect("serializable"),
            "\"file:///srv/web.tar.gz\""
        );
        let refused = serde_json::from_str::<Source>("\"gopher://x/y\"").expect_err("refused");
        assert!(
            refused.to_string().contains("has scheme \"gopher\""),
            "{refused}"
        );
    }
}
