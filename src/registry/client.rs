//! The connection to etcd: every request goes through [`Registry::call`],
//! which bounds it by the request timeout and turns etcd's errors into typed
//! [`Error`]s that name the endpoints involved.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, Identity, KvClient, TlsOptions, WatchClient,
};
use futures::future::join_all;

use super::config::RegistryConfig;
use super::error::{Error, Result};
use super::fence::Fence;
use super::keys::Keys;

/// The largest response decoded, in bytes. etcd's server sends messages of up
/// to `math.MaxInt32` bytes and its Go client accepts as much
/// (`MaxCallRecvMsgSize`); gRPC's default of 4 MiB refused a listing page of
/// five 1 MiB values, each within etcd's request limit. Listings bound their
/// pages by size as well (`store::list_objects`), so this is a ceiling, not a
/// working size.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// HTTP/2 pings on an idle connection, so that a dead peer (a partitioned or
/// frozen etcd member) is noticed without waiting for a request to time out...
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// ...and how long a ping may go unanswered before the connection is dropped.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connected registry: an etcd client plus the key layout under its root.
///
/// Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct Registry {
    client: Client,
    keys: Keys,
    endpoints: Arc<str>,
    request_timeout: Duration,
    /// Set on a leader's handle: every write is conditional on it.
    fence: Option<Arc<Fence>>,
    /// Writes that failed without saying whether they committed, on every
    /// handle of this connection (see [`Registry::unknown_outcomes`]).
    unknown_outcomes: Arc<AtomicU64>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("endpoints", &self.endpoints)
            .field("root", &self.keys.root())
            .finish()
    }
}

impl Registry {
    /// Connects and checks that at least one endpoint answers.
    ///
    /// When none does, the error lists every endpoint with its own failure.
    pub async fn connect(config: &RegistryConfig) -> Result<Self> {
        config.validate()?;
        let keys = Keys::new(&config.root)?;
        let endpoints: Vec<String> = config
            .endpoints
            .iter()
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(Error::Config("no registry endpoints given".into()));
        }
        let options = connect_options(config)?;
        let joined: Arc<str> = endpoints.join(",").into();
        // An unreachable registry is diagnosed endpoint by endpoint; other
        // failures (credentials, say) are reported as they are.
        let failed = |error: Option<etcd_client::Error>| async {
            match error.map(|error| map_error("connect", &joined, error)) {
                Some(error) if !matches!(error, Error::Unavailable { .. }) => error,
                _ => probe_each(&endpoints, &options, config.connect_timeout, "connect").await,
            }
        };
        let connect = async {
            let mut client = Client::connect(&endpoints, Some(options.clone())).await?;
            client.status().await?;
            Ok(client)
        };
        let client = match tokio::time::timeout(config.connect_timeout, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => return Err(failed(Some(error)).await),
            Err(_) => return Err(failed(None).await),
        };
        Ok(Self {
            client,
            keys,
            endpoints: joined.clone(),
            request_timeout: config.request_timeout.max(Duration::from_millis(1)),
            fence: None,
            unknown_outcomes: Arc::default(),
        })
    }

    /// A handle whose every write also requires `fence` to hold: a leader's writes.
    #[must_use]
    pub fn fenced(&self, fence: Fence) -> Self {
        Self {
            fence: Some(Arc::new(fence)),
            ..self.clone()
        }
    }

    /// The fence this handle's writes carry, if any.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_deref()
    }

    /// The key layout under this registry's root.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The underlying etcd client, for callers that need raw etcd (benchmarks, tests).
    pub fn etcd(&self) -> Client {
        self.client.clone()
    }

    /// A KV client that decodes any response etcd can send. Every key-value
    /// read and write of Visor goes through one of these.
    pub(crate) fn kv_client(&self) -> KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// A watch client that decodes any response etcd can send (one revision's
    /// events, with their previous values, can be several MiB).
    pub(crate) fn watch_client(&self) -> WatchClient {
        self.client
            .watch_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// Runs one request, bounded by the request timeout, with typed errors.
    pub(crate) async fn call<T>(
        &self,
        op: &'static str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.request_timeout, request).await {
            Ok(result) => result.map_err(|error| map_error(op, &self.endpoints, error)),
            Err(_) => Err(Error::Unavailable {
                op,
                endpoints: self.endpoints.to_string(),
                detail: format!("no answer within {:?}", self.request_timeout),
            }),
        }
    }

    /// Runs one write like [`call`](Self::call), and counts it when it fails
    /// without saying whether etcd committed it (a timeout, a connection
    /// reset after the request was sent).
    pub(crate) async fn call_write<T>(
        &self,
        op: &'static str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        let result = self.call(op, request).await;
        if let Err(error) = &result
            && error.outcome_unknown()
        {
            self.unknown_outcomes.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    /// How many writes through this connection have failed with an unknown
    /// outcome so far: each may yet show up as committed.
    pub(crate) fn unknown_outcomes(&self) -> u64 {
        self.unknown_outcomes.load(Ordering::SeqCst)
    }

    /// An `Unavailable` error for `op` on this registry's endpoints.
    pub(crate) fn unavailable(&self, op: &'static str, detail: &str) -> Error {
        Error::Unavailable {
            op,
            endpoints: self.endpoints.to_string(),
            detail: detail.to_owned(),
        }
    }

    /// Maps an etcd error of a streaming operation (which has no overall timeout).
    pub(crate) fn error(&self, op: &'static str, error: etcd_client::Error) -> Error {
        map_error(op, &self.endpoints, error)
    }
}

fn connect_options(config: &RegistryConfig) -> Result<ConnectOptions> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(config.connect_timeout)
        .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
        .with_keep_alive_while_idle(true);
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.with_user(user.clone(), password.clone());
    }
    if config.ca_cert.is_some() || config.cert.is_some() {
        let mut tls = TlsOptions::new();
        if let Some(path) = &config.ca_cert {
            tls = tls.ca_certificate(Certificate::from_pem(read_pem(path, "CA certificate")?));
        }
        if let (Some(cert), Some(key)) = (&config.cert, &config.key) {
            let identity = Identity::from_pem(
                read_pem(cert, "client certificate")?,
                read_pem(key, "client key")?,
            );
            tls = tls.identity(identity);
        }
        options = options.with_tls(tls);
    }
    Ok(options)
}

fn read_pem(path: &std::path::Path, what: &'static str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Tries every endpoint on its own, so the error can say which failed and how.
async fn probe_each(
    endpoints: &[String],
    options: &ConnectOptions,
    timeout: Duration,
    op: &'static str,
) -> Error {
    let probes = endpoints.iter().map(|endpoint| async move {
        let attempt = async {
            let mut client = Client::connect([endpoint.as_str()], Some(options.clone())).await?;
            client.status().await.map(|_| ())
        };
        let outcome = match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(())) => "answered on retry".to_owned(),
            Ok(Err(error)) => describe(&error),
            Err(_) => format!("no answer within {timeout:?}"),
        };
        format!("{endpoint}: {outcome}")
    });
    Error::Unavailable {
        op,
        endpoints: endpoints.join(","),
        detail: join_all(probes).await.join("; "),
    }
}

/// A short description of an etcd error: what failed and its root cause
/// (e.g. `tcp connect error: Connection refused (os error 111)`), since the
/// client's own messages are either terse or full of debug output.
fn describe(error: &etcd_client::Error) -> String {
    let (summary, mut source): (String, Option<&(dyn std::error::Error + 'static)>) = match error {
        etcd_client::Error::GRpcStatus(status) => (
            status.message().to_owned(),
            std::error::Error::source(status),
        ),
        other => (other.to_string(), std::error::Error::source(other)),
    };
    let mut root = None;
    while let Some(cause) = source {
        root = Some(cause);
        source = cause.source();
    }
    match root.map(ToString::to_string) {
        Some(cause) if !summary.contains(&cause) => format!("{summary}: {cause}"),
        _ => summary,
    }
}

fn is_auth_failure(message: &str) -> bool {
    [
        "authentication failed",
        "user name is empty",
        "invalid auth token",
        "permission denied",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

fn map_error(op: &'static str, endpoints: &str, error: etcd_client::Error) -> Error {
    use tonic::Code;
    let unavailable = |detail: String| Error::Unavailable {
        op,
        endpoints: endpoints.to_owned(),
        detail,
    };
    match &error {
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => Error::Unauthorized {
                op,
                message: status.message().to_owned(),
            },
            // etcd reports bad or missing credentials as invalid arguments.
            Code::InvalidArgument if is_auth_failure(status.message()) => Error::Unauthorized {
                op,
                message: status.message().to_owned(),
            },
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                unavailable(describe(&error))
            }
            // tonic reports connection-level failures (refused TLS handshakes,
            // resets) as Unknown with the cause attached.
            Code::Unknown if std::error::Error::source(status).is_some() => {
                unavailable(describe(&error))
            }
            _ => Error::Request {
                op,
                message: status.message().to_owned(),
            },
        },
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            unavailable(describe(&error))
        }
        _ => Error::Request {
            op,
            message: describe(&error),
        },
    }
}
