//! Losing the registry: a frozen agent's host is declared lost and its
//! instances replaced elsewhere, and it stops its own once it resumes; an
//! agent cut off from the registry stops its instances after the
//! disconnect window, and reconciles when the registry comes back.

use rustix::process::Signal;
use visor::model::InstanceState;
use visor_testkit::agent::AgentProcess;
use visor_testkit::controller::ControllerProcess;
use visor_testkit::fault_proxy::FaultProxy;
use visor_testkit::{TestRegistry, eventually, within};

use super::support::{LIMIT, SETTLE, deploy, file_url, instances_of, proc, revision_dir, running};

#[tokio::test]
async fn a_frozen_agent_is_replaced_elsewhere_and_stops_its_own_instances_when_it_resumes() {
    within(LIMIT, "frozen agent", async {
        let t = TestRegistry::start().await;
        let rev = revision_dir(&[("bin/web", "exec sleep 1000")]);
        let _controller = ControllerProcess::start(&t, "c1");
        let h1 = AgentProcess::start(&t, "h1");
        deploy(&t, "web", &file_url(rev.path()), proc("./bin/web"), 2).await;
        let first = running(&t, "web", Some("h1"), 2).await;
        let h2 = AgentProcess::start(&t, "h2");
        eventually(SETTLE, "h2 registered", || async {
            t.visor.host("h2").await.ok()
        })
        .await;
        h1.signal(Signal::STOP);
        // Past its lease: the controller marks h1's instances lost and replaces them on h2.
        for instance in &first {
            super::support::in_state(&t, instance.name(), InstanceState::Lost).await;
        }
        running(&t, "web", Some("h2"), 2).await;
        assert_eq!(h1.workloads().len(), 2, "frozen, h1's processes still run");
        h1.signal(Signal::CONT);
        eventually(SETTLE, "h1 stops what was replaced", || async {
            h1.supervisors().is_empty().then_some(())
        })
        .await;
        eventually(SETTLE, "h1 registers again", || async {
            t.visor.host("h1").await.ok()
        })
        .await;
        assert_eq!(h2.workloads().len(), 2);
        let lost = instances_of(&t, "web").await;
        assert_eq!(
            lost.iter()
                .filter(|i| i.value.state == InstanceState::Running)
                .count(),
            2
        );
    })
    .await;
}

#[tokio::test]
async fn an_agent_cut_off_from_the_registry_stops_its_instances_after_the_window() {
    within(LIMIT, "disconnect window", async {
        let t = TestRegistry::start().await;
        let proxy = FaultProxy::start(&t.server.endpoint(), t.raw()).await;
        let rev = revision_dir(&[("bin/web", "exec sleep 1000")]);
        let _controller = ControllerProcess::start(&t, "c1");
        let agent =
            AgentProcess::start_at(&proxy.endpoint(), "h1", &["--stop-after-disconnect", "1s"]);
        deploy(&t, "web", &file_url(rev.path()), proc("./bin/web"), 1).await;
        let before = running(&t, "web", Some("h1"), 1).await.remove(0);
        eventually(SETTLE, "one workload", || async {
            (agent.workloads().len() == 1).then_some(())
        })
        .await;
        proxy.pause();
        eventually(SETTLE, "the cut-off agent stops its instance", || async {
            agent.supervisors().is_empty().then_some(())
        })
        .await;
        proxy.cut_and_resume();
        // Back: the instance ended in the registry (lost, if the controller
        // saw the lease expire; failed, reported by the agent, if not), and
        // it is replaced.
        let gone = eventually(
            SETTLE,
            "the stopped instance ended in the registry",
            || async {
                let instance = t.visor.instance(before.name()).await.ok()?.value;
                matches!(instance.state, InstanceState::Lost | InstanceState::Failed)
                    .then_some(instance)
            },
        )
        .await;
        if gone.state == InstanceState::Failed {
            let reason = gone.reason.unwrap_or_default();
            assert!(reason.starts_with("its process is gone"), "{reason}");
        }
        let replacement = running(&t, "web", Some("h1"), 1).await.remove(0);
        assert_ne!(replacement.name(), before.name());
        eventually(SETTLE, "the replacement runs", || async {
            (agent.workloads().len() == 1).then_some(())
        })
        .await;
    })
    .await;
}
