//! `/metrics`, `/healthz` and `/readyz` of the agent: every agent metric
//! rendered (and accepted by `promtool`), health and readiness following
//! the agent's standing; and the refusal to serve plain text beyond
//! loopback.

use reqwest::StatusCode;
use visor::admin::{AgentAdmin, AgentAdminConfig, AgentAdminError};
use visor_testkit::within;

use crate::support::{LIMIT, TestAgent, get};

/// Every metric the agent registers (the relation hook runner's are its own).
const AGENT_METRICS: &[&str] = &[
    "visor_agent_instances",
    "visor_agent_starts_total",
    "visor_agent_stops_total",
    "visor_agent_restarts_total",
    "visor_agent_ticket_seconds",
    "visor_agent_registry_reachable",
    "visor_agent_host_registered",
    "visor_agent_disconnected_seconds",
];

#[tokio::test]
async fn metrics_render_every_agent_metric_and_pass_promtool() {
    within(LIMIT, "/metrics or promtool hangs", async {
        let agent = TestAgent::start().await;
        let (status, body) = get(&agent.at("/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        for name in AGENT_METRICS {
            assert!(
                body.contains(&format!("# TYPE {name} ")),
                "{name} in:\n{body}"
            );
        }
        for series in [
            r#"visor_agent_instances{state="restarting"} 0"#,
            r#"visor_agent_starts_total{result="failed"} 0"#,
            r#"visor_agent_ticket_seconds_count{op="stop"} 0"#,
            "visor_agent_registry_reachable 0",
        ] {
            assert!(body.contains(series), "{series} in:\n{body}");
        }
        visor_testkit::promtool::check_metrics(&body);
    })
    .await;
}

#[tokio::test]
async fn health_and_readiness_follow_the_agents_standing() {
    within(LIMIT, "/healthz or /readyz hangs", async {
        let agent = TestAgent::start().await;
        assert_eq!(
            get(&agent.at("/healthz")).await,
            (
                StatusCode::OK,
                "ok\nregistry: unreachable\nregistered: no\n".to_owned()
            )
        );
        assert_eq!(
            get(&agent.at("/readyz")).await,
            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned())
        );
        agent.metrics.set_registry_reachable(true);
        agent.metrics.set_registered(true);
        assert_eq!(
            get(&agent.at("/healthz")).await,
            (
                StatusCode::OK,
                "ok\nregistry: reachable\nregistered: yes\n".to_owned()
            )
        );
        assert_eq!(
            get(&agent.at("/readyz")).await,
            (StatusCode::OK, "ready\n".to_owned())
        );
        let (_, metrics) = get(&agent.at("/metrics")).await;
        assert!(
            metrics.contains("visor_agent_host_registered 1"),
            "{metrics}"
        );
        agent.metrics.set_registered(false);
        assert_eq!(
            get(&agent.at("/readyz")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    })
    .await;
}

#[tokio::test]
async fn plain_text_beyond_loopback_is_refused_unless_allowed() {
    within(LIMIT, "binding hangs", async {
        let registry = prometheus::Registry::new();
        let (_ready_tx, ready) = tokio::sync::watch::channel(false);
        let (_health_tx, health) = tokio::sync::watch::channel(Default::default());
        let instances = tempfile::tempdir().expect("a temporary directory");
        let every_interface = AgentAdminConfig::new("0.0.0.0:0".parse().expect("an address"));
        let bind = |config: AgentAdminConfig| {
            let (registry, ready, health) = (registry.clone(), ready.clone(), health.clone());
            let root = instances.path().to_owned();
            async move { AgentAdmin::bind(&config, registry, root, ready, health).await }
        };
        match bind(every_interface.clone()).await {
            Err(error @ AgentAdminError::Plaintext { .. }) => {
                assert!(
                    error.to_string().contains("--admin-allow-plaintext"),
                    "{error}"
                )
            }
            Err(other) => panic!("expected a refusal of plain text, got {other}"),
            Ok(_) => panic!("expected a refusal of plain text, got a server"),
        }
        let allowed = AgentAdminConfig {
            allow_plaintext: true,
            ..every_interface
        }
        .with_url("http://agent.example:9091");
        let admin = bind(allowed).await.expect("allowed explicitly");
        assert_eq!(admin.url(), "http://agent.example:9091");
    })
    .await;
}
