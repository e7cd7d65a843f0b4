//! A real registry per test, and a Visor API connected to it.
//!
//! Each test gets its own registry process (free loopback ports, temporary
//! data dir), killed and removed when the [`TestRegistry`] drops, so tests
//! never see each other's keys and can restart or compact their registry
//! freely, even when they run in parallel threads of one test binary.
//!
//! Which registry is chosen by `VISOR_TEST_REGISTRY`: `etcd` (the default)
//! or `embedded` (`visor registry serve`, this build's binary); the whole
//! suite runs against each.

use visor::Visor;
use visor::registry::{LocalRegistry, LocalRegistryOptions, LocalServer, RegistryConfig};

/// The variable that chooses the registry the tests run against.
pub const REGISTRY_VAR: &str = "VISOR_TEST_REGISTRY";

/// The registry `VISOR_TEST_REGISTRY` chooses.
///
/// # Panics
///
/// On a value other than `etcd` or `embedded`: a typo must not quietly
/// run the suite against the other registry.
pub fn chosen_server() -> LocalServer {
    match std::env::var(REGISTRY_VAR).as_deref() {
        Err(_) | Ok("" | "etcd") => LocalServer::Etcd,
        Ok("embedded") => LocalServer::Embedded {
            visor: crate::cli::visor_binary(),
        },
        Ok(other) => panic!("{REGISTRY_VAR}={other:?}: expected etcd or embedded"),
    }
}

/// Whether the tests run against the embedded registry.
pub fn embedded() -> bool {
    matches!(chosen_server(), LocalServer::Embedded { .. })
}

/// Options for a registry of the chosen kind, otherwise the defaults.
pub fn options() -> LocalRegistryOptions {
    LocalRegistryOptions {
        server: chosen_server(),
        ..LocalRegistryOptions::default()
    }
}

/// A test's own registry plus a connected Visor API.
pub struct TestRegistry {
    /// The registry process, to restart, kill or point other clients at.
    pub server: LocalRegistry,
    /// A Visor API connected under the default root.
    pub visor: Visor,
}

impl TestRegistry {
    /// Starts the chosen registry and connects under the default root.
    pub async fn start() -> Self {
        let server = LocalRegistry::start_with(options())
            .await
            .expect("start the test registry (is etcd-server installed? bash .ci/setup)");
        Self::connected(server).await
    }

    /// Starts etcd whatever `VISOR_TEST_REGISTRY` says, for what only etcd
    /// serves (auth, its server-side Election API).
    pub async fn start_etcd() -> Self {
        let server = LocalRegistry::start()
            .await
            .expect("start etcd (is etcd-server installed? bash .ci/setup)");
        Self::connected(server).await
    }

    /// `server` with a Visor API connected to it.
    async fn connected(server: LocalRegistry) -> Self {
        let visor = Visor::connect(&config(&server))
            .await
            .expect("connect to the test registry");
        Self { server, visor }
    }

    /// Another, independent connection to the same registry.
    pub async fn connect_again(&self) -> Visor {
        Visor::connect(&config(&self.server))
            .await
            .expect("second connection")
    }

    /// Registry settings for this registry.
    pub fn config(&self) -> RegistryConfig {
        config(&self.server)
    }

    /// A raw etcd client, for writing what Visor never would.
    pub fn raw(&self) -> etcd_client::Client {
        self.visor.registry().etcd()
    }
}

/// Registry settings pointing at `server`.
pub fn config(server: &LocalRegistry) -> RegistryConfig {
    RegistryConfig::new([server.endpoint()])
}
