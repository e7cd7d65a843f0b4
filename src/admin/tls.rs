//! TLS for the admin endpoint: the certificate and key it presents, the CA
//! whose client certificates it requires (mutual TLS), and a listener that
//! hands axum's serve loop finished TLS handshakes.
//!
//! rustls on ring, as the registry client and the artifact downloads build
//! it. Invariants: handshakes run concurrently and each within a deadline,
//! so a client that connects and says nothing holds no other client up;
//! and the files are read when the server binds, so a bad one stops the
//! command at start-up, naming the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at most; connections beyond are closed at once.
const MAX_HANDSHAKES: usize = 256;
/// How long accepting pauses after an error that is not the peer's (out of
/// file descriptors): axum's own listener waits as long.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The admin endpoint's TLS files (PEM). Flattened as an `Option`: absent
/// unless one of its flags is given, and then the certificate and key both.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct AdminTls {
    /// PEM certificate (with its chain) the admin endpoint presents; enables TLS (needs `--admin-key`).
    #[arg(
        id = "admin_cert",
        long = "admin-cert",
        env = "VISOR_ADMIN_CERT",
        required = false,
        requires = "admin_key"
    )]
    pub cert: PathBuf,
    /// PEM private key of `--admin-cert`.
    #[arg(
        id = "admin_key",
        long = "admin-key",
        env = "VISOR_ADMIN_KEY",
        required = false,
        requires = "admin_cert"
    )]
    pub key: PathBuf,
    /// PEM CA bundle: clients must present a certificate it signed (mutual TLS). Any client when absent.
    #[arg(
        id = "admin_client_ca",
        long = "admin-client-ca",
        env = "VISOR_ADMIN_CLIENT_CA",
        requires = "admin_cert"
    )]
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the admin {what} {}", path.display())]
    Read {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no PEM item of the kind expected, or a malformed one.
    #[error("the admin {what} {} holds no valid PEM {what}", path.display())]
    Pem {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: pem::Error,
    },
    /// A client CA certificate was refused as a trust anchor.
    #[error("the admin client CA {} cannot be trusted", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// No client verifier could be built from the client CA.
    #[error("the admin client CA {} cannot verify clients", path.display())]
    Verifier {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// The certificate and key do not make a server configuration (a key
    /// that does not match the certificate, say).
    #[error("the admin certificate {} and key {} cannot be used", cert.display(), key.display())]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
}

impl AdminTls {
    /// Reads the files into an acceptor of TLS connections (HTTP/1.1).
    pub(super) fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config_error = |source| TlsError::Config {
            cert: self.cert.clone(),
            key: self.key.clone(),
            source,
        };
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(path, "client CA")? {
                    roots.add(cert).map_err(|source| TlsError::ClientCa {
                        path: path.clone(),
                        source,
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|source| TlsError::Verifier {
                            path: path.clone(),
                            source,
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let chain = certificates(&self.cert, "certificate")?;
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key, "key")?).map_err(|source| {
            TlsError::Pem {
                what: "key",
                path: self.key.clone(),
                source,
            }
        })?;
        let mut config = builder.with_single_cert(chain, key).map_err(config_error)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in the PEM file at `path`; at least one.
fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |source| TlsError::Pem {
        what,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_slice_iter(&read(path, what)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    match certs.is_empty() {
        true => Err(pem_error(pem::Error::NoItemsFound)),
        false => Ok(certs),
    }
}

type Handshake = Pin<Box<dyn Future<Output = Option<(TlsStream<TcpStream>, SocketAddr)>> + Send>>;

/// A TCP listener whose connections come out TLS, handshake done.
pub(super) struct TlsListener {
    tcp: TcpListener,
    local_addr: SocketAddr,
    acceptor: TlsAcceptor,
    handshakes: FuturesUnordered<Handshake>,
}

impl TlsListener {
    pub(super) fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        Ok(Self {
            local_addr: tcp.local_addr()?,
            tcp,
            acceptor,
            handshakes: FuturesUnordered::new(),
        })
    }

    pub(super) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        if self.handshakes.len() >= MAX_HANDSHAKES {
            tracing::warn!(%peer, "too many TLS handshakes in progress; closing the connection");
            return;
        }
        let accept = self.acceptor.accept(stream);
        self.handshakes.push(Box::pin(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
                Ok(Ok(stream)) => Some((stream, peer)),
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            }
        }));
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    // Cancel safe, as axum needs it (it races accept against shutdown): a
    // handshake in progress lives in `self`, not in this future.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => self.start_handshake(stream, peer),
                    Err(error) if is_peer_error(&error) => {}
                    Err(error) => {
                        tracing::warn!(%error, "cannot accept admin connections; pausing");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                },
                Some(done) = self.handshakes.next(), if !self.handshakes.is_empty() => {
                    if let Some(connection) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Errors of one connection that went away before it was accepted.
fn is_peer_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
