//! Why fetching a revision failed: a variant per failed operation, naming
//! the URL, path or entry it was about. Whatever the variant, nothing was
//! added to the cache.

use std::io;
use std::path::PathBuf;

use super::digest::Sha256;
use super::entry::Refusal;

/// A `Result` whose error is an [`ArtifactError`].
pub type Result<T, E = ArtifactError> = std::result::Result<T, E>;

/// Why the artifact store could not be set up, or a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// An extra root certificate file could not be read.
    #[error("reading root certificate {}", path.display())]
    ReadRootCert {
        /// The PEM file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An extra root certificate file holds no valid PEM certificate.
    #[error("parsing root certificate {}", path.display())]
    ParseRootCert {
        /// The PEM file.
        path: PathBuf,
        /// What the parser refused.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client could not be built (its TLS set-up failed).
    #[error("building the HTTP client for archive downloads")]
    BuildClient(#[source] reqwest::Error),
    /// Creating a directory of the cache failed.
    #[error("creating directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Opening or taking a revision's lock file failed.
    #[error("locking {}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Removing what a failed or crashed fetch left failed.
    #[error("removing {}", path.display())]
    RemoveLeftover {
        /// The leftover.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The request for an archive failed before a response came.
    #[error("requesting {url}")]
    Request {
        /// The archive's URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("requesting {url}: the server answered {status}")]
    Status {
        /// The archive's URL.
        url: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
    },
    /// Reading the body of the response failed.
    #[error("downloading {url}")]
    Download {
        /// The archive's URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The archive is larger than the download limit.
    #[error("downloading {url}: the archive is larger than the limit of {limit} bytes")]
    DownloadTooLarge {
        /// The archive's URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// Writing the downloaded archive to its staging file failed.
    #[error("writing the download to {}", path.display())]
    WriteDownload {
        /// The staging file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The local archive or directory could not be opened.
    #[error("opening {}", path.display())]
    Open {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The archive is not a readable gzip-compressed tar.
    #[error("reading archive {url}")]
    ReadArchive {
        /// The archive's URL.
        url: String,
        /// What the decoder refused, or the read that failed.
        #[source]
        source: io::Error,
    },
    /// An entry of the archive (or source directory) would leave the
    /// revision's directory, or is of a kind never unpacked.
    #[error("refusing archive {url}: entry {} {reason}", entry.display())]
    UnsafeEntry {
        /// The archive's URL.
        url: String,
        /// The entry, as the archive names it.
        entry: PathBuf,
        /// The rule it breaks.
        reason: Refusal,
    },
    /// The archive unpacks to more than the limit.
    #[error("refusing archive {url}: it unpacks to more than the limit of {limit} bytes")]
    UnpackedTooLarge {
        /// The archive's URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// Writing an entry into the staging directory failed.
    #[error("unpacking entry {} of {url}", entry.display())]
    Unpack {
        /// The archive's URL.
        url: String,
        /// The entry, as the archive names it.
        entry: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The archive's digest is not the one asked for.
    #[error("archive {url} has sha256 {actual}, not the expected {expected}")]
    DigestMismatch {
        /// The archive's URL.
        url: String,
        /// The digest asked for.
        expected: Sha256,
        /// The digest of what was fetched.
        actual: Sha256,
    },
    /// A digest was asked for a directory source, which has none.
    #[error("{url} is a directory: a sha256 can only be checked for an archive")]
    DigestOfDirectory {
        /// The directory's URL.
        url: String,
    },
    /// The revision is already unpacked, from an archive of another digest.
    #[error(
        "revision at {} was unpacked from an archive with sha256 {}, not the expected {expected}",
        dir.display(),
        cached.as_ref().map_or("none (a directory)", Sha256::as_str)
    )]
    CachedDigestMismatch {
        /// The unpacked revision.
        dir: PathBuf,
        /// The digest asked for.
        expected: Sha256,
        /// The digest it was unpacked from, if any.
        cached: Option<Sha256>,
    },
    /// Reading a revision's record failed.
    #[error("reading revision record {}", path.display())]
    ReadRecord {
        /// The record file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A revision's record does not parse.
    #[error("malformed revision record {}", path.display())]
    MalformedRecord {
        /// The record file.
        path: PathBuf,
        /// What the parser refused.
        #[source]
        source: serde_json::Error,
    },
    /// Writing a revision's record failed.
    #[error("writing revision record {}", path.display())]
    WriteRecord {
        /// The record file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Making the unpacked tree durable failed.
    #[error("syncing {}", path.display())]
    Sync {
        /// The directory synced.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Renaming the unpacked tree into place failed.
    #[error("renaming {} to {}", from.display(), to.display())]
    Promote {
        /// The staging tree.
        from: PathBuf,
        /// The revision's directory.
        to: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The blocking work of a fetch (locking, unpacking) did not finish: it
    /// panicked, or the runtime is shutting down.
    #[error("the unpacking worker did not finish")]
    Worker(#[source] tokio::task::JoinError),
}
