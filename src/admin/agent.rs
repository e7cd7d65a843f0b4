//! The host agent's admin endpoint: the common `/metrics`, `/healthz` and
//! `/readyz`, and `/logs/<instance>` over the exec provider's instances, in
//! plain text on loopback or with TLS.
//!
//! Invariants: an address beyond loopback is served in plain text only
//! when explicitly allowed (it serves instance output), and the URL written
//! to the host document is one other machines can use: derived from the
//! bound address, or given when that address is every interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::health::{Health, Role};
use super::server::{AdminServer, Endpoints, Listener};
use super::tls::{AdminTls, TlsError, TlsListener};
use super::{logs, url};

/// Where and how the agent serves its admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct AgentAdminConfig {
    /// Where the agent serves `/logs`, `/metrics`, `/healthz` and `/readyz`; beyond loopback only with TLS (`--admin-cert`) or `--admin-allow-plaintext`.
    #[arg(
        id = "agent_admin_addr",
        long = "admin-addr",
        env = "VISOR_ADMIN_ADDR",
        default_value = "127.0.0.1:9091"
    )]
    pub addr: SocketAddr,
    /// The URL other machines reach the admin endpoint at, written to the host document (`admin_url`); derived from `--admin-addr` when absent, which an address of every interface (0.0.0.0, ::) cannot be.
    #[arg(
        id = "agent_admin_url",
        long = "admin-url",
        env = "VISOR_ADMIN_URL",
        value_parser = url::parse_flag
    )]
    pub url: Option<String>,
    /// TLS: the certificate and key the endpoint presents, and the CA of the clients it requires.
    #[command(flatten)]
    pub tls: Option<AdminTls>,
    /// Serve in plain text on an address beyond loopback (instance output and metrics readable by anyone who reaches it).
    #[arg(
        id = "agent_admin_allow_plaintext",
        long = "admin-allow-plaintext",
        env = "VISOR_ADMIN_ALLOW_PLAINTEXT"
    )]
    pub allow_plaintext: bool,
}

impl AgentAdminConfig {
    /// Plain text on `addr`, with no URL given: for a loopback address.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            url: None,
            tls: None,
            allow_plaintext: false,
        }
    }

    /// The same with TLS.
    #[must_use]
    pub fn with_tls(mut self, tls: AdminTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The same with the URL others reach it at.
    #[must_use]
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Refuses settings the endpoint cannot be served with (before any
    /// file is read or address bound): plain text beyond loopback unless
    /// allowed, no usable URL, or a URL of the other scheme.
    pub fn validate(&self) -> Result<(), AgentAdminError> {
        let ip = self.addr.ip();
        if !ip.is_loopback() && self.tls.is_none() && !self.allow_plaintext {
            return Err(AgentAdminError::Plaintext { addr: self.addr });
        }
        match &self.url {
            None if ip.is_unspecified() => Err(AgentAdminError::NeedUrl { addr: self.addr }),
            None => Ok(()),
            Some(given) => {
                url::parse(given).map_err(AgentAdminError::Url)?;
                let tls = self.tls.is_some();
                match url::is_https(given) == tls {
                    true => Ok(()),
                    false => Err(AgentAdminError::UrlScheme {
                        url: given.clone(),
                        tls,
                    }),
                }
            }
        }
    }
}

/// Why the admin endpoint could not be served.
#[derive(Debug, thiserror::Error)]
pub enum AgentAdminError {
    /// Plain text on an address other machines reach, not allowed.
    #[error(
        "--admin-addr {addr} is reachable beyond this machine and the admin endpoint serves instance output: give --admin-cert and --admin-key to serve it with TLS, or --admin-allow-plaintext to serve it in plain text"
    )]
    Plaintext {
        /// The address.
        addr: SocketAddr,
    },
    /// An address of every interface, and no URL to write to the host document.
    #[error(
        "--admin-addr {addr} listens on every interface: give --admin-url, the URL other machines reach the admin endpoint at"
    )]
    NeedUrl {
        /// The address.
        addr: SocketAddr,
    },
    /// The URL given is not an admin URL.
    #[error("--admin-url")]
    Url(#[source] url::InvalidAdminUrl),
    /// The URL given has the other scheme than what is served.
    #[error(
        "--admin-url {url} does not match the endpoint, which serves {}",
        if *tls { "TLS (https://)" } else { "plain text (http://)" }
    )]
    UrlScheme {
        /// The URL.
        url: String,
        /// Whether the endpoint serves TLS.
        tls: bool,
    },
    /// The TLS files could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The address could not be bound.
    #[error("cannot listen on {addr} for the admin endpoint")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the admin endpoint failed")]
    Serve(#[source] std::io::Error),
}

impl AgentAdminError {
    /// Whether the settings themselves are wrong (a usage error, exit 2),
    /// rather than the machine refusing them.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Plaintext { .. } | Self::NeedUrl { .. } | Self::Url(_) | Self::UrlScheme { .. }
        )
    }
}

/// The agent's bound admin endpoint; `serve` runs it.
pub struct AgentAdmin {
    server: AdminServer,
    local_addr: SocketAddr,
    url: String,
    stop: CancellationToken,
}

impl AgentAdmin {
    /// Checks `config`, reads its TLS files and binds its address.
    /// `/metrics` renders `metrics`; `/logs` reads the instances under
    /// `logs_root` (`<exec_data_dir>/instances`); `/readyz` follows `ready`
    /// (the host is registered) and `/healthz` says `health` and `ready`.
    pub async fn bind(
        config: &AgentAdminConfig,
        metrics: prometheus::Registry,
        logs_root: PathBuf,
        ready: watch::Receiver<bool>,
        health: watch::Receiver<Health>,
    ) -> Result<Self, AgentAdminError> {
        config.validate()?;
        let acceptor = config.tls.as_ref().map(AdminTls::acceptor).transpose()?;
        let bind_error = |source| AgentAdminError::Bind {
            addr: config.addr,
            source,
        };
        let tcp = TcpListener::bind(config.addr).await.map_err(bind_error)?;
        let local_addr = tcp.local_addr().map_err(bind_error)?;
        let (listener, scheme) = match acceptor {
            Some(acceptor) => (
                Listener::Tls(TlsListener::new(tcp, acceptor).map_err(bind_error)?),
                "https",
            ),
            None => (Listener::Plain(tcp), "http"),
        };
        let url = config
            .url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{local_addr}"));
        let stop = CancellationToken::new();
        let endpoints = Endpoints {
            role: Role::Agent,
            metrics,
            ready,
            health,
        };
        let routes = logs::routes(logs_root, stop.clone());
        Ok(Self {
            server: AdminServer::new(listener, endpoints, routes),
            local_addr,
            url,
            stop,
        })
    }

    /// The URL to write to the host document (`admin_url`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled; followed log responses end then.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), AgentAdminError> {
        let stop = self.stop;
        let signal = async move {
            shutdown.cancelled().await;
            stop.cancel();
        };
        self.server
            .serve_until(signal)
            .await
            .map_err(AgentAdminError::Serve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("an address")
    }

    fn tls() -> AdminTls {
        AdminTls {
            cert: "/etc/visor/tls/admin.pem".into(),
            key: "/etc/visor/tls/admin-key.pem".into(),
            client_ca: None,
        }
    }

    /// A command that flattens the config beside the registry's flags, as the agent does.
    #[derive(Debug, clap::Parser)]
    struct Command {
        #[command(flatten)]
        registry: crate::RegistryConfig,
        #[command(flatten)]
        admin: AgentAdminConfig,
    }

    fn parse(args: &[&str]) -> Result<AgentAdminConfig, clap::Error> {
        use clap::Parser;
        Command::try_parse_from(std::iter::once("agent").chain(args.iter().copied()))
            .map(|command| command.admin)
    }

    #[test]
    fn the_flags_flatten_beside_the_registry_flags() {
        use clap::CommandFactory;
        Command::command().debug_assert();
        assert_eq!(
            parse(&[]).expect("defaults"),
            AgentAdminConfig::new(addr("127.0.0.1:9091"))
        );
        let given = parse(&[
            "--admin-addr=0.0.0.0:9443",
            "--admin-url=https://h1.example:9443/",
            "--admin-cert=/tls/admin.pem",
            "--admin-key=/tls/admin-key.pem",
            "--cert=/tls/etcd.pem",
            "--key=/tls/etcd-key.pem",
        ])
        .expect("parsed");
        assert_eq!(
            given,
            AgentAdminConfig::new(addr("0.0.0.0:9443"))
                .with_url("https://h1.example:9443")
                .with_tls(AdminTls {
                    cert: "/tls/admin.pem".into(),
                    key: "/tls/admin-key.pem".into(),
                    client_ca: None,
                })
        );
        for (args, mention) in [
            (&["--admin-cert=/a.pem"][..], "--admin-key"),
            (&["--admin-key=/a.pem"][..], "--admin-cert"),
            (&["--admin-client-ca=/ca.pem"][..], "--admin-cert"),
            (&["--admin-url=ftp://h"][..], "http:// or https://"),
        ] {
            let error = parse(args).expect_err("refused").to_string();
            assert!(error.contains(mention), "{args:?}: {error}");
        }
    }

    #[test]
    fn plain_text_beyond_loopback_needs_to_be_allowed() {
        assert!(
            AgentAdminConfig::new(addr("127.0.0.1:9091"))
                .validate()
                .is_ok()
        );
        assert!(AgentAdminConfig::new(addr("[::1]:9091")).validate().is_ok());
        let public = AgentAdminConfig::new(addr("10.0.0.1:9091"));
        let error = public.validate().expect_err("plain text beyond loopback");
        assert!(error.is_usage());
        assert!(
            error.to_string().contains("--admin-allow-plaintext"),
            "{error}"
        );
        assert!(public.clone().with_tls(tls()).validate().is_ok());
        let allowed = AgentAdminConfig {
            allow_plaintext: true,
            ..public
        };
        assert!(allowed.validate().is_ok());
    }

    #[test]
    fn every_interface_needs_a_url_of_the_scheme_served() {
        let any = AgentAdminConfig::new(addr("0.0.0.0:9091")).with_tls(tls());
        let error = any.validate().expect_err("no URL");
        assert!(error.to_string().contains("--admin-url"), "{error}");
        assert!(
            any.clone()
                .with_url("https://h1.example:9091")
                .validate()
                .is_ok()
        );
        let error = any
            .with_url("http://h1.example:9091")
            .validate()
            .expect_err("the other scheme");
        assert!(error.to_string().contains("serves TLS"), "{error}");
    }
}
