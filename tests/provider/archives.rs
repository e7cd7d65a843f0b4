//! What the artifact and hook tests share: revision archives built in
//! memory (hostile ones included: the tar crate's builder refuses `..` and
//! absolute names, so names are written into the header as they are), an
//! archive server on loopback over HTTP or HTTPS that counts its requests,
//! and a store per test under its own data directory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use visor::model::Name;
use visor::provider::exec::artifact::{ArtifactConfig, ArtifactStore, FetchArgs, Source};

/// One entry of an archive, its name written as given.
pub enum Item<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
}

/// A gzip-compressed tar of `items`, in order.
pub fn tar_gz(items: &[Item<'_>]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for item in items {
        let mut header = tar::Header::new_gnu();
        let (name, data): (&str, &[u8]) = match item {
            Item::File(name, data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                (name, data)
            }
            Item::Dir(name) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                (name, &[])
            }
            Item::Symlink(name, target) | Item::Hardlink(name, target) => {
                header.set_entry_type(match item {
                    Item::Symlink(..) => tar::EntryType::Symlink,
                    _ => tar::EntryType::Link,
                });
                header.set_mode(0o777);
                raw(&mut header.as_old_mut().linkname, target);
                (name, &[])
            }
            Item::Fifo(name) => {
                header.set_entry_type(tar::EntryType::Fifo);
                header.set_mode(0o644);
                (name, &[])
            }
        };
        raw(&mut header.as_old_mut().name, name);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder
            .append(&header, data)
            .expect("append to an in-memory archive");
    }
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish an in-memory archive")
}

/// Writes `value` into a NUL-padded header field.
fn raw(field: &mut [u8], value: &str) {
    assert!(value.len() < field.len(), "{value:?} fits a header field");
    field.fill(0);
    field[..value.len()].copy_from_slice(value.as_bytes());
}

/// An ordinary revision: a hook, a binary, a symlink and a directory.
pub fn ordinary() -> Vec<u8> {
    tar_gz(&[
        Item::Dir("./"),
        Item::Dir("./hooks/"),
        Item::File("./hooks/install", b"#!/bin/sh\necho installed\n", 0o755),
        Item::File("./bin/web", b"web", 0o4775),
        Item::Symlink("./hooks/db-relation-changed", "install"),
        Item::Dir("./empty/"),
    ])
}

pub fn name(value: &str) -> Name {
    Name::parse("name", value).expect("a valid name")
}

/// The arguments of a fetch of `web`'s `revision` from `url`.
pub fn fetch_args(revision: &str, url: &str) -> FetchArgs {
    FetchArgs {
        app: name("web"),
        revision: name(revision),
        url: Source::parse(url).expect("a supported URL"),
        sha256: None,
    }
}

/// A data directory of its own, and a store over it.
pub struct Store {
    pub root: tempfile::TempDir,
    pub store: ArtifactStore,
}

impl Store {
    pub fn new() -> Self {
        Self::with(|config| config)
    }

    pub fn with(change: impl FnOnce(ArtifactConfig) -> ArtifactConfig) -> Self {
        let root = tempfile::tempdir().expect("a data directory");
        let store = Self::open(root.path(), change);
        Self { root, store }
    }

    /// Another store over the same cache (another provider process would
    /// have one): it shares no in-process lock with the first.
    pub fn open(
        data_dir: &Path,
        change: impl FnOnce(ArtifactConfig) -> ArtifactConfig,
    ) -> ArtifactStore {
        ArtifactStore::new(change(ArtifactConfig::new(data_dir)))
    }

    pub fn data_dir(&self) -> &Path {
        self.root.path()
    }

    /// `<data_dir>/artifacts/web`.
    pub fn app_dir(&self) -> PathBuf {
        self.data_dir().join("artifacts/web")
    }

    /// Writes `bytes` as a file beside the cache; its `file://` URL.
    pub fn local_file(&self, file: &str, bytes: &[u8]) -> String {
        let path = self.data_dir().join(file);
        std::fs::write(&path, bytes).expect("write a local archive");
        format!("file://{}", path.display())
    }

    /// What is in the app's directory besides the revisions' locks: records,
    /// staging directories and revisions, sorted.
    pub fn app_entries(&self) -> Vec<String> {
        let Ok(listing) = std::fs::read_dir(self.app_dir()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = listing
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| !name.ends_with(".lock"))
            .collect();
        names.sort();
        names
    }
}

/// Archives served on loopback, by file name, counting requests per file.
pub struct ArchiveServer {
    pub addr: SocketAddr,
    served: Arc<Served>,
    scheme: &'static str,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Served {
    files: Mutex<HashMap<String, Vec<u8>>>,
    requests: AtomicUsize,
}

impl ArchiveServer {
    /// A plain HTTP server.
    pub async fn http() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let served = Arc::new(Served::default());
        let router = router(Arc::clone(&served));
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve archives");
        });
        Self {
            addr,
            served,
            scheme: "http",
            task,
        }
    }

    /// An HTTPS server whose certificate (for 127.0.0.1) `pki`'s CA signed.
    pub async fn https(pki: &Pki) -> Self {
        let tcp = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = tcp.local_addr().expect("bound address");
        let served = Arc::new(Served::default());
        let router = router(Arc::clone(&served));
        let listener = TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(pki.server_config())),
        };
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve archives");
        });
        Self {
            addr,
            served,
            scheme: "https",
            task,
        }
    }

    /// Serves `bytes` as `file`; its URL.
    pub fn serve(&self, file: &str, bytes: Vec<u8>) -> String {
        self.served
            .files
            .lock()
            .expect("files")
            .insert(file.to_owned(), bytes);
        format!("{}://{}/{file}", self.scheme, self.addr)
    }

    /// How many requests arrived, for any file.
    pub fn requests(&self) -> usize {
        self.served.requests.load(Ordering::SeqCst)
    }
}

impl Drop for ArchiveServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(served: Arc<Served>) -> Router {
    Router::new()
        .route(
            "/{file}",
            get(
                |State(served): State<Arc<Served>>, UrlPath(file): UrlPath<String>| async move {
                    served.requests.fetch_add(1, Ordering::SeqCst);
                    let files = served.files.lock().expect("files");
                    match files.get(&file) {
                        Some(bytes) => Ok(bytes.clone()),
                        None => Err(StatusCode::NOT_FOUND),
                    }
                },
            ),
        )
        .with_state(served)
}

/// TLS over loopback TCP, for axum: a handshake a client refuses is
/// dropped, and the next connection taken.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A self-signed CA and a server certificate for 127.0.0.1 it signed.
pub struct Pki {
    dir: tempfile::TempDir,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl Pki {
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("a certificate directory");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write the CA");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("server params");
        let cert = params
            .signed_by(&key, &issuer)
            .expect("sign the server certificate");
        Self {
            dir,
            server_cert: cert.der().clone(),
            server_key: key.serialize_der(),
        }
    }

    /// The CA's PEM file.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn server_config(&self) -> ServerConfig {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.server_cert.clone()], key)
            .expect("a server TLS config")
    }
}
