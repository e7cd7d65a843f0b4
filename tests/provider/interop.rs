//! Wire compatibility with peers in another language: the Python provider and
//! caller of `docs/providers.md` (standard library only), taken from the page
//! itself so that the page is what is tested.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use visor::provider::{Liveness, Provider};
use visor_testkit::{eventually, within};

use crate::support::{LIMIT, Running, SocketDir};

/// The code block after `<!-- interop: <name> -->` in docs/providers.md.
fn doc_block(name: &str) -> String {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/providers.md");
    let doc = std::fs::read_to_string(&doc_path).expect("read docs/providers.md");
    let marker = format!("<!-- interop: {name} -->");
    let after = doc
        .split_once(&marker)
        .unwrap_or_else(|| panic!("docs/providers.md has no {marker}"))
        .1;
    let body = after
        .trim_start()
        .strip_prefix("```python\n")
        .unwrap_or_else(|| panic!("{marker} is not followed by a python block"));
    let end = body.find("\n```").expect("the python block ends");
    body[..end].to_owned()
}

/// Writes the doc's `name` block to a file beside the sockets.
fn script(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, doc_block(name)).expect("write the script");
    path
}

/// The doc's Python provider serving `greet` at `priority`, once it says it serves.
async fn python_provider(scripts: &tempfile::TempDir, sockets: &SocketDir, priority: u32) -> Child {
    let mut child = Command::new("python3")
        .arg(script(scripts, "provider.py"))
        .arg(sockets.path())
        .arg(priority.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run python3 (installed by .ci/setup)");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = within(
        Duration::from_secs(10),
        "the Python provider never says it serves",
        lines.next_line(),
    )
    .await
    .expect("read its stdout");
    assert_eq!(
        first.as_deref(),
        Some("serving"),
        "the Python provider did not start"
    );
    child
}

#[tokio::test]
async fn the_framework_routes_to_the_python_provider_and_past_it_once_dead() {
    within(LIMIT, "the Python provider or a call hangs", async {
        let sockets = SocketDir::new();
        let scripts = tempfile::tempdir().expect("tempdir");
        let mut python = python_provider(&scripts, &sockets, 100).await;
        let _visor = Running::start(Provider::new(sockets.config("visor", 50)).task(
            "greet",
            |args: Value| async move {
                Ok::<_, String>(json!({"greeting": "from visor", "args": args}))
            },
        ))
        .await;
        let caller = sockets.caller().await;
        let candidates = caller.candidates("greet").expect("list");
        assert_eq!(candidates[0].to_string(), "100-python");
        assert_eq!(
            candidates[0].liveness,
            Liveness::Live,
            "the Python provider holds its lock"
        );

        let reply = caller
            .call("greet", json!({"name": "visor"}))
            .await
            .expect("call");
        assert_eq!(reply.provider.to_string(), "100-python");
        assert_eq!(
            reply.response.into_result(),
            Ok(json!({"greeting": "hello, visor"}))
        );

        // The Python provider refuses these args in its ack: the next one takes them.
        let reply = caller
            .call("greet", json!({"nobody": true}))
            .await
            .expect("call");
        assert_eq!(reply.provider.to_string(), "50-visor");

        // Killed, it leaves a stale socket, passed over without dialling.
        python.kill().await.expect("kill the Python provider");
        let caller_ref = &caller;
        eventually(
            Duration::from_secs(5),
            "the dead provider's lock is released",
            || async move {
                let candidates = caller_ref.candidates("greet").expect("list");
                (candidates[0].liveness == Liveness::Stale).then_some(())
            },
        )
        .await;
        let reply = caller
            .call("greet", json!({"name": "again"}))
            .await
            .expect("call");
        assert_eq!(reply.provider.to_string(), "50-visor");
    })
    .await;
}

#[tokio::test]
async fn the_python_caller_gets_an_ack_and_a_response_from_a_visor_provider() {
    within(LIMIT, "the Python caller or the provider hangs", async {
        let sockets = SocketDir::new();
        let scripts = tempfile::tempdir().expect("tempdir");
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let _visor = Running::start(Provider::new(sockets.config("visor", 50)).task(
            "echo",
            move |args: Value| {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { Ok::<_, String>(json!({"echo": args})) }
            },
        ))
        .await;
        let output = Command::new("python3")
            .arg(script(&scripts, "caller.py"))
            .arg(sockets.path())
            .arg("echo")
            .arg(r#"{"x": 1}"#)
            .kill_on_drop(true)
            .output()
            .await
            .expect("run python3 (installed by .ci/setup)");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "the Python caller failed: {stderr}"
        );
        let printed: Value =
            serde_json::from_slice(&output.stdout).expect("the caller prints JSON");
        let id = printed["response"]["id"].clone();
        assert_eq!(printed["provider"], json!("50-visor.sock"));
        assert_eq!(printed["ack"], json!({"id": id, "error": ""}));
        assert_eq!(
            printed["response"],
            json!({"id": id, "result": {"echo": {"x": 1}}, "stream_url": null, "error": ""})
        );
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    })
    .await;
}
