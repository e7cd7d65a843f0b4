//! `visor up`, the README's run command: it serves a registry that the other
//! commands use (the embedded one, with no etcd binary to be found, or etcd
//! with `--etcd`), runs the controller (which takes the lead), keeps its
//! data across restarts, and on SIGTERM stops with its registry (no process
//! left listening).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use visor_testkit::path_without::PathWithout;
use visor_testkit::{eventually, within};

const LIMIT: Duration = Duration::from_secs(90);

fn visor() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("visor"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn up(data_dir: &std::path::Path, port: u16, extra: &[&str], path: &PathWithout) -> Child {
    visor()
        .env("PATH", path.var())
        .env_remove("VISOR_ETCD_BIN")
        .args([
            "up",
            "--admin-addr",
            "127.0.0.1:0",
            "--agent-admin-addr",
            "127.0.0.1:0",
            "--host",
            "up-host",
            "--port",
            &port.to_string(),
            "--agent-data-dir",
        ])
        .arg(data_dir.with_file_name("agent"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn visor up")
}

fn cli(port: u16, args: &[&str]) -> std::process::Output {
    visor()
        .args([
            "--endpoints",
            &format!("http://127.0.0.1:{port}"),
            "--connect-timeout",
            "1s",
        ])
        .args(args)
        .output()
        .expect("run visor")
}

async fn wait_serving(port: u16) {
    eventually(
        Duration::from_secs(30),
        "visor up serves the registry",
        || async move { cli(port, &["app", "list"]).status.success().then_some(()) },
    )
    .await;
}

async fn terminate(mut child: Child, data_dir: &std::path::Path) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let exited = eventually(Duration::from_secs(20), "visor up exits on SIGTERM", || {
        let exited = child.try_wait().expect("wait for visor up");
        async move { exited }
    })
    .await;
    assert!(
        exited.success(),
        "visor up exits cleanly on SIGTERM: {exited}"
    );
    // What served the registry (the etcd child, with --etcd) is gone with it.
    // Asked of the processes, not of the port: another test may take a
    // port the moment it is free.
    assert_eq!(
        visor_testkit::procfs::processes_naming(data_dir),
        Vec::<u32>::new(),
        "nothing visor up started with its data dir outlives it"
    );
}

/// Starts `visor up` (with `extra` flags, and `path`), registers an app,
/// waits for the controller to lead, stops it, starts it again and finds
/// the app.
async fn serves_keeps_data_and_stops(extra: &[&str], path: &PathWithout) {
    within(LIMIT, "visor up did not start or stop", async {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("registry");
        let port = free_port();

        let first = up(&data, port, extra, path);
        wait_serving(port).await;
        let register = cli(
            port,
            &[
                "app",
                "register",
                "web",
                "--repo-url",
                "git://x",
                "--stack",
                "base",
            ],
        );
        assert!(
            register.status.success(),
            "{}",
            String::from_utf8_lossy(&register.stderr)
        );
        eventually(
            Duration::from_secs(20),
            "the embedded controller leads",
            || async move {
                let status = cli(port, &["-o", "json", "status"]);
                let status: serde_json::Value = serde_json::from_slice(&status.stdout).ok()?;
                (!status["leader"].is_null()).then_some(())
            },
        )
        .await;
        terminate(first, &data).await;

        let second = up(&data, port, extra, path);
        wait_serving(port).await;
        let list = cli(port, &["-o", "json", "app", "list"]);
        let apps: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
        assert_eq!(
            apps[0]["name"], "web",
            "the app survives a restart of visor up"
        );
        terminate(second, &data).await;
    })
    .await;
}

#[tokio::test]
async fn up_serves_the_cli_keeps_data_and_stops_on_sigterm_without_an_etcd_binary() {
    let path = PathWithout::new("etcd");
    assert!(!path.finds("etcd"), "no etcd to be found");
    serves_keeps_data_and_stops(&[], &path).await;
}

#[tokio::test]
async fn up_with_etcd_serves_the_cli_keeps_data_and_stops_on_sigterm() {
    serves_keeps_data_and_stops(&["--etcd"], &PathWithout::new("no-such-program")).await;
}

#[tokio::test]
async fn a_data_dir_of_the_other_registry_is_refused() {
    within(LIMIT, "visor up did not start or stop", async {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("registry");
        std::fs::create_dir_all(data.join("member")).expect("an etcd data dir");
        let refused = visor()
            .args(["up", "--port", &free_port().to_string(), "--data-dir"])
            .arg(&data)
            .output()
            .expect("run visor up");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("holds etcd's data") && stderr.contains("--etcd"),
            "{stderr}"
        );
        assert!(
            !data.join("registry.redb").exists(),
            "nothing is written into a refused data dir"
        );
    })
    .await;
}
