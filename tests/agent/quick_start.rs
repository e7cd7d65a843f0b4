//! The README's quick start, as a newcomer runs it, against the built
//! binaries: `visor up` (registry, controller and an agent for this
//! machine), the example app registered and scaled to 2, each instance
//! answering HTTP on its own port, `visor logs`, a relation between two
//! apps whose hooks run and publish settings, and a scale to 0 that leaves
//! no process behind. The commands are README.md's, in its order.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use visor_testkit::agent::free_port;
use visor_testkit::cli::{Run, visor_with_env};
use visor_testkit::examples::example;
use visor_testkit::path_without::PathWithout;
use visor_testkit::{eventually, procfs, within};

use super::support::SETTLE;

/// Bound on the whole quick start.
const LIMIT: Duration = Duration::from_secs(120);

/// `visor up`, killed (with what it runs) if the test fails.
struct Up {
    child: Option<Child>,
    agent_dir: PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for shim in procfs::processes_with_arg_under(&self.agent_dir) {
            for pid in procfs::session_members(shim) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// `visor <args>` against the quick start's registry.
async fn visor(endpoint: &str, args: &[&str]) -> Run {
    let args = args.iter().map(|a| (*a).to_owned()).collect();
    visor_with_env(
        args,
        &[("VISOR_ENDPOINTS", endpoint), ("RUST_LOG", "error")],
    )
    .await
}

/// The body of `GET /` on `127.0.0.1:<port>`.
async fn get(port: u16) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `visor -o json relation settings show hello-client <unit>`.
async fn settings_of(endpoint: &str, unit: &str) -> Run {
    let line = [
        "-o",
        "json",
        "relation",
        "settings",
        "show",
        "hello-client",
        unit,
    ];
    visor(endpoint, &line).await
}

/// The running instances of `app`, as `visor -o json instances` shows them.
async fn running(endpoint: &str, app: &str, count: usize) -> Vec<Value> {
    let what = format!("{count} running instances of {app}");
    eventually(SETTLE, &what, || async {
        let listed = visor(endpoint, &["-o", "json", "instances", "--app", app])
            .await
            .json();
        let running: Vec<Value> = listed
            .as_array()?
            .iter()
            .filter(|i| i["state"] == "running")
            .cloned()
            .collect();
        (running.len() == count).then_some(running)
    })
    .await
}

#[tokio::test]
async fn the_readme_quick_start_runs_the_example_app() {
    within(LIMIT, "the quick start", async {
        let dir = tempfile::Builder::new()
            .prefix("qs")
            .tempdir_in("/tmp")
            .expect("a dir");
        let port = free_port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let agent_dir = dir.path().join("agent");
        // The quick start needs no etcd: visor up serves its own registry.
        let path = PathWithout::new("etcd");
        let child = Command::new(assert_cmd::cargo::cargo_bin("visor"))
            .env("PATH", path.var())
            .env_remove("VISOR_ETCD_BIN")
            .args(["up", "--host", "quickstart", "--port", &port.to_string()])
            .args([
                "--admin-addr",
                "127.0.0.1:0",
                "--agent-admin-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("registry"))
            .arg("--agent-data-dir")
            .arg(&agent_dir)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn visor up");
        let mut up = Up {
            child: Some(child),
            agent_dir: agent_dir.clone(),
        };
        eventually(SETTLE, "visor up serves, with its host", || async {
            let hosts = visor(&endpoint, &["hosts"]).await;
            (hosts.code == Some(0) && hosts.stdout.contains("quickstart")).then_some(())
        })
        .await;

        let revision = format!("file://{}", repo().join("examples/hello").display());
        let web = example("hello_web").display().to_string();
        for line in [
            vec![
                "app",
                "register",
                "hello",
                "--repo-url",
                "https://example.com/hello.git",
                "--stack",
                "base",
            ],
            vec!["rev", "register", "hello", "v1", "--archive-url", &revision],
            vec![
                "proc",
                "register",
                "hello",
                "web",
                "--command",
                &web,
                "--ready-http",
                "/healthz",
                "--service",
                "hello",
            ],
        ] {
            visor(&endpoint, &line).await.ok();
        }
        // `--wait` returns once both run: the listing right after shows them.
        let scaled = visor(&endpoint, &["scale", "hello", "v1", "web=2", "--wait"]).await;
        assert_eq!(scaled.code, Some(0), "{}", scaled.context());
        assert_eq!(
            scaled.stderr.lines().last(),
            Some("done: 2/2 running"),
            "{}",
            scaled.context()
        );
        let listed = visor(&endpoint, &["-o", "json", "instances", "--app", "hello"])
            .await
            .json();
        let instances: Vec<Value> = listed
            .as_array()
            .expect("a listing")
            .iter()
            .filter(|i| i["state"] == "running")
            .cloned()
            .collect();
        assert_eq!(instances.len(), 2, "{listed}");
        for instance in &instances {
            let id = instance["id"].as_str().expect("an id");
            let port = instance["port"].as_u64().expect("a port") as u16;
            let body = get(port).await.expect("the instance answers");
            assert_eq!(
                body,
                format!("hello from hello v1 (web), instance {id} on port {port}\n")
            );
            let logs = eventually(SETTLE, "visor logs shows the request", || async {
                let run = visor(&endpoint, &["logs", id]).await;
                (run.code == Some(0) && run.stdout.contains("hello-web: GET /"))
                    .then_some(run.stdout)
            })
            .await;
            assert!(
                logs.contains(&format!("listening on 127.0.0.1:{port}")),
                "{logs}"
            );
        }

        for line in [
            vec![
                "app",
                "register",
                "client",
                "--repo-url",
                "https://example.com/client.git",
                "--stack",
                "base",
            ],
            vec![
                "rev",
                "register",
                "client",
                "v1",
                "--archive-url",
                &revision,
            ],
            vec!["proc", "register", "client", "web", "--command", &web],
            vec!["scale", "client", "v1", "web=1"],
            vec!["relation", "add", "hello", "client"],
        ] {
            visor(&endpoint, &line).await.ok();
        }
        let client = running(&endpoint, "client", 1).await.remove(0);
        let client_id = client["id"].as_str().expect("an id").to_owned();
        // The hooks ran: each unit published itself with relation-set in its
        // joined hook, and every hook was acknowledged.
        eventually(SETTLE, "the relation's hooks ran", || async {
            let settings = settings_of(&endpoint, &client_id).await;
            let published = settings.code == Some(0)
                && settings.json()["settings"]["unit"] == client_id.as_str();
            let hooks = visor(&endpoint, &["-o", "json", "hooks"]).await.json();
            (published && hooks.as_array().is_some_and(Vec::is_empty)).then_some(())
        })
        .await;
        for instance in &instances {
            let id = instance["id"].as_str().expect("an id");
            let settings = settings_of(&endpoint, id).await;
            assert_eq!(settings.json()["settings"]["unit"], id);
        }

        visor(&endpoint, &["scale", "hello", "v1", "web=0"])
            .await
            .ok();
        visor(&endpoint, &["scale", "client", "v1", "web=0"])
            .await
            .ok();
        eventually(SETTLE, "no process is left behind", || async {
            procfs::processes_with_arg_under(&agent_dir)
                .is_empty()
                .then_some(())
        })
        .await;
        let mut child = up.child.take().expect("visor up runs");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("SIGTERM");
        let status = eventually(SETTLE, "visor up exits on SIGTERM", || {
            let status = child.try_wait().expect("wait");
            async move { status }
        })
        .await;
        assert!(status.success(), "{status}");
    })
    .await;
}
