//! TLS (server and client certificates) and user/password auth against a
//! real etcd: the right settings connect, missing or wrong ones are refused
//! with errors that say why, and nothing is written by a refused client.

use std::path::Path;
use std::time::Duration;

use visor::Error;
use visor::registry::{LocalRegistry, LocalRegistryOptions, RegistryConfig, ServerTls};
use visor::{Visor, model};

use visor_testkit::pki::Pki;
use visor_testkit::{TestRegistry, within};

const LIMIT: Duration = Duration::from_secs(60);

fn app() -> model::App {
    model::App {
        repo_url: "git://x".into(),
        stack: model::Name::parse("stack", "base").expect("valid"),
        deploy_type: String::new(),
        created_at: chrono::Utc::now(),
    }
}

fn tls_config(etcd: &LocalRegistry, pki: &Pki, client_cert: bool) -> RegistryConfig {
    let mut config =
        RegistryConfig::new([etcd.endpoint()]).with_request_timeout(Duration::from_secs(3));
    config.connect_timeout = Duration::from_secs(3);
    config.ca_cert = Some(pki.path("ca.pem"));
    if client_cert {
        config.cert = Some(pki.path("client.pem"));
        config.key = Some(pki.path("client-key.pem"));
    }
    config
}

async fn start_tls(pki: &Pki) -> LocalRegistry {
    let tls = ServerTls {
        cert: pki.path("server.pem"),
        key: pki.path("server-key.pem"),
        client_ca: Some(pki.path("ca.pem")),
    };
    LocalRegistry::start_with(LocalRegistryOptions {
        tls: Some(tls),
        ..LocalRegistryOptions::default()
    })
    .await
    .expect("start etcd with TLS")
}

#[tokio::test]
async fn mutual_tls_connects_and_a_client_without_certificate_is_refused() {
    within(LIMIT, "a TLS handshake or etcd start hangs", async {
        let pki = Pki::generate();
        let etcd = start_tls(&pki).await;
        assert!(etcd.endpoint().starts_with("https://"));

        let visor = Visor::connect(&tls_config(&etcd, &pki, true))
            .await
            .expect("mutual TLS connects");
        visor
            .register_app("web", app())
            .await
            .expect("write over TLS");
        assert_eq!(
            visor
                .app("web")
                .await
                .expect("read over TLS")
                .value
                .repo_url,
            "git://x"
        );

        let refused = Visor::connect(&tls_config(&etcd, &pki, false)).await;
        match refused {
            Err(Error::Unavailable { endpoints, .. }) => assert_eq!(endpoints, etcd.endpoint()),
            other => panic!("a client without certificate must be refused, got {other:?}"),
        }
        let plain = RegistryConfig::new([etcd.endpoint().replace("https", "http")]);
        assert!(
            Visor::connect(&plain).await.is_err(),
            "plain text to a TLS port must fail"
        );
    })
    .await;
}

#[tokio::test]
async fn unreadable_certificate_files_are_a_config_error_naming_the_file() {
    within(LIMIT, "config validation hangs", async {
        let mut config = RegistryConfig::new(["https://127.0.0.1:1"]);
        config.ca_cert = Some(Path::new("/nonexistent/ca.pem").to_path_buf());
        match Visor::connect(&config).await {
            Err(error @ Error::ReadFile { .. }) => {
                assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn user_and_password_auth() {
    within(LIMIT, "enabling auth or connecting hangs", async {
        // The embedded registry has no auth.
        let t = TestRegistry::start_etcd().await;
        let mut raw = t.raw();
        raw.user_add("root", "s3cret", None)
            .await
            .expect("add root user");
        raw.user_grant_role("root", "root")
            .await
            .expect("grant root role");
        raw.auth_enable().await.expect("enable auth");

        let mut config = t.config();
        config.user = Some("root".into());
        config.password = Some("s3cret".into());
        let visor = Visor::connect(&config)
            .await
            .expect("right credentials connect");
        visor
            .register_app("web", app())
            .await
            .expect("authenticated write");

        config.password = Some("wrong".into());
        match Visor::connect(&config).await {
            Err(Error::Unauthorized { .. }) => {}
            other => panic!("a wrong password must be Unauthorized, got {other:?}"),
        }
        match Visor::connect(&t.config()).await {
            Err(Error::Unauthorized { .. }) => {}
            other => panic!("no credentials must be Unauthorized, got {other:?}"),
        }
    })
    .await;
}
