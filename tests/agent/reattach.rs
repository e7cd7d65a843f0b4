//! Crash safety: an agent SIGKILLed with instances running comes back to
//! them (same processes, no restart counted, its host never down), and a
//! ticket half-executed when the agent died takes effect once.

use std::time::Duration;

use visor::model::{InstanceState, TicketOp};
use visor::registry::EventKind;
use visor_testkit::agent::AgentProcess;
use visor_testkit::controller::ControllerProcess;
use visor_testkit::fixtures::etcdctl_put;
use visor_testkit::wait::holds_for;
use visor_testkit::{TestRegistry, eventually, within};

use super::support::{LIMIT, SETTLE, deploy, file_url, instances_of, proc, revision_dir, running};

/// How soon a restarted agent must have its host and instances back.
const REATTACH: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_sigkilled_agent_comes_back_to_its_twenty_instances_without_restarting_any() {
    within(LIMIT, "re-attach", async {
        let t = TestRegistry::start().await;
        let rev = revision_dir(&[("bin/web", "exec sleep 1000")]);
        let _controller = ControllerProcess::start(&t, "c1");
        let mut agent = AgentProcess::start_with(&t, "h1", &["--capacity", "32"]);
        deploy(&t, "web", &file_url(rev.path()), proc("./bin/web"), 20).await;
        let before = running(&t, "web", Some("h1"), 20).await;
        let workloads = eventually(SETTLE, "20 workloads", || async {
            let pids = agent.workloads();
            (pids.len() == 20).then_some(pids)
        })
        .await;
        let from = t.visor.host("h1").await.expect("h1").revision;
        agent.kill();
        assert_eq!(
            agent.workloads(),
            workloads,
            "every workload outlives its agent"
        );
        agent.restart();
        within(REATTACH, "the restarted agent takes its host back", async {
            eventually(REATTACH, "incarnation 2 registered", || async {
                let host = t.visor.host("h1").await.ok()?;
                (host.value.incarnation == 2).then_some(())
            })
            .await
        })
        .await;
        holds_for(
            Duration::from_secs(3),
            "the same processes, no restart",
            || async {
                let now = instances_of(&t, "web").await;
                agent.workloads() == workloads
                    && now.len() == 20
                    && now
                        .iter()
                        .all(|i| i.value.state == InstanceState::Running && i.value.restarts == 0)
            },
        )
        .await;
        let ids: Vec<&str> = before.iter().map(|i| i.name()).collect();
        assert!(
            instances_of(&t, "web")
                .await
                .iter()
                .all(|i| ids.contains(&i.name()))
        );
        // The host never went down, so nothing was lost.
        let mut events = t.visor.watch_events(from + 1).await.expect("events");
        let quiet = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(event)) = futures::StreamExt::next(&mut events).await {
                assert!(
                    !matches!(
                        event.kind,
                        EventKind::HostDown { .. } | EventKind::InstanceLost { .. }
                    ),
                    "the host went down or lost an instance: {event:?}"
                );
            }
        });
        let _ = quiet.await;
    })
    .await;
}

#[tokio::test]
async fn a_ticket_half_executed_when_the_agent_died_takes_effect_once() {
    half_executed_start_takes_effect_once(InstanceState::Claimed).await;
}

/// The agent starts a pending instance while it claims it: one it died in
/// before the claim was in is claimed, not stopped, when it comes back.
#[tokio::test]
async fn a_start_the_agent_died_in_before_its_claim_was_in_takes_effect_once() {
    half_executed_start_takes_effect_once(InstanceState::Pending).await;
}

/// An instance started, then the agent SIGKILLed and the registry and its
/// record put back as they were before it reported the instance running:
/// the instance at `died_at`, its ticket claimed, its record "starting".
/// The restarted agent completes the ticket with the same process.
async fn half_executed_start_takes_effect_once(died_at: InstanceState) {
    within(LIMIT, "half-executed ticket", async {
        let t = TestRegistry::start().await;
        let rev = revision_dir(&[("bin/web", "exec sleep 1000")]);
        let mut agent = AgentProcess::start(&t, "h1");
        eventually(SETTLE, "h1 registered", || async {
            t.visor.host("h1").await.ok()
        })
        .await;
        deploy(&t, "web", &file_url(rev.path()), proc("./bin/web"), 0).await;
        // The controller's part, by hand: an instance and its start ticket.
        let instance = t
            .visor
            .create_instance(visor_testkit::fixtures::instance_spec(
                "web",
                "v1",
                "web",
                Some("h1"),
            ))
            .await
            .expect("instance");
        let id = instance.name().to_owned();
        t.visor
            .create_ticket(
                "h1",
                visor_testkit::fixtures::ticket_spec(TicketOp::Start, &id, "web", "v1", "web"),
            )
            .await
            .expect("ticket");
        let up = super::support::in_state(&t, &id, InstanceState::Running).await;
        let pid = eventually(SETTLE, "one workload", || async {
            let pids = agent.workloads();
            (pids.len() == 1).then(|| pids[0])
        })
        .await;
        agent.kill();
        // As if it died after spawning the process, before reporting it.
        let mut before = up.clone();
        before.state = died_at;
        before.port = None;
        etcdctl_put(
            &t,
            &format!("/visor/instances/{id}"),
            &serde_json::to_string(&before).expect("json"),
        );
        let mut ticket =
            visor_testkit::fixtures::ticket_spec(TicketOp::Start, &id, "web", "v1", "web");
        ticket.claimed_by = Some(visor_testkit::fixtures::name("h1"));
        ticket.claimed_at = Some(chrono::Utc::now());
        let ticket = t
            .visor
            .create_ticket("h1", ticket)
            .await
            .expect("a claimed ticket");
        let record = agent.data_dir().join(format!("instances/{id}.json"));
        let text = std::fs::read_to_string(&record).expect("the record");
        std::fs::write(
            &record,
            text.replace("\"step\":\"running\"", "\"step\":\"starting\""),
        )
        .expect("rewrite");
        agent.restart();
        eventually(SETTLE, "the ticket is completed", || async {
            t.visor
                .ticket("h1", ticket.name())
                .await
                .is_err()
                .then_some(())
        })
        .await;
        let now = super::support::in_state(&t, &id, InstanceState::Running).await;
        assert_eq!(now.restarts, 0);
        assert_eq!(now.port, up.port, "the port it runs on");
        assert_eq!(
            agent.workloads(),
            vec![pid],
            "the same process, not a second one"
        );
    })
    .await;
}
