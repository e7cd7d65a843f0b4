//! Bad input never stops the agent: an archive that 404s or does not
//! exist, a command that does not exist, an exhausted port range, a fixed
//! port taken twice, and a corrupt record each end as a reason on the
//! instance, while the agent keeps running the rest.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use visor::model::InstanceState;
use visor_testkit::agent::AgentProcess;
use visor_testkit::controller::ControllerProcess;
use visor_testkit::{TestRegistry, eventually, within};

use super::support::{LIMIT, SETTLE, deploy, file_url, instances_of, proc, revision_dir, running};

/// The reason of `app`'s first failed instance.
async fn failure_of(t: &TestRegistry, app: &str) -> String {
    let what = format!("an instance of {app} fails");
    eventually(SETTLE, &what, || async {
        instances_of(t, app)
            .await
            .into_iter()
            .find(|i| i.value.state == InstanceState::Failed)
            .and_then(|i| i.value.reason)
    })
    .await
}

/// A loopback HTTP server answering 404 to everything.
async fn not_found_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        }
    });
    format!("http://{addr}/app-v1.tar.gz")
}

#[tokio::test]
async fn bad_archives_and_commands_fail_their_instance_with_a_reason_and_the_agent_runs_on() {
    within(LIMIT, "bad input", async {
        let t = TestRegistry::start().await;
        let rev = revision_dir(&[("bin/web", "exec sleep 1000")]);
        let _controller = ControllerProcess::start(&t, "c1");
        let agent = AgentProcess::start(&t, "h1");
        deploy(
            &t,
            "missing",
            "file:///nonexistent/app-v1",
            proc("./bin/web"),
            1,
        )
        .await;
        deploy(
            &t,
            "notfound",
            &not_found_server().await,
            proc("./bin/web"),
            1,
        )
        .await;
        deploy(
            &t,
            "nocommand",
            &file_url(rev.path()),
            proc("./bin/nope"),
            1,
        )
        .await;
        let missing = failure_of(&t, "missing").await;
        assert!(
            missing.contains("artifact.fetch failed") && missing.contains("/nonexistent/app-v1"),
            "{missing}"
        );
        let notfound = failure_of(&t, "notfound").await;
        assert!(
            notfound.contains("artifact.fetch failed") && notfound.contains("404"),
            "{notfound}"
        );
        let nocommand = failure_of(&t, "nocommand").await;
        assert!(
            nocommand.contains("instance.start failed") && nocommand.contains("bin/nope"),
            "{nocommand}"
        );
        deploy(&t, "good", &file_url(rev.path()), proc("./bin/web"), 1).await;
        running(&t, "good", Some("h1"), 1).await;
        // A failed instance is replaced, so a supervisor for another try at
        // `nocommand` may come and go; none of them ever runs a workload.
        assert_eq!(
            agent.workloads().len(),
            1,
            "only the good instance's workload runs"
        );
    })
    .await;
}

#[tokio::test]
async fn an_exhausted_port_range_and_a_fixed_port_taken_twice_are_reasons() {
    within(LIMIT, "ports", async {
        let t = TestRegistry::start().await;
        let rev = revision_dir(&[("bin/web", "exec sleep 1000")]);
        let _controller = ControllerProcess::start(&t, "c1");
        let port = visor_testkit::agent::free_port();
        let range = format!("{port}-{port}");
        let _agent = AgentProcess::start_with(&t, "h1", &["--port-range", &range]);
        deploy(&t, "web", &file_url(rev.path()), proc("./bin/web"), 2).await;
        running(&t, "web", Some("h1"), 1).await;
        let exhausted = failure_of(&t, "web").await;
        assert_eq!(
            exhausted,
            format!("no free port in {range}: all 1 are taken")
        );
        let fixed = visor_testkit::agent::free_port();
        let mut spec = proc("./bin/web");
        spec.port = Some(fixed);
        deploy(&t, "fixed", &file_url(rev.path()), spec, 2).await;
        let up = running(&t, "fixed", Some("h1"), 1).await.remove(0);
        assert_eq!(up.value.port, Some(fixed));
        let taken = failure_of(&t, "fixed").await;
        assert!(
            taken.starts_with(&format!("port {fixed} is already taken by instance ")),
            "{taken}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_corrupt_record_is_reported_its_process_stopped_and_the_instance_replaced() {
    within(LIMIT, "corrupt record", async {
        let t = TestRegistry::start().await;
        let rev = revision_dir(&[("bin/web", "exec sleep 1000")]);
        let _controller = ControllerProcess::start(&t, "c1");
        let mut agent = AgentProcess::start(&t, "h1");
        deploy(&t, "web", &file_url(rev.path()), proc("./bin/web"), 1).await;
        let before = running(&t, "web", Some("h1"), 1).await.remove(0);
        agent.kill();
        let record = agent
            .data_dir()
            .join(format!("instances/{}.json", before.name()));
        std::fs::write(&record, b"{\"instance\": tru").expect("corrupt the record");
        agent.restart();
        let gone = super::support::in_state(&t, before.name(), InstanceState::Failed).await;
        let reason = gone.reason.unwrap_or_default();
        assert!(reason.contains("record"), "{reason}");
        let replacement = running(&t, "web", Some("h1"), 1).await.remove(0);
        assert_ne!(replacement.name(), before.name());
        eventually(SETTLE, "only the replacement runs", || async {
            (agent.supervisors().len() == 1).then_some(())
        })
        .await;
        assert!(
            record.with_extension("json.corrupt").exists(),
            "the corrupt record is kept aside"
        );
    })
    .await;
}
