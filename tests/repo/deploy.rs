//! The deployment material is valid: the Prometheus alert rules load and
//! their unit tests pass under `promtool`, and the Grafana dashboard is JSON.

use std::path::Path;
use std::process::Command;

fn promtool(args: &[&str]) {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("promtool (installed by .ci/setup)");
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
fn the_dashboard_is_valid_json() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/visor-controller.json");
    let text = std::fs::read_to_string(&path).expect("read dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|panels| !panels.is_empty()),
        "it has panels"
    );
}
