//! A single-member etcd run as a child process on free loopback ports.
//!
//! `visor up` uses it as the local registry, and the tests and benchmarks use
//! it as their real etcd. Invariant: the process never outlives its
//! [`LocalEtcd`] — dropping it kills the process and removes a temporary data dir.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;

/// How long etcd may take to answer after starting (a loaded 2-core CI machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at picking free ports before giving up (another process may grab one).
const PORT_ATTEMPTS: usize = 3;

/// Why a local etcd could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalEtcdError {
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
    #[error("cannot prepare local etcd: {0}")]
    Prepare(#[from] std::io::Error),
    /// etcd exited or did not answer in time.
    #[error("local etcd did not become healthy: {reason}; last log lines:\n{log}")]
    Unhealthy {
        /// What happened.
        reason: String,
        /// The tail of etcd's log.
        log: String,
    },
}

/// A running etcd on loopback.
#[derive(Debug)]
pub struct LocalEtcd {
    child: Option<Child>,
    binary: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    extra_args: Vec<String>,
    // Held for its Drop, which removes the directory.
    _temp: Option<TempDir>,
}

impl LocalEtcd {
    /// Starts etcd on free ports with a temporary data dir, removed on drop.
    pub async fn start() -> Result<Self, LocalEtcdError> {
        Self::start_with(None, None, &[]).await
    }

    /// Starts etcd on `data_dir` (kept on drop) or a temporary one, serving
    /// clients on `client_port` or a free one, passing `extra_args` through
    /// (e.g. `--auto-compaction-retention=1`).
    pub async fn start_with(
        data_dir: Option<&Path>,
        client_port: Option<u16>,
        extra_args: &[&str],
    ) -> Result<Self, LocalEtcdError> {
        let binary = std::env::var("VISOR_ETCD_BIN").unwrap_or_else(|_| "etcd".to_owned());
        let temp = match data_dir {
            Some(_) => None,
            None => Some(tempfile::Builder::new().prefix("visor-etcd-").tempdir()?),
        };
        let data_dir = match (&temp, data_dir) {
            (Some(temp), _) => temp.path().join("data"),
            (None, Some(dir)) => dir.to_path_buf(),
            (None, None) => unreachable!("a temporary dir is made when none is given"),
        };
        let log_dir = temp
            .as_ref()
            .map_or(data_dir.as_path(), |t| t.path())
            .to_path_buf();
        std::fs::create_dir_all(&log_dir)?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let mut etcd = Self {
                child: None,
                binary: binary.clone(),
                client_port: match client_port {
                    Some(port) => port,
                    None => free_port()?,
                },
                peer_port: free_port()?,
                data_dir: data_dir.clone(),
                log_path: log_dir.join("etcd.log"),
                extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
                _temp: None,
            };
            match etcd.launch().await {
                Ok(()) => {
                    etcd._temp = temp;
                    return Ok(etcd);
                }
                Err(LocalEtcdError::Unhealthy { reason, log })
                    if log.contains("address already in use") =>
                {
                    last_error = Some(LocalEtcdError::Unhealthy { reason, log });
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| LocalEtcdError::Unhealthy {
            reason: "no free ports".into(),
            log: String::new(),
        }))
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
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
    pub async fn restart(&mut self) -> Result<(), LocalEtcdError> {
        self.kill();
        self.launch().await
    }

    async fn launch(&mut self) -> Result<(), LocalEtcdError> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut command = Command::new(&self.binary);
        command
            .arg("--name=visor")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=visor={peer}"))
            // A single member elects itself; short timers make that take milliseconds.
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=100")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command.spawn().map_err(|source| LocalEtcdError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        self.child = Some(child);
        self.wait_healthy().await
    }

    async fn wait_healthy(&mut self) -> Result<(), LocalEtcdError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let endpoint = self.endpoint();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(self.unhealthy(format!("etcd exited with {status}")));
            }
            let options =
                etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
            let probe = async {
                let mut client =
                    etcd_client::Client::connect([endpoint.as_str()], Some(options)).await?;
                client.get("health-probe", None).await.map(|_| ())
            };
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(2), probe).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(
                    self.unhealthy(format!("no answer on {endpoint} within {START_TIMEOUT:?}"))
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn unhealthy(&self, reason: String) -> LocalEtcdError {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log_path) {
            let _ = file.read_to_string(&mut text);
        }
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let log = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        LocalEtcdError::Unhealthy { reason, log }
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
