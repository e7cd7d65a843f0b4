//! `visor provider list` and `visor provider call`, as the built binary,
//! against providers served by the test. Neither needs the registry: every
//! run here points the binary at a closed port, which a command that
//! connected would report (exit 5).

use std::path::Path;

use serde_json::{Value, json};
use visor::provider::Provider;
use visor_testkit::cli::{CLOSED_PORT, Run, visor_with_env};
use visor_testkit::within;

use crate::support::{LIMIT, Running, SocketDir};

/// `visor --endpoints <closed> <args…>`.
async fn visor(args: &[&str]) -> Run {
    let mut all = vec!["--endpoints".to_owned(), CLOSED_PORT.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    visor_with_env(all, &[]).await
}

fn dir_arg(dir: &SocketDir) -> String {
    dir.path().display().to_string()
}

async fn echo(dir: &SocketDir, name: &str, priority: u32) -> Running {
    let answer = name.to_owned();
    Running::start(
        Provider::new(dir.config(name, priority))
            .task("echo", move |args: Value| {
                let answer = answer.clone();
                async move { Ok::<_, String>(json!({"from": answer, "args": args})) }
            })
            .task("fail", |_: Value| async { Err::<(), _>("it broke") }),
    )
    .await
}

fn socket(dir: &Path, task: &str, name: &str) -> String {
    dir.join(task)
        .join(format!("{name}.sock"))
        .display()
        .to_string()
}

#[tokio::test]
async fn list_shows_every_task_in_routing_order_with_its_state() {
    within(LIMIT, "visor provider list hangs", async {
        let dir = SocketDir::new();
        let _a = echo(&dir, "nine", 9).await;
        let _b = echo(&dir, "hundred", 100).await;
        let _c = echo(&dir, "fifty", 50).await;
        // A crashed provider's leftovers.
        let stale = dir.socket("echo", 70, "crashed");
        drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
        std::fs::write(stale.with_extension("lock"), b"").expect("lock");

        let run = visor(&["provider", "list", "--socket-dir", &dir_arg(&dir)]).await;
        let rows = run.table();
        let expected: Vec<Vec<String>> = [
            ("echo", "100", "hundred", "live"),
            ("echo", "70", "crashed", "stale"),
            ("echo", "50", "fifty", "live"),
            ("echo", "9", "nine", "live"),
            ("fail", "100", "hundred", "live"),
            ("fail", "50", "fifty", "live"),
            ("fail", "9", "nine", "live"),
        ]
        .iter()
        .map(|(task, priority, name, state)| {
            vec![
                (*task).to_owned(),
                (*priority).to_owned(),
                (*name).to_owned(),
                (*state).to_owned(),
                socket(dir.path(), task, &format!("{priority}-{name}")),
            ]
        })
        .collect();
        assert_eq!(
            rows[0],
            ["TASK", "PRIORITY", "PROVIDER", "STATE", "SOCKET"],
            "{}",
            run.context()
        );
        assert_eq!(rows[1..], expected[..], "{}", run.context());

        let json = visor(&[
            "-o",
            "json",
            "provider",
            "list",
            "echo",
            "--socket-dir",
            &dir_arg(&dir),
        ])
        .await
        .json();
        assert_eq!(
            json[0],
            json!({"task": "echo", "priority": 100, "provider": "hundred", "state": "live",
                   "socket": socket(dir.path(), "echo", "100-hundred")})
        );
        assert_eq!(json.as_array().map(Vec::len), Some(4));

        // The socket directory from the environment; an absent one lists nothing.
        let env = visor_with_env(
            vec![
                "--endpoints".into(),
                CLOSED_PORT.into(),
                "-o".into(),
                "json".into(),
                "provider".into(),
                "list".into(),
            ],
            &[("VISOR_PROVIDER_SOCKET_DIR", &dir_arg(&dir))],
        )
        .await
        .json();
        assert_eq!(env.as_array().map(Vec::len), Some(7));
        let empty = visor(&[
            "-o",
            "json",
            "provider",
            "list",
            "--socket-dir",
            "/nonexistent/providers",
        ])
        .await;
        assert_eq!(empty.json(), json!([]));
    })
    .await;
}

#[tokio::test]
async fn call_prints_the_response_of_the_best_provider() {
    within(LIMIT, "visor provider call hangs", async {
        let dir = SocketDir::new();
        let _low = echo(&dir, "low", 10).await;
        let _high = echo(&dir, "high", 90).await;
        let run = visor(&[
            "-o",
            "json",
            "provider",
            "call",
            "echo",
            "--args",
            r#"{"n": 1}"#,
            "--socket-dir",
            &dir_arg(&dir),
        ])
        .await;
        let mut printed = run.json();
        let id = printed["id"].take();
        assert!(
            id.as_str().is_some_and(|id| !id.is_empty()),
            "{}",
            run.context()
        );
        assert_eq!(
            printed,
            json!({"task": "echo", "provider": "high", "priority": 90, "id": null,
                   "result": {"from": "high", "args": {"n": 1}}, "stream_url": null})
        );
        let table = visor(&["provider", "call", "echo", "--socket-dir", &dir_arg(&dir)]).await;
        let rows = table.table();
        assert_eq!(
            rows[0],
            ["TASK", "PROVIDER", "PRIORITY", "RESULT"],
            "{}",
            table.context()
        );
        assert_eq!(rows[1][..3], ["echo", "high", "90"], "{}", table.context());
        assert!(
            !dir.path()
                .join("response")
                .read_dir()
                .expect("response dir")
                .any(|e| e
                    .expect("entry")
                    .path()
                    .extension()
                    .is_some_and(|ext| ext == "sock")),
            "the CLI's response hook is removed when it exits"
        );
    })
    .await;
}

#[tokio::test]
async fn call_failures_exit_with_their_codes() {
    within(LIMIT, "visor provider call hangs", async {
        let dir = SocketDir::new();
        let _p = echo(&dir, "p", 50).await;
        let failed = visor(&["provider", "call", "fail", "--socket-dir", &dir_arg(&dir)]).await;
        let error = failed.error(1);
        assert!(
            error.contains("task fail failed at provider 50-p: it broke"),
            "{}",
            failed.context()
        );

        let none = visor(&["provider", "call", "absent", "--socket-dir", &dir_arg(&dir)]).await;
        let error = none.error(3);
        assert!(
            error.contains("no provider offers task \"absent\""),
            "{}",
            none.context()
        );
        assert!(!dir.path().join("absent").exists());

        let stale = dir.socket("dead", 50, "gone");
        std::fs::create_dir_all(stale.parent().expect("dir")).expect("dir");
        drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
        std::fs::write(stale.with_extension("lock"), b"").expect("lock");
        let unacknowledged =
            visor(&["provider", "call", "dead", "--socket-dir", &dir_arg(&dir)]).await;
        let error = unacknowledged.error(5);
        assert!(
            error.contains("50-gone: stale socket"),
            "{}",
            unacknowledged.context()
        );

        let bad = visor(&[
            "provider",
            "call",
            "echo",
            "--args",
            "{nope",
            "--socket-dir",
            &dir_arg(&dir),
        ])
        .await;
        bad.usage_error("--args");
    })
    .await;
}
