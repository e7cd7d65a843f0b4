//! Test harness: a real etcd per test, and helpers that bound every wait.
//!
//! Each test gets its own etcd process (free loopback ports, temporary data
//! dir), killed and removed when the [`TestRegistry`] drops, so tests never see
//! each other's keys and can restart or compact their registry freely.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::future::Future;
use std::time::Duration;

use visor::Visor;
use visor::registry::{LocalEtcd, RegistryConfig};

/// A test's own etcd plus a connected Visor API.
pub struct TestRegistry {
    pub etcd: LocalEtcd,
    pub visor: Visor,
}

impl TestRegistry {
    /// Starts etcd and connects under the default root.
    pub async fn start() -> Self {
        let etcd = LocalEtcd::start()
            .await
            .expect("start etcd (is etcd-server installed? bash .ci/setup)");
        let visor = Visor::connect(&config(&etcd))
            .await
            .expect("connect to the test etcd");
        Self { etcd, visor }
    }

    /// Another, independent connection to the same registry.
    pub async fn connect_again(&self) -> Visor {
        Visor::connect(&config(&self.etcd))
            .await
            .expect("second connection")
    }

    /// Registry settings for this etcd.
    pub fn config(&self) -> RegistryConfig {
        config(&self.etcd)
    }

    /// A raw etcd client, for writing what Visor never would.
    pub fn raw(&self) -> etcd_client::Client {
        self.visor.registry().etcd()
    }
}

/// Registry settings pointing at `etcd`.
pub fn config(etcd: &LocalEtcd) -> RegistryConfig {
    RegistryConfig::new([etcd.endpoint()])
}

/// Runs a test body under a deadline; a hang fails with `what` as the likely cause.
pub async fn within<T>(limit: Duration, what: &str, body: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, body).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Polls `condition` until it returns `Some`, failing after `limit` with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("condition not met within {limit:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
