//! What the tests share: an agent admin endpoint in the test process over
//! a temporary instances directory, instance output files written and
//! rotated as the supervisor does, HTTP clients (a raw one for requests
//! no URL library would send), and a PKI for TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use visor::admin::{AgentAdmin, AgentAdminConfig, AgentAdminError};
use visor::agent::AgentMetrics;
pub use visor_testkit::pki::Pki;
use visor_testkit::within;

/// Bound on one test.
pub const LIMIT: Duration = Duration::from_secs(60);
/// Bound on one wait for output to arrive (the follower polls every 200ms).
pub const OUTPUT_WAIT: Duration = Duration::from_secs(10);

/// An agent's admin endpoint serving a temporary instances directory.
pub struct TestAgent {
    /// Its URL, as the host document carries it.
    pub url: String,
    /// The address it is bound to.
    pub addr: SocketAddr,
    /// What it reports, to change its standing.
    pub metrics: AgentMetrics,
    instances: tempfile::TempDir,
    shutdown: CancellationToken,
    served: Option<JoinHandle<Result<(), AgentAdminError>>>,
}

impl TestAgent {
    /// Plain text on a free loopback port.
    pub async fn start() -> Self {
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        Self::start_with(AgentAdminConfig::new(loopback)).await
    }

    /// Serving as `config` says.
    pub async fn start_with(config: AgentAdminConfig) -> Self {
        let instances = tempfile::tempdir().expect("a temporary directory");
        let registry = prometheus::Registry::new();
        let metrics = AgentMetrics::new(&registry).expect("metrics registered");
        let admin = AgentAdmin::bind(
            &config,
            registry,
            instances.path().to_owned(),
            metrics.ready(),
            metrics.health(),
        )
        .await
        .expect("the admin endpoint binds");
        let shutdown = CancellationToken::new();
        let (url, addr) = (admin.url(), admin.local_addr());
        let served = tokio::spawn(admin.serve(shutdown.clone()));
        Self {
            url,
            addr,
            metrics,
            instances,
            shutdown,
            served: Some(served),
        }
    }

    /// The output files of `instance` (its directory created).
    pub fn instance(&self, instance: &str) -> InstanceFiles {
        let logs = self.instances.path().join(instance).join("logs");
        std::fs::create_dir_all(&logs).expect("instance directory created");
        InstanceFiles { logs }
    }

    /// `<url><path>`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Shuts the endpoint down and waits until it has stopped serving.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(served) = self.served.take() {
            within(LIMIT, "the admin endpoint does not shut down", served)
                .await
                .expect("the serving task ran to its end")
                .expect("served without error");
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An instance's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// An instance's `logs/` directory, written as its supervisor would.
pub struct InstanceFiles {
    logs: PathBuf,
}

impl InstanceFiles {
    fn current(&self, stream: Stream) -> PathBuf {
        self.logs.join(match stream {
            Stream::Stdout => "stdout.log",
            Stream::Stderr => "stderr.log",
        })
    }

    fn rotated(&self, stream: Stream, n: usize) -> PathBuf {
        let mut path = self.current(stream).into_os_string();
        path.push(format!(".{n}"));
        path.into()
    }

    /// Appends `text` to the current file of `stream`.
    pub fn append(&self, stream: Stream, text: &str) {
        append(&self.current(stream), text);
    }

    /// Writes the `n`-th rotated file of `stream` (`.1` the newest).
    pub fn write_rotated(&self, stream: Stream, n: usize, text: &str) {
        std::fs::write(self.rotated(stream, n), text).expect("rotated file written");
    }

    /// Rotates `stream` as the supervisor does: `.1` → `.2`, ..., the
    /// current file → `.1`, and a new, empty current file.
    pub fn rotate(&self, stream: Stream) {
        let mut last = 1;
        while self.rotated(stream, last).exists() {
            last += 1;
        }
        for n in (1..last).rev() {
            std::fs::rename(self.rotated(stream, n), self.rotated(stream, n + 1)).expect("renamed");
        }
        std::fs::rename(self.current(stream), self.rotated(stream, 1)).expect("renamed");
        std::fs::File::create(self.current(stream)).expect("new current file");
    }

    /// How many descriptors of this process are open on files of this directory.
    pub fn open_descriptors(&self) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd is readable")
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.starts_with(&self.logs))
            .count()
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("opened for appending");
    file.write_all(text.as_bytes()).expect("appended");
}

/// GET `url`: its status and body.
pub async fn get(url: &str) -> (reqwest::StatusCode, String) {
    get_with(&reqwest::Client::new(), url).await
}

/// GET `url` with `client`: its status and body.
pub async fn get_with(client: &reqwest::Client, url: &str) -> (reqwest::StatusCode, String) {
    let response = client
        .get(url)
        .send()
        .await
        .expect("the request is answered");
    let status = response.status();
    (status, response.text().await.expect("the body is read"))
}

/// GET `path` as given, byte for byte (no URL normalisation): the status
/// code and the body.
pub async fn raw_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connected");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}

/// A response read chunk by chunk, as it streams.
pub struct Streamed {
    response: reqwest::Response,
    /// Everything read so far.
    pub text: String,
}

impl Streamed {
    /// Sends a GET of `url` and waits for the response to start.
    pub async fn open(url: &str) -> Self {
        let response = reqwest::get(url).await.expect("the request is answered");
        assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
        Self {
            response,
            text: String::new(),
        }
    }

    /// Reads until everything read ends with `end`.
    pub async fn until(&mut self, end: &str) {
        let what = format!("{end:?} does not arrive");
        within(OUTPUT_WAIT, &what, async {
            while !self.text.ends_with(end) {
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .expect("the stream goes on")
                    .unwrap_or_else(|| panic!("the stream ended after {:?}", self.text));
                self.text
                    .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
            }
        })
        .await;
    }

    /// Reads to the end of the response.
    pub async fn end(mut self) -> String {
        within(OUTPUT_WAIT, "the stream does not end", async {
            while let Some(chunk) = self
                .response
                .chunk()
                .await
                .expect("the stream ends cleanly")
            {
                self.text
                    .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
            }
        })
        .await;
        self.text
    }
}
