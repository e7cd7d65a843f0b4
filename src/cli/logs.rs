//! `visor logs <instance>`: an instance's output, read from the agent of
//! its host at the admin URL the host's registration carries, so it works
//! from any machine that reaches the registry and that URL.
//!
//! The output is printed as the agent sends it, byte for byte (`-o` does
//! not apply). Exit codes: 3 for an unknown instance (or one its host does
//! not have), 5 when the host is down or its admin endpoint cannot be
//! reached or breaks off, 1 for an instance without a host or a host that
//! serves no admin endpoint.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use visor_controllers::{InstanceState, Name};

use super::output::Output;
use super::{CliError, args};
use crate::admin::{InvalidAdminUrl, logs_url};
use crate::provider::exec::output::{OutputStream, ReadOptions};
use crate::registry::{Error, RegistryConfig, Visor};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The instance id.
    #[arg(value_parser = args::name("instance"))]
    instance: Name,
    /// Keep printing output as it is written, until Ctrl-C or the agent ends the stream.
    #[arg(short, long)]
    follow: bool,
    /// Print the instance's stderr instead of its stdout.
    #[arg(long)]
    stderr: bool,
    /// Only the last N lines of what the host keeps (default: all of it).
    #[arg(long, value_name = "N")]
    tail: Option<u64>,
    #[command(flatten)]
    tls: AdminClientTls,
}

/// How `visor logs` talks TLS to an `https://` admin URL.
#[derive(Debug, Args)]
struct AdminClientTls {
    /// PEM CA bundle that signed the agents' admin certificates; the system's roots when absent.
    #[arg(long, env = "VISOR_ADMIN_CA_CERT")]
    admin_ca_cert: Option<PathBuf>,
    /// PEM client certificate for agents that require one (`--admin-client-ca`); needs `--admin-client-key`.
    #[arg(long, env = "VISOR_ADMIN_CLIENT_CERT", requires = "admin_client_key")]
    admin_client_cert: Option<PathBuf>,
    /// PEM private key of `--admin-client-cert`.
    #[arg(long, env = "VISOR_ADMIN_CLIENT_KEY", requires = "admin_client_cert")]
    admin_client_key: Option<PathBuf>,
}

/// Why an instance's output could not be printed.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    /// The instance is not placed on a host.
    #[error("instance {instance} is {state} and on no host: it has no output")]
    NoHost {
        /// The instance.
        instance: Name,
        /// Its state.
        state: InstanceState,
    },
    /// The instance's host has no live registration.
    #[error(
        "host {host} of instance {instance} is down (no live registration): its output cannot be read"
    )]
    HostDown {
        /// The instance.
        instance: Name,
        /// Its host.
        host: Name,
    },
    /// The host's registration names no admin endpoint.
    #[error("host {host} of instance {instance} has no admin_url: its agent serves no output")]
    NoAdminUrl {
        /// The instance.
        instance: Name,
        /// Its host.
        host: Name,
    },
    /// The host's admin URL is malformed.
    #[error("host {host}")]
    BadAdminUrl {
        /// The host.
        host: Name,
        /// What is wrong with it.
        #[source]
        source: InvalidAdminUrl,
    },
    /// A TLS file could not be read.
    #[error("cannot read the {what} {}", path.display())]
    ReadTls {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file does not hold what it should.
    #[error("the {what} {} is not valid PEM", path.display())]
    ParseTls {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    /// The admin endpoint did not answer.
    #[error("cannot reach the admin endpoint of host {host} at {url}")]
    Unreachable {
        /// The host.
        host: Name,
        /// The URL asked.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The admin endpoint answered with an error.
    #[error("the admin endpoint of host {host} answered {status}: {message}")]
    Refused {
        /// The host.
        host: Name,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// What it said.
        message: String,
    },
    /// The output stream broke off.
    #[error("the output from host {host} broke off")]
    Broken {
        /// The host.
        host: Name,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
}

impl LogsError {
    /// The exit code (see the module doc).
    pub(super) fn exit_code(&self) -> u8 {
        match self {
            Self::Refused { status, .. } if *status == reqwest::StatusCode::NOT_FOUND => 3,
            Self::HostDown { .. } | Self::Unreachable { .. } | Self::Broken { .. } => 5,
            _ => 1,
        }
    }
}

/// Finds the instance's host and its admin URL, and prints what the agent sends.
pub async fn logs(
    visor: &Visor,
    registry: &RegistryConfig,
    args: LogsArgs,
    out: &Output,
) -> Result<(), CliError> {
    let instance = visor.instance(args.instance.as_str()).await?.value;
    let Some(host) = instance.host else {
        return Err(LogsError::NoHost {
            instance: args.instance,
            state: instance.state,
        }
        .into());
    };
    let admin_url = match visor.host(host.as_str()).await {
        Ok(registration) => registration.value.admin_url,
        Err(Error::NotFound(_)) => {
            return Err(LogsError::HostDown {
                instance: args.instance,
                host,
            }
            .into());
        }
        Err(error) => return Err(error.into()),
    };
    let Some(admin_url) = admin_url else {
        return Err(LogsError::NoAdminUrl {
            instance: args.instance,
            host,
        }
        .into());
    };
    let stream = match args.stderr {
        true => OutputStream::Stderr,
        false => OutputStream::Stdout,
    };
    let options = ReadOptions {
        tail: args.tail,
        follow: args.follow,
    };
    let url = logs_url(&admin_url, &args.instance, stream, options).map_err(|source| {
        LogsError::BadAdminUrl {
            host: host.clone(),
            source,
        }
    })?;
    // A followed stream may be quiet for as long as the instance is: only
    // a one-off read has a deadline between chunks.
    let read_timeout = (!args.follow).then_some(registry.request_timeout);
    let client = client(&args.tls, registry.connect_timeout, read_timeout)?;
    // reqwest's errors print their URL; ours already say it.
    let mut response =
        client
            .get(url.clone())
            .send()
            .await
            .map_err(|source| LogsError::Unreachable {
                host: host.clone(),
                url: url.to_string(),
                source: source.without_url(),
            })?;
    let status = response.status();
    if !status.is_success() {
        let message = response.text().await.unwrap_or_default();
        return Err(LogsError::Refused {
            host,
            status,
            message: message.trim().to_owned(),
        }
        .into());
    }
    loop {
        let chunk = response.chunk().await.map_err(|source| LogsError::Broken {
            host: host.clone(),
            source: source.without_url(),
        })?;
        match chunk {
            Some(bytes) => out.bytes(&bytes)?,
            None => return Ok(()),
        }
    }
}

/// An HTTP client trusting `tls`'s CA (the system's roots without one) and
/// presenting its client certificate, if any.
fn client(
    tls: &AdminClientTls,
    connect_timeout: Duration,
    read_timeout: Option<Duration>,
) -> Result<reqwest::Client, LogsError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .user_agent(concat!("visor/", env!("CARGO_PKG_VERSION")));
    if let Some(timeout) = read_timeout {
        builder = builder.read_timeout(timeout);
    }
    if let Some(path) = &tls.admin_ca_cert {
        let what = "admin CA certificate";
        let certs = reqwest::Certificate::from_pem_bundle(&read(path, what)?)
            .map_err(|source| parse_error(what, path, source))?;
        builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.admin_client_cert, &tls.admin_client_key) {
        let mut pem = read(cert, "admin client certificate")?;
        pem.push(b'\n');
        pem.extend(read(key, "admin client key")?);
        let identity = reqwest::Identity::from_pem(&pem)
            .map_err(|source| parse_error("admin client certificate and key", cert, source))?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(LogsError::Client)
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, LogsError> {
    std::fs::read(path).map_err(|source| LogsError::ReadTls {
        what,
        path: path.to_owned(),
        source,
    })
}

fn parse_error(what: &'static str, path: &Path, source: reqwest::Error) -> LogsError {
    LogsError::ParseTls {
        what,
        path: path.to_owned(),
        source,
    }
}
