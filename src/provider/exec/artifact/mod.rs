//! `artifact.fetch`: a revision's archive, fetched, verified and unpacked
//! once into this host's cache, for instances and hooks to run from.
//!
//! A fetch names the app and revision, the archive's URL (`file://` to a
//! gzip-compressed tar or a directory, `http://`, `https://`) and, when
//! known, its sha256. The result is the unpacked directory,
//! `<data_dir>/artifacts/<app>/<revision>/`, and the archive's digest.
//!
//! Invariants: a revision is unpacked once. A second fetch finds it done and
//! downloads nothing; concurrent fetches of one revision wait for the first
//! (in this process and across processes, see `cache.rs`). A directory in the
//! cache is complete and safe: it appears by one rename after every entry
//! was judged (no path, no link escapes it, see `entry.rs`) and, when a
//! digest was given, after the archive was found to be it. A failed fetch
//! caches nothing.

mod cache;
mod digest;
mod download;
mod entry;
mod error;
mod source;
mod unpack;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use visor_controllers::Name;

use cache::{Locks, Record, RevisionPaths};

pub use digest::{InvalidSha256, Sha256};
pub use entry::Refusal;
pub use error::{ArtifactError, Result};
pub use source::{Source, SourceError};

pub(crate) use entry::relative_path;

/// The default bound on a download: far above an app's archive, far below
/// what would fill a host's disk by mistake.
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 1 << 30;
/// The default bound on what an archive unpacks to (a gzip bomb's defence).
pub const DEFAULT_MAX_UNPACKED_BYTES: u64 = 4 << 30;

/// How the artifact store fetches and where it keeps revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactConfig {
    /// The cache's root: `<data_dir>/artifacts`.
    pub root: PathBuf,
    /// The largest archive downloaded, in bytes.
    pub max_download_bytes: u64,
    /// The most an archive may unpack to (regular files), in bytes.
    pub max_unpacked_bytes: u64,
    /// PEM files of root certificates trusted for `https://` beside the
    /// system's (a private CA serving archives).
    pub extra_root_certs: Vec<PathBuf>,
    /// How long connecting to an archive's server may take.
    pub connect_timeout: Duration,
    /// How long a download may go without receiving a byte.
    pub read_timeout: Duration,
}

impl ArtifactConfig {
    /// The defaults, keeping the cache under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("artifacts"),
            max_download_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            max_unpacked_bytes: DEFAULT_MAX_UNPACKED_BYTES,
            extra_root_certs: Vec::new(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// The arguments of `artifact.fetch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchArgs {
    /// The app the revision belongs to.
    pub app: Name,
    /// The revision.
    pub revision: Name,
    /// Where its archive is.
    pub url: Source,
    /// The archive's expected digest; the fetch fails if it is another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256>,
}

/// The result of `artifact.fetch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fetched {
    /// The unpacked revision.
    pub dir: PathBuf,
    /// The digest of the archive it was unpacked from; none for a
    /// directory source.
    pub sha256: Option<Sha256>,
    /// Whether the revision was already unpacked (nothing was fetched).
    pub cached: bool,
}

/// Fetches revisions into the cache; cheap to clone (clones share the
/// cache's locks and the HTTP client).
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ArtifactConfig,
    client: tokio::sync::OnceCell<reqwest::Client>,
    locks: Locks,
}

impl ArtifactStore {
    /// A store under `config`. Its HTTP client is built at the first
    /// download (a store fetching only `file://` never sets up TLS); an
    /// extra root certificate that cannot be read fails that download.
    pub fn new(config: ArtifactConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                client: tokio::sync::OnceCell::new(),
                locks: Locks::default(),
            }),
        }
    }

    /// The HTTP client, built once, at the first download.
    async fn client(&self) -> Result<&reqwest::Client> {
        let config = &self.inner.config;
        self.inner
            .client
            .get_or_try_init(|| async { download::client(config) })
            .await
    }

    /// The directory of a revision if it is unpacked.
    pub fn revision_dir(&self, app: &Name, revision: &Name) -> Option<PathBuf> {
        let paths = RevisionPaths::new(&self.inner.config.root, app, revision);
        paths.dir.is_dir().then_some(paths.dir)
    }

    /// `artifact.fetch`: the revision's directory, unpacked now or before.
    pub async fn fetch(&self, args: FetchArgs) -> Result<Fetched> {
        let config = &self.inner.config;
        let paths = RevisionPaths::new(&config.root, &args.app, &args.revision);
        // The client first: a download that cannot be made stages nothing.
        let origin = match &args.url {
            Source::Local { path, .. } => Origin::Local(path),
            Source::Remote(url) => Origin::Remote(url, self.client().await?),
        };
        let lock = self.inner.locks.lock(&paths).await?;
        let (lock, staging) = {
            let paths = paths.clone();
            blocking(move || match paths.cached()? {
                Some(record) => Ok((lock, Err(record))),
                None => {
                    let staging = paths.stage(&lock)?;
                    Ok((lock, Ok(staging)))
                }
            })
            .await?
        };
        let staging = match staging {
            Ok(staging) => staging,
            Err(record) => return hit(&paths, record, args.sha256),
        };
        let archive = match origin {
            Origin::Local(path) => path.clone(),
            Origin::Remote(url, client) => {
                let to = staging.archive();
                let max = config.max_download_bytes;
                if let Err(error) = download::download(client, url, &to, max).await {
                    blocking(move || {
                        discard(staging);
                        Ok(())
                    })
                    .await?;
                    return Err(error);
                }
                to
            }
        };
        let max_unpacked = config.max_unpacked_bytes;
        blocking(move || {
            let fetched =
                unpack_into(&args, &archive, &staging.tree(), max_unpacked).and_then(|sha256| {
                    let record = Record {
                        url: args.url.to_string(),
                        sha256: sha256.clone(),
                    };
                    paths.promote(&staging, &record, &lock)?;
                    Ok(Fetched {
                        dir: paths.dir.clone(),
                        sha256,
                        cached: false,
                    })
                });
            discard(staging);
            drop(lock);
            fetched
        })
        .await
    }
}

/// Removes a staging directory once it is done with. Failing to is logged,
/// not returned: the fetch's outcome stands, and the next fetch of the
/// revision removes the leftover.
fn discard(staging: cache::Staging) {
    if let Err(error) = staging.remove() {
        let error = crate::telemetry::Chain(&error);
        tracing::warn!(%error, "leaving a staging directory behind");
    }
}

/// Where a fetch takes its archive from.
enum Origin<'a> {
    Local(&'a PathBuf),
    Remote(&'a url::Url, &'a reqwest::Client),
}

/// The result of a fetch that found the revision unpacked.
fn hit(paths: &RevisionPaths, record: Record, expected: Option<Sha256>) -> Result<Fetched> {
    if let Some(expected) = expected
        && record.sha256.as_ref() != Some(&expected)
    {
        return Err(ArtifactError::CachedDigestMismatch {
            dir: paths.dir.clone(),
            expected,
            cached: record.sha256,
        });
    }
    Ok(Fetched {
        dir: paths.dir.clone(),
        sha256: record.sha256,
        cached: true,
    })
}

/// Unpacks (or copies) the source into `tree`; the archive's digest.
fn unpack_into(
    args: &FetchArgs,
    archive: &Path,
    tree: &Path,
    max_bytes: u64,
) -> Result<Option<Sha256>> {
    let url = args.url.url();
    let meta = std::fs::metadata(archive).map_err(|source| ArtifactError::Open {
        path: archive.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        if args.sha256.is_some() {
            return Err(ArtifactError::DigestOfDirectory {
                url: url.to_string(),
            });
        }
        unpack::copy_dir(url, archive, tree, max_bytes)?;
        return Ok(None);
    }
    unpack::unpack_archive(url, archive, tree, max_bytes, args.sha256.as_ref()).map(Some)
}

/// Runs blocking file work off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ArtifactError::Worker)?
}
