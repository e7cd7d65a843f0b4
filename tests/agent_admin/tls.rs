//! The admin endpoint with TLS (a generated CA and certificates): served
//! to clients that trust the CA and present a client certificate when it
//! requires one, `visor logs` with `--admin-ca-cert` and its client
//! certificate, and refusals for clients that do not.

use reqwest::StatusCode;
use visor::admin::{AdminTls, AgentAdminConfig};
use visor::model::Host;
use visor_testkit::cli::Cli;
use visor_testkit::{TestRegistry, fixtures, within};

use crate::support::{LIMIT, Pki, Stream, TestAgent, get_with};

async fn tls_agent(pki: &Pki, client_ca: bool) -> TestAgent {
    let tls = AdminTls {
        cert: pki.path("server.pem"),
        key: pki.path("server-key.pem"),
        client_ca: client_ca.then(|| pki.path("ca.pem")),
    };
    let config = AgentAdminConfig::new("127.0.0.1:0".parse().expect("an address")).with_tls(tls);
    TestAgent::start_with(config).await
}

fn client(pki: &Pki, with_certificate: bool) -> reqwest::Client {
    let ca = std::fs::read(pki.path("ca.pem")).expect("CA read");
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA parsed"));
    if with_certificate {
        let mut pem = std::fs::read(pki.path("client.pem")).expect("cert read");
        pem.extend(std::fs::read(pki.path("client-key.pem")).expect("key read"));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    builder.build().expect("client built")
}

#[tokio::test]
async fn the_endpoint_serves_tls_to_clients_that_trust_its_ca() {
    within(LIMIT, "a TLS handshake hangs", async {
        let pki = Pki::generate();
        let agent = tls_agent(&pki, false).await;
        assert!(agent.url.starts_with("https://127.0.0.1:"), "{}", agent.url);
        agent.instance("i-1").append(Stream::Stdout, "secret\n");
        let (status, body) = get_with(&client(&pki, false), &agent.at("/logs/i-1")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "secret\n"));
        let (status, _) = get_with(&client(&pki, false), &agent.at("/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        // A client that does not trust the CA, and one speaking plain text, get nothing.
        let untrusting = reqwest::Client::new();
        assert!(untrusting.get(agent.at("/logs/i-1")).send().await.is_err());
        let plain = agent.at("/logs/i-1").replacen("https://", "http://", 1);
        assert!(
            reqwest::get(&plain).await.is_err(),
            "plain text to a TLS port"
        );
    })
    .await;
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate() {
    within(LIMIT, "a TLS handshake hangs", async {
        let pki = Pki::generate();
        let agent = tls_agent(&pki, true).await;
        agent.instance("i-1").append(Stream::Stdout, "secret\n");
        let (status, body) = get_with(&client(&pki, true), &agent.at("/logs/i-1")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "secret\n"));
        let refused = client(&pki, false).get(agent.at("/logs/i-1")).send().await;
        match refused {
            Err(_) => {}
            // With TLS 1.3 the refusal may come after the client's handshake.
            Ok(response) => assert!(
                response.text().await.is_err(),
                "served without a certificate"
            ),
        }
    })
    .await;
}

#[tokio::test]
async fn visor_logs_uses_the_admin_ca_and_client_certificate() {
    within(LIMIT, "visor logs, a TLS handshake or etcd hangs", async {
        let t = TestRegistry::start().await;
        let pki = Pki::generate();
        let agent = tls_agent(&pki, true).await;
        let spec = Host {
            admin_url: Some(agent.url.clone()),
            ..fixtures::host("127.0.0.1")
        };
        let _host = t
            .visor
            .register_host("h1", spec, std::time::Duration::from_secs(60))
            .await
            .expect("host registered");
        let id = t
            .visor
            .create_instance(fixtures::instance(Some("h1")))
            .await
            .expect("instance created")
            .name()
            .to_owned();
        agent.instance(&id).append(Stream::Stdout, "over tls\n");
        let cli = Cli::new(&t);
        let tls = format!(
            "--admin-ca-cert {} --admin-client-cert {} --admin-client-key {}",
            pki.arg("ca.pem"),
            pki.arg("client.pem"),
            pki.arg("client-key.pem")
        );
        let run = cli.run(&format!("logs {id} {tls}")).await;
        assert_eq!(run.ok(), "over tls\n");
        // Without the CA the agent's certificate is not trusted.
        let message = cli.run(&format!("logs {id}")).await.error(5);
        assert!(
            message.contains("cannot reach the admin endpoint of host h1"),
            "{message}"
        );
        // A CA file that is not there is named.
        let message = cli
            .run(&format!("logs {id} --admin-ca-cert /nonexistent/ca.pem"))
            .await
            .error(1);
        assert!(
            message.contains("cannot read the admin CA certificate /nonexistent/ca.pem"),
            "{message}"
        );
    })
    .await;
}
