//! A real etcd per test, and a Visor API connected to it.
//!
//! Each test gets its own etcd process (free loopback ports, temporary data
//! dir), killed and removed when the [`TestRegistry`] drops, so tests never see
//! each other's keys and can restart or compact their registry freely, even
//! when they run in parallel threads of one test binary.

use visor::Visor;
use visor::registry::{LocalEtcd, RegistryConfig};

/// A test's own etcd plus a connected Visor API.
pub struct TestRegistry {
    /// The etcd process, to restart, kill or point other clients at.
    pub etcd: LocalEtcd,
    /// A Visor API connected under the default root.
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
