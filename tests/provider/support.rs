//! What the provider tests share: a socket directory per test, providers
//! served in the background until their handle drops, and a caller.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use visor::provider::{Caller, CallerConfig, Provider, ProviderConfig};

/// Bound on one test.
pub const LIMIT: Duration = Duration::from_secs(30);

/// A socket directory, removed with the test. Short (under /tmp), since a
/// socket path must fit in 107 bytes.
pub struct SocketDir {
    dir: tempfile::TempDir,
}

impl SocketDir {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("vp")
                .tempdir_in("/tmp")
                .expect("create a socket dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A provider config named `name` in this directory, with `priority` for every task.
    pub fn config(&self, name: &str, priority: u32) -> ProviderConfig {
        let mut config = ProviderConfig::new(name).socket_dir(self.path());
        config.default_priority = priority;
        config
    }

    /// A caller of this directory's providers.
    pub async fn caller(&self) -> Caller {
        self.caller_with(|config| config).await
    }

    /// A caller with its config changed by `change`.
    pub async fn caller_with(&self, change: impl FnOnce(CallerConfig) -> CallerConfig) -> Caller {
        Caller::bind(change(CallerConfig::new(self.path(), "test")))
            .await
            .expect("bind a caller")
    }

    /// `task`'s socket for `provider` at `priority`.
    pub fn socket(&self, task: &str, priority: u32, provider: &str) -> PathBuf {
        self.path().join(task).join(format!("{priority}-{provider}.sock"))
    }
}

/// A provider serving in the background; stopped (and awaited) by
/// [`stop`](Self::stop), cancelled when dropped.
pub struct Running {
    pub shutdown: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl Running {
    /// Binds `provider` (its sockets exist when this returns) and serves it.
    pub async fn start(provider: Provider) -> Self {
        let bound = provider.bind().await.expect("bind the provider");
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(bound.serve(shutdown.clone()));
        Self {
            shutdown,
            handle: Some(handle),
        }
    }

    /// Stops it and waits until it has.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("the provider's serve task panicked");
        }
    }

    /// Waits until it stopped by itself (after its shutdown was cancelled).
    pub async fn stopped(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.await.expect("the provider's serve task panicked");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
