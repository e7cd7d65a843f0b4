//! Tickets to running processes and back: the environment and ports an
//! instance gets, a scale to zero that leaves no process, restarts of a
//! killed workload, the restart budget, a stop of a workload that ignores
//! SIGTERM, endpoints, draining, and a second agent for a taken host.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use rustix::process::{Pid, Signal};
use visor::model::{
    InstanceState, NotificationKind, ProcService, Readiness, ReadinessCheck, RestartPolicy,
};
use visor::registry::EventKind;
use visor_testkit::agent::AgentProcess;
use visor_testkit::cli::visor_with_env;
use visor_testkit::controller::ControllerProcess;
use visor_testkit::wait::holds_for;
use visor_testkit::{TestRegistry, eventually, procfs, within};

use super::support::{
    LIMIT, SETTLE, deploy, file_url, in_state, instances_of, proc, revision_dir, running,
};

/// Only errors on stderr, so that a refusal is its one line.
const QUIET: &[(&str, &str)] = &[("RUST_LOG", "error")];

fn kill(pid: u32) {
    let pid = Pid::from_raw(i32::try_from(pid).expect("a pid")).expect("a pid");
    let _ = rustix::process::kill_process(pid, Signal::KILL);
}

#[tokio::test]
async fn instances_run_with_their_env_and_own_ports_and_a_scale_to_zero_leaves_no_process() {
    within(LIMIT, "instances start and stop", async {
        let t = TestRegistry::start().await;
        let out = tempfile::tempdir().expect("an output dir");
        let rev = revision_dir(&[(
            "bin/web",
            r#"echo "$VISOR_INSTANCE $VISOR_APP $VISOR_REV $VISOR_PROC $VISOR_HOST $PORT $GREETING $(pwd)" > "$OUT/$VISOR_INSTANCE"
exec sleep 1000"#,
        )]);
        let _controller = ControllerProcess::start(&t, "c1");
        let agent = AgentProcess::start(&t, "h1");
        t.visor.register_app("web", visor_testkit::fixtures::app("https://example.com/web.git")).await.expect("app");
        t.visor
            .set_envs("web", &[("GREETING", "hi"), ("OUT", &out.path().display().to_string())])
            .await
            .expect("env");
        t.visor.register_rev("web", "v1", visor_testkit::fixtures::revision(&file_url(rev.path()))).await.expect("rev");
        t.visor.register_proc("web", "web", proc("./bin/web")).await.expect("proc");
        t.visor.set_scales("web", "v1", &[("web", 2)]).await.expect("scale");

        let up = running(&t, "web", Some("h1"), 2).await;
        let ports: BTreeSet<u16> = up.iter().filter_map(|i| i.value.port).collect();
        assert_eq!(ports.len(), 2, "each instance has its own port: {ports:?}");
        for instance in &up {
            let file = out.path().join(instance.name());
            let seen = eventually(SETTLE, "the workload wrote its env", || async {
                std::fs::read_to_string(&file).ok().filter(|s| s.ends_with('\n'))
            })
            .await;
            let fields: Vec<&str> = seen.split_whitespace().collect();
            let port = instance.value.port.expect("a port").to_string();
            assert_eq!(&fields[..7], [instance.name(), "web", "v1", "web", "h1", &port, "hi"]);
            assert!(fields[7].ends_with("/artifacts/web/v1"), "runs in the unpacked revision: {seen}");
        }
        assert_eq!(agent.workloads().len(), 2);

        t.visor.set_scales("web", "v1", &[("web", 0)]).await.expect("scale to 0");
        for instance in &up {
            let exited = in_state(&t, instance.name(), InstanceState::Exited).await;
            assert_eq!(exited.reason.as_deref(), Some("stopped"));
        }
        eventually(SETTLE, "no process is left", || async {
            agent.supervisors().is_empty().then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_killed_workload_restarts_in_place_and_one_that_always_exits_fails_and_is_replaced() {
    within(LIMIT, "supervision", async {
        let t = TestRegistry::start().await;
        let rev = revision_dir(&[("bin/web", "exec sleep 1000"), ("bin/crash", "exit 3")]);
        let _controller = ControllerProcess::start(&t, "c1");
        let agent = AgentProcess::start_with(&t, "h1", &["--max-restarts", "2"]);
        deploy(&t, "web", &file_url(rev.path()), proc("./bin/web"), 1).await;
        let first = running(&t, "web", None, 1).await.remove(0);
        let pid = eventually(SETTLE, "one workload", || async {
            let pids = agent.workloads();
            (pids.len() == 1).then(|| pids[0])
        })
        .await;
        kill(pid);
        eventually(
            SETTLE,
            "the instance counts a restart and runs again",
            || async {
                let instance = t.visor.instance(first.name()).await.ok()?;
                let pids = agent.workloads();
                (instance.value.restarts == 1
                    && instance.value.state == InstanceState::Running
                    && pids.len() == 1
                    && pids[0] != pid)
                    .then_some(())
            },
        )
        .await;

        let restarts = visor_testkit::controller::admin_get(agent.admin, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        assert!(
            restarts
                .lines()
                .any(|line| line == "visor_agent_restarts_total 1"),
            "the agent counts the restart: {restarts}"
        );

        deploy(&t, "crash", &file_url(rev.path()), proc("./bin/crash"), 1).await;
        let failed = eventually(
            SETTLE,
            "the crashing instance fails after its budget",
            || async {
                instances_of(&t, "crash")
                    .await
                    .into_iter()
                    .find(|i| i.value.state == InstanceState::Failed)
            },
        )
        .await;
        assert_eq!(failed.value.restarts, 2);
        let reason = failed.value.reason.clone().unwrap_or_default();
        assert!(
            reason.contains("exited with code 3; restarted 2 times"),
            "{reason}"
        );
        eventually(
            SETTLE,
            "the controller replaces the failed instance",
            || async {
                instances_of(&t, "crash")
                    .await
                    .iter()
                    .any(|i| i.name() != failed.name())
                    .then_some(())
            },
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_clean_exit_ends_an_on_failure_instance_without_a_restart() {
    within(LIMIT, "clean exit", async {
        let t = TestRegistry::start().await;
        let rev = revision_dir(&[("bin/once", "exit 0")]);
        let _controller = ControllerProcess::start(&t, "c1");
        let _agent = AgentProcess::start(&t, "h1");
        let mut spec = proc("./bin/once");
        spec.restart = RestartPolicy::OnFailure;
        deploy(&t, "job", &file_url(rev.path()), spec, 1).await;
        let exited = eventually(SETTLE, "the instance exits", || async {
            instances_of(&t, "job")
                .await
                .into_iter()
                .find(|i| i.value.state == InstanceState::Exited)
        })
        .await;
        assert_eq!(exited.value.restarts, 0);
        assert_eq!(exited.value.reason.as_deref(), Some("exited with code 0"));
    })
    .await;
}

#[tokio::test]
async fn a_stop_kills_a_workload_that_ignores_sigterm_and_every_child_it_forked() {
    within(LIMIT, "stubborn stop", async {
        let t = TestRegistry::start().await;
        let rev = revision_dir(&[(
            "bin/stubborn",
            "trap '' TERM\nsleep 1000 &\nsleep 1000 &\nwhile true; do sleep 1; done",
        )]);
        let _controller = ControllerProcess::start(&t, "c1");
        let agent = AgentProcess::start(&t, "h1");
        deploy(&t, "web", &file_url(rev.path()), proc("./bin/stubborn"), 1).await;
        let instance = running(&t, "web", None, 1).await.remove(0);
        let pids = eventually(SETTLE, "the workload and its two children", || async {
            let pids = agent.workloads();
            (pids.len() >= 3).then_some(pids)
        })
        .await;
        t.visor
            .set_scales("web", "v1", &[("web", 0)])
            .await
            .expect("scale to 0");
        in_state(&t, instance.name(), InstanceState::Exited).await;
        for pid in pids {
            assert!(!procfs::is_running(pid), "process {pid} survived the stop");
        }
    })
    .await;
}

#[tokio::test]
async fn the_endpoint_of_a_killed_instance_gives_one_service_down() {
    within(LIMIT, "endpoint death", async {
        let t = TestRegistry::start().await;
        let rev = revision_dir(&[("bin/web", "exec sleep 1000")]);
        let _controller = ControllerProcess::start(&t, "c1");
        let agent = AgentProcess::start(&t, "h1");
        let mut spec = proc("./bin/web");
        spec.service = Some(ProcService {
            name: visor_testkit::fixtures::name("websvc"),
            schemes: vec!["http".into()],
        });
        deploy(&t, "web", &file_url(rev.path()), spec, 1).await;
        let instance = running(&t, "web", None, 1).await.remove(0);
        let port = instance.value.port.expect("a port").to_string();
        let endpoint = eventually(SETTLE, "the instance's endpoint is live", || async {
            let service = visor::discovery::get(&t.visor, "websvc").await.ok()?;
            service
                .all()
                .iter()
                .find(|e| e.value.ports.get("http") == Some(&port))
                .cloned()
        })
        .await;
        assert_eq!(
            endpoint.value.instance.as_ref().map(|n| n.as_str()),
            Some(instance.name())
        );
        let pid = agent.workloads()[0];
        kill(pid);
        let downs = || async {
            let listed = t.visor.notifications(0).await.expect("notifications").items;
            listed
                .into_iter()
                .filter(|n| n.value.kind == NotificationKind::ServiceDown)
                .count()
        };
        eventually(SETTLE, "one service-down", || async {
            (downs().await == 1).then_some(())
        })
        .await;
        holds_for(Duration::from_secs(3), "no second service-down", || async {
            downs().await == 1
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_drained_host_hands_its_instances_to_another_before_it_leaves() {
    within(LIMIT, "drain", async {
        let t = TestRegistry::start().await;
        let rev = revision_dir(&[("bin/web", "exec sleep 1000")]);
        let _controller = ControllerProcess::start(&t, "c1");
        let mut h1 = AgentProcess::start(&t, "h1");
        deploy(&t, "web", &file_url(rev.path()), proc("./bin/web"), 2).await;
        running(&t, "web", Some("h1"), 2).await;
        let from = t
            .visor
            .registry()
            .etcd()
            .kv_client()
            .get("/", None)
            .await
            .expect("a read")
            .header()
            .map_or(0, |h| h.revision());
        let h2 = AgentProcess::start(&t, "h2");
        let status = h1.terminate(SETTLE).await;
        assert!(
            status.success(),
            "the agent exits cleanly after draining: {status}"
        );
        // Replay what happened: both replacements ran on h2 before h1 left.
        let mut events = t.visor.watch_events(from + 1).await.expect("events");
        let mut started_on_h2 = 0;
        loop {
            let event = within(SETTLE, "h1 goes down", events.next())
                .await
                .expect("an event")
                .expect("no error");
            match event.kind {
                EventKind::InstanceStarted {
                    host: Some(host), ..
                } if host == "h2" => started_on_h2 += 1,
                EventKind::HostDown { host } if host == "h1" => break,
                _ => {}
            }
        }
        assert_eq!(started_on_h2, 2, "both instances ran on h2 before h1 left");
        assert!(h1.supervisors().is_empty(), "h1 left nothing running");
        assert_eq!(h2.workloads().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_second_agent_for_a_live_host_is_refused() {
    within(LIMIT, "second agent", async {
        let t = TestRegistry::start().await;
        let first = AgentProcess::start(&t, "h1");
        eventually(SETTLE, "h1 registered", || async {
            t.visor.host("h1").await.ok()
        })
        .await;
        let other = tempfile::tempdir().expect("another data dir");
        let message = refused(&t, &other.path().display().to_string()).await;
        assert!(
            message.contains("host h1 is registered by another live agent"),
            "{message}"
        );
        let message = refused(&t, &first.data_dir().display().to_string()).await;
        assert!(
            message.contains("is in use by another running agent"),
            "{message}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_instance_whose_readiness_check_never_passes_fails_and_its_process_is_stopped() {
    within(LIMIT, "readiness", async {
        let t = TestRegistry::start().await;
        let rev = revision_dir(&[("bin/deaf", "exec sleep 1000")]);
        let _controller = ControllerProcess::start(&t, "c1");
        let _agent = AgentProcess::start(&t, "h1");
        let mut spec = proc("./bin/deaf");
        spec.readiness = Some(visor::model::Readiness {
            check: visor::model::ReadinessCheck::Tcp,
            timeout_secs: 1,
        });
        deploy(&t, "deaf", &file_url(rev.path()), spec, 1).await;
        let failed = eventually(SETTLE, "the instance fails its readiness check", || async {
            instances_of(&t, "deaf")
                .await
                .into_iter()
                .find(|i| i.value.state == InstanceState::Failed)
        })
        .await;
        let reason = failed.value.reason.unwrap_or_default();
        assert!(
            reason.starts_with("readiness check tcp 127.0.0.1:")
                && reason.contains("did not pass within 1s"),
            "{reason}"
        );
        assert!(failed.value.port.is_none(), "never reported running");
    })
    .await;
}

/// The one-line error of `visor agent --host h1 --data-dir <data_dir>`,
/// which must exit 1.
async fn refused(t: &TestRegistry, data_dir: &str) -> String {
    let endpoint = t.server.endpoint();
    let args = [
        "--endpoints",
        &endpoint,
        "agent",
        "--host",
        "h1",
        "--data-dir",
        data_dir,
        "--admin-addr",
        "127.0.0.1:0",
    ];
    let run = visor_with_env(args.iter().map(|a| (*a).to_owned()).collect(), QUIET).await;
    run.error(1)
}

#[tokio::test]
async fn a_stop_does_not_wait_for_a_readiness_check_to_give_up() {
    within(LIMIT, "an instance in its readiness check stops", async {
        let t = TestRegistry::start().await;
        let rev = revision_dir(&[("bin/web", "exec sleep 1000")]);
        let _controller = ControllerProcess::start(&t, "c1");
        let agent = AgentProcess::start(&t, "h1");
        let mut spec = proc("./bin/web");
        // Far longer than the test may take: the stop must not wait for it.
        spec.readiness = Some(Readiness {
            check: ReadinessCheck::Tcp,
            timeout_secs: 3600,
        });
        deploy(&t, "web", &file_url(rev.path()), spec, 1).await;
        let checking = eventually(
            SETTLE,
            "the instance runs its process, not yet ready",
            || async {
                let instances = instances_of(&t, "web").await;
                let claimed = instances
                    .first()
                    .filter(|i| i.value.state == InstanceState::Claimed)?;
                (agent.workloads().len() == 1).then(|| claimed.name().to_owned())
            },
        )
        .await;

        t.visor
            .set_scales("web", "v1", &[("web", 0)])
            .await
            .expect("scale to 0");
        let stopped = in_state(&t, &checking, InstanceState::Exited).await;
        assert_eq!(stopped.reason.as_deref(), Some("stopped"), "{stopped:?}");
        eventually(SETTLE, "no process is left", || async {
            agent.supervisors().is_empty().then_some(())
        })
        .await;
    })
    .await;
}
