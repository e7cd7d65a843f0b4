//! A closed stdout ends a command quietly: `visor app list | true`,
//! `visor watch | head -1` and the like exit 0 with nothing on stderr, for
//! tables and JSON, listings and streams (`watch`, `notifications --follow`).
//! Run as the built binary against a real etcd, its stdout a real pipe whose
//! read end is closed.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use visor::model::{Name, NotificationKind};
use visor::registry::{Posting, PostingSubject};

use visor_testkit::cli::{INHERITED_VARS, LIMIT, RUN_LIMIT, words};
use visor_testkit::fixtures::seed_app;
use visor_testkit::{TestRegistry, within};

/// How long to wait for a line, or an exit, before making another event.
const POLL: Duration = Duration::from_millis(200);

/// `visor --endpoints <endpoint> <line>`, stderr captured, killed if dropped.
fn visor_command(endpoint: &str, line: &str) -> Command {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("visor"));
    for var in INHERITED_VARS {
        command.env_remove(var);
    }
    command
        .arg("--endpoints")
        .arg(endpoint)
        .args(words(line))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The exit status and stderr of `child`, which must end within [`RUN_LIMIT`].
async fn finish(mut child: Child, line: &str) -> (ExitStatus, String) {
    let mut stderr = child.stderr.take().expect("stderr is piped");
    within(RUN_LIMIT, &format!("`visor {line}` does not end"), async {
        let mut text = String::new();
        stderr
            .read_to_string(&mut text)
            .await
            .expect("read visor's stderr");
        (child.wait().await.expect("wait for visor"), text)
    })
    .await
}

fn assert_quiet_success(line: &str, status: ExitStatus, stderr: &str) {
    assert!(
        status.success(),
        "`visor {line}` into a closed pipe: {status}, stderr: {stderr}"
    );
    assert_eq!(stderr, "", "`visor {line}` into a closed pipe");
}

#[tokio::test]
async fn printing_into_a_closed_pipe_ends_quietly() {
    within(
        LIMIT,
        "etcd start or visor into a closed pipe hangs",
        async {
            let t = TestRegistry::start().await;
            seed_app(&t, "web").await;
            t.visor
                .set_scale("web", "v1", "http", 1)
                .await
                .expect("scale");
            let posting = Posting {
                kind: NotificationKind::ServiceDown,
                subject: PostingSubject::Service {
                    service: Name::parse("service", "db").expect("valid"),
                    endpoint: Some("u1".to_owned()),
                    hostname: Some("u1.example".to_owned()),
                    tracked: None,
                    endpoint_key: None,
                    status: None,
                },
                reason: "its registration expired".to_owned(),
            };
            t.visor
                .post_notifications(&[posting])
                .await
                .expect("post a notification");
            let endpoint = t.server.endpoint();

            for line in [
                "app list",
                "-o json app list",
                "app show web",
                "scale web v1",
                "-o json scale web v1",
                "hosts",
                "status",
                "-o json status",
                "notifications",
                "notifications --follow",
                "-o json notifications --follow",
            ] {
                let (reader, writer) = std::io::pipe().expect("a pipe");
                // No reader from the start: the command's first write fails.
                drop(reader);
                let child = visor_command(&endpoint, line)
                    .stdout(writer)
                    .spawn()
                    .expect("spawn visor");
                let (status, stderr) = finish(child, line).await;
                assert_quiet_success(line, status, &stderr);
            }
        },
    )
    .await;
}

#[tokio::test]
async fn watch_ends_quietly_when_its_reader_goes_away() {
    within(LIMIT, "etcd start or visor watch hangs", async {
        let t = TestRegistry::start().await;
        seed_app(&t, "web").await;
        let endpoint = t.server.endpoint();
        let mut writes = 0;
        let mut write_an_event = || {
            writes += 1;
            let key = format!("K{writes}");
            let visor = t.visor.clone();
            async move { visor.set_env("web", &key, "1").await.expect("set env") }
        };

        for line in ["watch", "-o json watch"] {
            let mut child = visor_command(&endpoint, line)
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn visor watch");
            let stdout = child.stdout.take().expect("stdout is piped");
            let mut lines = BufReader::new(stdout).lines();
            // `head -1`: events until one line arrives (the watch may not be in
            // place yet), then the reader goes away.
            loop {
                write_an_event().await;
                // `next_line` is cancel safe: a read that times out loses nothing.
                if let Ok(read) = tokio::time::timeout(POLL, lines.next_line()).await {
                    let first = read.expect("read visor's stdout");
                    assert!(first.is_some(), "`visor {line}` ended before an event");
                    break;
                }
            }
            drop(lines);
            // The next event's line finds the pipe closed.
            loop {
                write_an_event().await;
                if let Ok(exited) = tokio::time::timeout(POLL, child.wait()).await {
                    exited.expect("wait for visor watch");
                    break;
                }
            }
            let (status, stderr) = finish(child, line).await;
            assert_quiet_success(line, status, &stderr);
        }
    })
    .await;
}
