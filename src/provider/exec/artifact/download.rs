//! Downloading an archive over HTTP(S) into a staging file, bounded in size.
//!
//! The limit is checked against the announced length before anything is
//! written, and again as bytes arrive (a server may announce none, or lie),
//! so no more than the limit is ever written.

use std::path::Path;

use tokio::io::AsyncWriteExt as _;
use url::Url;

use super::ArtifactConfig;
use super::error::{ArtifactError, Result};

/// The client downloads go through: the config's timeouts, and its extra
/// roots trusted beside the system's.
pub(crate) fn client(config: &ArtifactConfig) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .user_agent(concat!("visor/", env!("CARGO_PKG_VERSION")));
    for path in &config.extra_root_certs {
        let pem = std::fs::read(path).map_err(|source| ArtifactError::ReadRootCert {
            path: path.clone(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
            ArtifactError::ParseRootCert {
                path: path.clone(),
                source,
            }
        })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(ArtifactError::BuildClient)
}

/// Writes the body of `url` to `to`, refusing more than `limit` bytes.
pub(crate) async fn download(
    client: &reqwest::Client,
    url: &Url,
    to: &Path,
    limit: u64,
) -> Result<()> {
    // reqwest's errors print their URL; ours already say it.
    let mut response =
        client
            .get(url.clone())
            .send()
            .await
            .map_err(|source| ArtifactError::Request {
                url: url.to_string(),
                source: source.without_url(),
            })?;
    let status = response.status();
    if !status.is_success() {
        return Err(ArtifactError::Status {
            url: url.to_string(),
            status,
        });
    }
    let too_large = || ArtifactError::DownloadTooLarge {
        url: url.to_string(),
        limit,
    };
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Err(too_large());
    }
    let write_error = |source| ArtifactError::WriteDownload {
        path: to.to_path_buf(),
        source,
    };
    let mut file = tokio::fs::File::create(to).await.map_err(write_error)?;
    let mut written: u64 = 0;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| ArtifactError::Download {
            url: url.to_string(),
            source: source.without_url(),
        })?
    {
        written = written.saturating_add(chunk.len() as u64);
        if written > limit {
            return Err(too_large());
        }
        file.write_all(&chunk).await.map_err(write_error)?;
    }
    // A tokio file writes in the background: flushing waits for the writes.
    file.flush().await.map_err(write_error)
}
