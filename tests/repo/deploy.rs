//! The deployment material is valid: the Prometheus alert rules load and
//! their unit tests pass under `promtool`, the scrape configuration loads,
//! and the Grafana dashboards are JSON with panels, the agent's showing
//! every metric an agent exports.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use visor::agent::AgentMetrics;

/// The metrics of the agent's relation hook runner, registered by it
/// rather than by [`AgentMetrics`].
const HOOK_METRICS: &[&str] = &[
    "visor_agent_hook_runs_total",
    "visor_agent_hook_duration_seconds",
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run_promtool(args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("promtool (installed by .ci/setup)")
}

fn promtool(args: &[&str]) {
    let output = run_promtool(args);
    assert!(
        output.status.success(),
        "promtool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn alert_rules_load_and_their_unit_tests_pass() {
    promtool(&["check", "rules", "deploy/prometheus/alerts.yml"]);
    promtool(&["test", "rules", "deploy/prometheus/alerts.test.yml"]);
}

#[test]
fn the_scrape_configuration_loads() {
    let path = "deploy/prometheus/scrape.yml";
    let text = std::fs::read_to_string(repo(path)).expect("read scrape.yml");
    for job in ["visor-controller", "visor-agent"] {
        assert!(
            text.contains(&format!("  - job_name: {job}\n")),
            "scrape.yml has the {job} job"
        );
    }
    // Syntax only: the TLS files it names live on the Prometheus server.
    let output = run_promtool(&["check", "config", "--syntax-only", path]);
    if output.status.success() {
        return;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Debian's promtool is built without Kubernetes discovery: check the
    // other jobs on their own.
    assert!(
        stderr.contains("field kubernetes_sd_configs not found"),
        "promtool check config {path}: {}{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    let without_kubernetes = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(without_kubernetes.path(), jobs_without_kubernetes(&text)).expect("written");
    let copy = without_kubernetes.path().to_str().expect("a UTF-8 path");
    promtool(&["check", "config", "--syntax-only", copy]);
}

/// `scrape.yml` without the jobs that use Kubernetes discovery: each job is
/// an item of `scrape_configs`, from its `  - job_name:` line to the next.
fn jobs_without_kubernetes(text: &str) -> String {
    let mut blocks = vec![String::new()];
    for line in text.split_inclusive('\n') {
        if line.starts_with("  - job_name:") {
            blocks.push(String::new());
        }
        blocks
            .last_mut()
            .expect("one block at least")
            .push_str(line);
    }
    blocks
        .into_iter()
        .filter(|block| !block.contains("kubernetes_sd_configs:"))
        .collect()
}

fn dashboard(name: &str) -> serde_json::Value {
    let path = repo(&format!("deploy/grafana/{name}"));
    let text = std::fs::read_to_string(&path).expect("read dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|panels| !panels.is_empty()),
        "{name} has panels"
    );
    dashboard
}

/// The PromQL of every panel of `dashboard`.
fn expressions(dashboard: &serde_json::Value) -> Vec<String> {
    let panels = dashboard["panels"].as_array().into_iter().flatten();
    panels
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_dashboards_are_valid_json() {
    dashboard("visor-controller.json");
    dashboard("visor-agent.json");
}

#[test]
fn the_agent_dashboard_shows_every_agent_metric() {
    let expressions = expressions(&dashboard("visor-agent.json"));
    let registry = prometheus::Registry::new();
    AgentMetrics::new(&registry).expect("agent metrics register");
    let registered: Vec<String> = registry
        .gather()
        .iter()
        .map(|family| family.name().to_owned())
        .collect();
    assert!(!registered.is_empty(), "the agent registers metrics");
    let hooks = HOOK_METRICS.iter().map(|name| (*name).to_owned());
    for name in registered.into_iter().chain(hooks) {
        assert!(
            expressions.iter().any(|expr| expr.contains(&name)),
            "no panel of deploy/grafana/visor-agent.json shows {name}"
        );
    }
}
