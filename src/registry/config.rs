//! Where the registry is and how to talk to it: endpoints, root prefix,
//! timeouts, TLS and user/password auth, from flags or `VISOR_*` variables.
//!
//! Endpoints and the root are checked as the flags are parsed (a bad one is a
//! usage error) and again by [`RegistryConfig::validate`] when a registry
//! connects, for settings built in code: nothing dials or writes before both pass.

mod endpoint;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use endpoint::InvalidEndpoint;

use super::error::{Error, Result};
use super::keys::Keys;

/// Connection settings for the registry.
#[derive(Debug, Clone, Args)]
pub struct RegistryConfig {
    /// etcd endpoints, comma-separated (`http://` or `https://`; bare `host:port` allowed).
    #[arg(
        long,
        env = "VISOR_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379",
        value_parser = parse_endpoint,
        global = true
    )]
    pub endpoints: Vec<String>,

    /// Prefix under which every Visor key lives.
    #[arg(long, env = "VISOR_ROOT", default_value = "/visor", value_parser = parse_root, global = true)]
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

    /// Refuses settings no registry could be reached or laid out with: no
    /// endpoint, a malformed one, or a bad root prefix.
    pub fn validate(&self) -> Result<()> {
        Keys::new(&self.root)?;
        if self.endpoints.is_empty() {
            return Err(Error::Config("no registry endpoints given".into()));
        }
        for endpoint in &self.endpoints {
            endpoint::check(endpoint)
                .map_err(|reason| Error::Config(format!("endpoint {endpoint:?}: {reason}")))?;
        }
        Ok(())
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

/// One `--endpoints` entry, checked and trimmed.
fn parse_endpoint(text: &str) -> Result<String, InvalidEndpoint> {
    endpoint::check(text)?;
    Ok(text.trim().to_owned())
}

/// `--root`, checked by the key layout that will use it.
fn parse_root(text: &str) -> Result<String, String> {
    match Keys::new(text) {
        Ok(keys) => Ok(keys.root().to_owned()),
        // clap says which value of which flag; the reason is enough.
        Err(Error::Config(reason)) => Err(reason),
        Err(other) => Err(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_refuses_what_no_registry_can_be_reached_with() {
        let valid = RegistryConfig::new(["http://127.0.0.1:2379", "[::1]:2379"]);
        assert!(valid.validate().is_ok());
        let table = [
            (RegistryConfig::new(["ftp://127.0.0.1:2379"]), "\"ftp\""),
            (
                RegistryConfig::new(["http://127.0.0.1:2379", "etcd-2"]),
                "\"etcd-2\": no port",
            ),
            (
                RegistryConfig::new(Vec::<String>::new()),
                "no registry endpoints",
            ),
            (valid.clone().with_root("visor"), "root prefix \"visor\""),
        ];
        for (config, mention) in table {
            match config.validate() {
                Err(Error::Config(message)) => assert!(message.contains(mention), "{message}"),
                other => panic!("{config:?}: expected a config error, got {other:?}"),
            }
        }
    }
}
