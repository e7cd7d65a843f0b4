//! A single-node registry run as a child process on free loopback ports:
//! a single-member etcd, or the embedded registry (`visor registry serve`).
//!
//! `visor up --etcd` uses it as the local registry, and the tests and
//! benchmarks use it as their real registry, of either kind. Invariants: the
//! process never outlives its [`LocalRegistry`] — dropping it kills the
//! process and removes a temporary data dir; and the ports a
//! [`LocalRegistry`] picked are never picked by another one of the same
//! process while it exists, killed or running, so that a
//! [`restart`](LocalRegistry::restart) finds them free (tests run many
//! registries in parallel threads of one process, and kill and restart some
//! of them).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;

/// How long etcd may take to answer after starting (a loaded 2-core CI machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at picking free ports before giving up (another process may grab one).
const PORT_ATTEMPTS: usize = 3;
/// Ports the system may offer before one that no [`LocalRegistry`] of this process holds.
const PORT_PICKS: usize = 64;

/// Ports picked by the [`LocalRegistry`]s of this process that exist now.
static HELD_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Why a local etcd could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalRegistryError {
    /// The `etcd` binary is not installed.
    #[error(
        "cannot run etcd binary {binary:?}: {source}; install etcd-server (bash .ci/setup does) or set VISOR_ETCD_BIN"
    )]
    Spawn {
        /// The binary tried.
        binary: String,
        /// Why it could not run.
        source: std::io::Error,
    },
    /// Preparing the data dir, log or ports failed.
    #[error("cannot prepare local etcd")]
    Prepare(#[from] std::io::Error),
    /// The embedded registry cannot serve what was asked of it.
    #[error("the embedded registry cannot {0}; use etcd for it")]
    Unsupported(&'static str),
    /// The registry exited or did not answer in time.
    #[error("local registry did not become healthy: {reason}; last log lines:\n{log}")]
    Unhealthy {
        /// What happened.
        reason: String,
        /// The tail of etcd's log.
        log: String,
    },
}

/// Server certificate files, to serve clients over TLS.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// PEM server certificate (valid for 127.0.0.1).
    pub cert: PathBuf,
    /// PEM server key.
    pub key: PathBuf,
    /// PEM CA that client certificates must chain to; `None` accepts any client.
    pub client_ca: Option<PathBuf>,
}

/// Which server a [`LocalRegistry`] runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LocalServer {
    /// etcd (`VISOR_ETCD_BIN`, or `etcd` in `PATH`).
    #[default]
    Etcd,
    /// The embedded registry, served by this `visor` binary.
    Embedded {
        /// The `visor` binary to run `registry serve` with.
        visor: PathBuf,
    },
}

/// How to run a [`LocalRegistry`]; the default is etcd on free ports with a
/// temporary data dir.
#[derive(Debug, Clone, Default)]
pub struct LocalRegistryOptions {
    /// The server to run.
    pub server: LocalServer,
    /// Data dir, kept on drop; `None` for a temporary one, removed on drop.
    pub data_dir: Option<PathBuf>,
    /// Client port; `None` for a free one.
    pub client_port: Option<u16>,
    /// Serve clients over TLS (etcd only).
    pub tls: Option<ServerTls>,
    /// Further etcd flags, e.g. `--auto-compaction-retention=1` (etcd only:
    /// the embedded registry is not given them).
    pub extra_args: Vec<String>,
}

/// A running single-node registry on loopback.
#[derive(Debug)]
pub struct LocalRegistry {
    child: Option<Child>,
    binary: PathBuf,
    options: LocalRegistryOptions,
    client_port: u16,
    peer_port: u16,
    /// Plain-HTTP `/health`, probed whether or not clients use TLS.
    metrics_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    // Held for its Drop, which releases the ports it picked.
    _ports: HeldPorts,
    // Held for its Drop, which removes the directory.
    _temp: Option<TempDir>,
}

impl LocalRegistry {
    /// Starts etcd on free ports with a temporary data dir, removed on drop.
    pub async fn start() -> Result<Self, LocalRegistryError> {
        Self::start_with(LocalRegistryOptions::default()).await
    }

    /// Starts the registry as `options` say.
    pub async fn start_with(options: LocalRegistryOptions) -> Result<Self, LocalRegistryError> {
        let binary = match &options.server {
            LocalServer::Etcd => {
                PathBuf::from(std::env::var("VISOR_ETCD_BIN").unwrap_or_else(|_| "etcd".to_owned()))
            }
            LocalServer::Embedded { .. } if options.tls.is_some() => {
                return Err(LocalRegistryError::Unsupported("serve TLS"));
            }
            LocalServer::Embedded { visor } => visor.clone(),
        };
        let (temp, data_dir, log_path) = match &options.data_dir {
            Some(dir) => {
                // The log sits beside the data dir: etcd wants its own dir to itself.
                let parent = dir.parent().unwrap_or(Path::new("."));
                (None, dir.clone(), parent.join("etcd.log"))
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("visor-registry-")
                    .tempdir()?;
                let (data, log) = (temp.path().join("data"), temp.path().join("etcd.log"));
                (Some(temp), data, log)
            }
        };
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let mut ports = HeldPorts::default();
            let client_port = match options.client_port {
                Some(port) => port,
                None => ports.pick()?,
            };
            let (peer_port, metrics_port) = match options.server {
                LocalServer::Etcd => (ports.pick()?, ports.pick()?),
                // One port: gRPC, `/health` and `/metrics` share it.
                LocalServer::Embedded { .. } => (client_port, client_port),
            };
            let mut etcd = Self {
                child: None,
                binary: binary.clone(),
                client_port,
                peer_port,
                metrics_port,
                options: options.clone(),
                data_dir: data_dir.clone(),
                log_path: log_path.clone(),
                _ports: ports,
                _temp: None,
            };
            match etcd.launch().await {
                Ok(()) => {
                    etcd._temp = temp;
                    return Ok(etcd);
                }
                // Another process took a port between our check and etcd's bind: pick again.
                Err(LocalRegistryError::Unhealthy { reason, log })
                    if log.to_lowercase().contains("address already in use")
                        && options.client_port.is_none() =>
                {
                    last_error = Some(LocalRegistryError::Unhealthy { reason, log });
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| LocalRegistryError::Unhealthy {
            reason: "no free ports".into(),
            log: String::new(),
        }))
    }

    /// The client URL, e.g. `http://127.0.0.1:40123` (`https` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Which server it runs.
    pub fn server(&self) -> &LocalServer {
        &self.options.server
    }

    /// The plain-HTTP port of its `/health` and `/metrics` (etcd's
    /// `--listen-metrics-urls`; the client port of the embedded registry).
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// Kills the process at once (SIGKILL), keeping the data dir.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already exited is fine: the point is that it is not running.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts it again on the same ports and data dir.
    pub async fn restart(&mut self) -> Result<(), LocalRegistryError> {
        self.kill();
        self.launch().await
    }

    async fn launch(&mut self) -> Result<(), LocalRegistryError> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        if let Some(parent) = self.log_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut command = Command::new(&self.binary);
        if let LocalServer::Embedded { .. } = self.options.server {
            command
                .arg("registry")
                .arg("serve")
                .arg("--data-dir")
                .arg(&self.data_dir)
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", self.client_port));
            return self.spawn(command, log).await;
        }
        command
            .arg("--name=visor")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=visor={peer}"))
            .arg(format!(
                "--listen-metrics-urls=http://127.0.0.1:{}",
                self.metrics_port
            ))
            // A single member elects itself; short timers make that take milliseconds.
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=100")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr");
        if let Some(tls) = &self.options.tls {
            command
                .arg(format!("--cert-file={}", tls.cert.display()))
                .arg(format!("--key-file={}", tls.key.display()));
            if let Some(ca) = &tls.client_ca {
                command
                    .arg("--client-cert-auth")
                    .arg(format!("--trusted-ca-file={}", ca.display()));
            }
        }
        command.args(&self.options.extra_args);
        self.spawn(command, log).await
    }

    /// Runs `command` with its output in `log`, and waits until it is healthy.
    async fn spawn(
        &mut self,
        mut command: Command,
        log: std::fs::File,
    ) -> Result<(), LocalRegistryError> {
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command
            .spawn()
            .map_err(|source| LocalRegistryError::Spawn {
                binary: self.binary.display().to_string(),
                source,
            })?;
        self.child = Some(child);
        self.wait_healthy().await
    }

    async fn wait_healthy(&mut self) -> Result<(), LocalRegistryError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let binary = self.binary.display().to_string();
                return Err(self.unhealthy(format!("{binary} exited with {status}")));
            }
            let port = self.metrics_port;
            if tokio::task::spawn_blocking(move || healthy(port))
                .await
                .unwrap_or(false)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                let endpoint = self.endpoint();
                return Err(
                    self.unhealthy(format!("no answer on {endpoint} within {START_TIMEOUT:?}"))
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn unhealthy(&self, reason: String) -> LocalRegistryError {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log_path) {
            let _ = file.read_to_string(&mut text);
        }
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let log = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        LocalRegistryError::Unhealthy { reason, log }
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `/health` on `port` says the registry is healthy (etcd: it has a
/// leader and serves reads; the embedded registry: it serves).
fn healthy(port: u16) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response.contains("\"health\":\"true\""))
    };
    probe().unwrap_or(false)
}

/// Loopback ports picked for one [`LocalRegistry`], held in [`HELD_PORTS`] until dropped.
#[derive(Debug, Default)]
struct HeldPorts(Vec<u16>);

impl HeldPorts {
    /// A loopback port that was free a moment ago and that no other
    /// [`LocalRegistry`] of this process holds (one killed for a restart has
    /// left its ports free, and will want them back).
    fn pick(&mut self) -> std::io::Result<u16> {
        for _ in 0..PORT_PICKS {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut held = HELD_PORTS.lock().unwrap_or_else(PoisonError::into_inner);
            if held.insert(port) {
                self.0.push(port);
                return Ok(port);
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("no free loopback port in {PORT_PICKS} offered"),
        ))
    }
}

impl Drop for HeldPorts {
    fn drop(&mut self) {
        let mut held = HELD_PORTS.lock().unwrap_or_else(PoisonError::into_inner);
        for port in &self.0 {
            held.remove(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(port: u16) -> bool {
        HELD_PORTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&port)
    }

    #[test]
    fn picked_ports_are_distinct_and_held_until_dropped() {
        let mut ports = HeldPorts::default();
        let picked: BTreeSet<u16> = (0..3).map(|_| ports.pick().expect("pick a port")).collect();
        assert_eq!(picked.len(), 3, "three distinct ports: {picked:?}");
        assert!(picked.iter().all(|&port| held(port)));
        drop(ports);
        assert!(picked.iter().all(|&port| !held(port)));
    }
}
