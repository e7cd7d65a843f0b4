//! Checking a `/metrics` body as Prometheus would read it: `promtool check
//! metrics` (installed by `.ci/setup`), which refuses malformed exposition
//! and metric names that break its conventions.

use std::io::Write;
use std::process::{Command, Stdio};

/// Fails the test, with promtool's words, unless `body` passes
/// `promtool check metrics`.
pub fn check_metrics(body: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (installed by .ci/setup)");
    promtool
        .stdin
        .take()
        .expect("piped")
        .write_all(body.as_bytes())
        .expect("written to promtool");
    let output = promtool.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
