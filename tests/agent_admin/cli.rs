//! `visor logs`, the built binary, against the test kit's etcd: it finds
//! the instance, its host and the host's `admin_url`, and prints what an
//! `AgentAdmin` in this process serves; `-f` streams until killed; and
//! every way of not getting there is a clear error with its exit code.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use visor::model::Host;
use visor::registry::HostRegistration;
use visor_testkit::cli::{INHERITED_VARS, visor_binary, words};
use visor_testkit::{TestRegistry, fixtures, within};

use crate::support::{LIMIT, OUTPUT_WAIT, Stream, TestAgent};

/// Long enough that no host registration expires during a test.
const HOST_TTL: Duration = Duration::from_secs(60);

/// Registers `host` with `admin_url` and creates an instance on it; the
/// instance id and the registration (the host lives while it does).
async fn instance_on(
    t: &TestRegistry,
    host: &str,
    admin_url: Option<String>,
) -> (String, HostRegistration) {
    let spec = Host {
        admin_url,
        ..fixtures::host("127.0.0.1")
    };
    let registration = t
        .visor
        .register_host(host, spec, HOST_TTL)
        .await
        .expect("host registered");
    let instance = t
        .visor
        .create_instance(fixtures::instance(Some(host)))
        .await
        .expect("instance created");
    (instance.name().to_owned(), registration)
}

/// `visor --endpoints <etcd> <line>`.
async fn visor(t: &TestRegistry, line: &str) -> visor_testkit::cli::Run {
    visor_testkit::cli::Cli::new(t).run(line).await
}

#[tokio::test]
async fn visor_logs_prints_the_tail_of_either_stream() {
    within(LIMIT, "visor logs or etcd hangs", async {
        let t = TestRegistry::start().await;
        let agent = TestAgent::start().await;
        let (id, _host) = instance_on(&t, "h1", Some(agent.url.clone())).await;
        let files = agent.instance(&id);
        files.write_rotated(Stream::Stdout, 1, "one\ntwo\n");
        files.append(Stream::Stdout, "three\n");
        files.append(Stream::Stderr, "warning\n");
        let run = visor(&t, &format!("logs {id} --tail 2")).await;
        assert_eq!(run.ok(), "two\nthree\n");
        let run = visor(&t, &format!("logs {id}")).await;
        assert_eq!(run.ok(), "one\ntwo\nthree\n");
        let run = visor(&t, &format!("logs {id} --stderr")).await;
        assert_eq!(run.ok(), "warning\n");
    })
    .await;
}

#[tokio::test]
async fn visor_logs_follow_streams_what_is_written_next() {
    within(LIMIT, "visor logs -f or etcd hangs", async {
        let t = TestRegistry::start().await;
        let agent = TestAgent::start().await;
        let (id, _host) = instance_on(&t, "h1", Some(agent.url.clone())).await;
        let files = agent.instance(&id);
        files.append(Stream::Stdout, "old\nstarted\n");
        let mut command = tokio::process::Command::new(visor_binary());
        for var in INHERITED_VARS {
            command.env_remove(var);
        }
        let mut child = command
            .args(words(&format!(
                "--endpoints {} logs {id} -f --tail 1",
                t.server.endpoint()
            )))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("visor logs -f started");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut next_line = async || {
            within(
                OUTPUT_WAIT,
                "visor logs -f prints no next line",
                lines.next_line(),
            )
            .await
            .expect("stdout is readable")
            .expect("visor logs -f is still running")
        };
        assert_eq!(next_line().await, "started");
        files.append(Stream::Stdout, "appended\n");
        assert_eq!(next_line().await, "appended");
        files.rotate(Stream::Stdout);
        files.append(Stream::Stdout, "after rotation\n");
        assert_eq!(next_line().await, "after rotation");
        child.kill().await.expect("visor logs -f killed");
    })
    .await;
}

#[tokio::test]
async fn visor_logs_says_why_it_cannot_print() {
    within(LIMIT, "visor logs or etcd hangs", async {
        let t = TestRegistry::start().await;
        let agent = TestAgent::start().await;

        let unknown = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let message = visor(&t, &format!("logs {unknown}")).await.error(3);
        assert!(message.contains(unknown), "{message}");

        let placed_nowhere = t
            .visor
            .create_instance(fixtures::instance(None))
            .await
            .expect("instance created");
        let message = visor(&t, &format!("logs {}", placed_nowhere.name()))
            .await
            .error(1);
        assert!(message.contains("is pending and on no host"), "{message}");

        let (no_admin, _h2) = instance_on(&t, "h2", None).await;
        let message = visor(&t, &format!("logs {no_admin}")).await.error(1);
        assert!(message.contains("host h2 of instance"), "{message}");
        assert!(message.contains("has no admin_url"), "{message}");

        let down = t
            .visor
            .create_instance(fixtures::instance(Some("h3")))
            .await
            .expect("instance created");
        let message = visor(&t, &format!("logs {}", down.name())).await.error(5);
        assert!(message.contains("host h3 of instance"), "{message}");
        assert!(message.contains("is down"), "{message}");

        let closed = visor_testkit::cli::CLOSED_PORT.to_owned();
        let (unreachable, _h4) = instance_on(&t, "h4", Some(closed)).await;
        let message = visor(&t, &format!("logs {unreachable}")).await.error(5);
        assert!(
            message
                .contains("cannot reach the admin endpoint of host h4 at http://127.0.0.1:1/logs/"),
            "{message}"
        );

        // The host's agent has no directory for it (never started there).
        let (elsewhere, _h5) = instance_on(&t, "h5", Some(agent.url.clone())).await;
        let message = visor(&t, &format!("logs {elsewhere} -f")).await.error(3);
        assert!(
            message.contains(&format!(
                "answered 404 Not Found: no instance {elsewhere} on this host"
            )),
            "{message}"
        );

        let message = visor(&t, "logs Not_An_Id")
            .await
            .usage_error("invalid instance name");
        assert!(message.contains("Not_An_Id"), "{message}");
    })
    .await;
}
