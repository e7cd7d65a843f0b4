//! Where the registry is and how to talk to it: endpoints, root prefix,
//! timeouts, TLS and user/password auth, from flags or `VISOR_*` variables.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Connection settings for the registry.
#[derive(Debug, Clone, Args)]
pub struct RegistryConfig {
    /// etcd endpoints, comma-separated (`http://` or `https://`; bare `host:port` allowed).
    #[arg(
        long,
        env = "VISOR_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379",
        global = true
    )]
    pub endpoints: Vec<String>,

    /// Prefix under which every Visor key lives.
    #[arg(long, env = "VISOR_ROOT", default_value = "/visor", global = true)]
    pub root: String,

    /// How long to wait for a connection to the registry.
    #[arg(long, env = "VISOR_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub connect_timeout: Duration,

    /// How long one registry request may take.
    #[arg(long, env = "VISOR_REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub request_timeout: Duration,

    /// PEM file of the CA that signed the registry's certificate (enables TLS).
    #[arg(long, env = "VISOR_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,

    /// PEM client certificate for mutual TLS (needs `--key`).
    #[arg(long, env = "VISOR_CERT", requires = "key", global = true)]
    pub cert: Option<PathBuf>,

    /// PEM private key of the client certificate (needs `--cert`).
    #[arg(long, env = "VISOR_KEY", requires = "cert", global = true)]
    pub key: Option<PathBuf>,

    /// Registry user name (needs `--password`).
    #[arg(long, env = "VISOR_USER", requires = "password", global = true)]
    pub user: Option<String>,

    /// Registry password.
    #[arg(long, env = "VISOR_PASSWORD", hide_env_values = true, global = true)]
    pub password: Option<String>,
}

impl RegistryConfig {
    /// Settings for plain-text endpoints with default root and timeouts.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            root: "/visor".to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            ca_cert: None,
            cert: None,
            key: None,
            user: None,
            password: None,
        }
    }

    /// The same settings under another root prefix.
    #[must_use]
    pub fn with_root(mut self, root: impl Into<String>) -> Self {
        self.root = root.into();
        self
    }

    /// The same settings with another request timeout.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}
