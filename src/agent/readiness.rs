//! Readiness checks: an instance counts as running once its port accepts a
//! TCP connection, or `GET <path>` on it answers 2xx, within the check's
//! timeout. Checks go to loopback only.
//!
//! Invariant: a check is retried every [`INTERVAL`] until it passes or its
//! timeout passes; the failure says what was last seen.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use visor_controllers::{Readiness, ReadinessCheck};

/// How often a failing check is tried again.
pub const INTERVAL: Duration = Duration::from_millis(50);
/// How long one attempt may take.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(2);

/// Waits until `readiness` passes on `port`; the reason it did not, at its timeout.
pub async fn wait_ready(readiness: &Readiness, port: Option<u16>) -> Result<(), String> {
    let Some(port) = port else {
        return Err("a readiness check needs a port, and the instance has none".to_owned());
    };
    let timeout = Duration::from_secs(u64::from(readiness.timeout_secs));
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let client = reqwest::Client::builder()
        .timeout(ATTEMPT_LIMIT)
        .no_proxy()
        .build()
        .map_err(|error| format!("cannot build an HTTP client: {error}"))?;
    loop {
        let attempt = match &readiness.check {
            ReadinessCheck::Tcp => tcp(addr).await,
            ReadinessCheck::Http { path } => http(&client, addr, path).await,
        };
        let last = match attempt {
            Ok(()) => return Ok(()),
            Err(last) => last,
        };
        if Instant::now() + INTERVAL >= deadline {
            let what = match &readiness.check {
                ReadinessCheck::Tcp => format!("tcp {addr}"),
                ReadinessCheck::Http { path } => format!("GET http://{addr}{path}"),
            };
            return Err(format!(
                "readiness check {what} did not pass within {}s: {last}",
                readiness.timeout_secs
            ));
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

async fn tcp(addr: SocketAddr) -> Result<(), String> {
    match tokio::time::timeout(ATTEMPT_LIMIT, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("connect timed out".to_owned()),
    }
}

async fn http(client: &reqwest::Client, addr: SocketAddr, path: &str) -> Result<(), String> {
    let response = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .map_err(|error| error.to_string())?;
    match response.status() {
        status if status.is_success() => Ok(()),
        status => Err(format!("it answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn check(check: ReadinessCheck) -> Readiness {
        Readiness {
            check,
            timeout_secs: 1,
        }
    }

    #[tokio::test]
    async fn tcp_and_http_checks_pass_on_a_listener_and_fail_naming_what_they_saw() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let status = match request.starts_with("GET /ok ") {
                    true => "200 OK",
                    false => "503 Service Unavailable",
                };
                let reply =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = stream.write_all(reply.as_bytes()).await;
            }
        });
        wait_ready(&check(ReadinessCheck::Tcp), Some(port))
            .await
            .expect("tcp passes");
        let ok = ReadinessCheck::Http { path: "/ok".into() };
        wait_ready(&check(ok), Some(port))
            .await
            .expect("http 200 passes");
        let bad = ReadinessCheck::Http {
            path: "/bad".into(),
        };
        let error = wait_ready(&check(bad), Some(port))
            .await
            .expect_err("503 fails");
        assert!(
            error.contains("did not pass within 1s: it answered 503"),
            "{error}"
        );
        let error = wait_ready(&check(ReadinessCheck::Tcp), None)
            .await
            .expect_err("no port");
        assert!(error.contains("needs a port"), "{error}");
    }
}
