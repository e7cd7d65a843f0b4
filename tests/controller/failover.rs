//! Two `visor controller` replicas against a real etcd: exactly one leads; a
//! leader killed with SIGKILL in the middle of a 200-instance scale-up is
//! replaced after its lease expires, and the result is exactly 200 instances
//! with exactly 200 start tickets ever emitted; a leader sent SIGTERM resigns
//! and the standby takes over at once.

use std::time::Duration;

use visor::model::TicketOp;

use visor_testkit::controller::{self, ControllerProcess, active, tickets};
use visor_testkit::{TestRegistry, eventually, fixtures, within};

const LIMIT: Duration = Duration::from_secs(120);

fn leads(controller: &ControllerProcess) -> bool {
    controller.metric("leader_election_master_status", "visor-controller") == Some(1.0)
}

/// Waits until exactly one of the two leads and returns its index.
async fn one_leader(controllers: &[ControllerProcess; 2]) -> usize {
    eventually(Duration::from_secs(20), "exactly one leader", || async {
        match (leads(&controllers[0]), leads(&controllers[1])) {
            (true, false) => Some(0),
            (false, true) => Some(1),
            _ => None,
        }
    })
    .await
}

/// Two controllers, and which of them leads and which stands by, ready.
async fn leader_and_standby(t: &TestRegistry) -> ([ControllerProcess; 2], usize, usize) {
    let controllers = [
        ControllerProcess::start(t, "c1"),
        ControllerProcess::start(t, "c2"),
    ];
    let leader = one_leader(&controllers).await;
    let standby = 1 - leader;
    controllers[standby].wait_ready_standby().await;
    (controllers, leader, standby)
}

#[tokio::test]
async fn sigkill_during_a_200_instance_scale_up_never_double_starts() {
    within(LIMIT, "failover or convergence never happens", async {
        let t = TestRegistry::start().await;
        let (mut controllers, leader, standby) = leader_and_standby(&t).await;

        let hosts = fixtures::register_hosts(&t, 10, 50, Duration::from_secs(5)).await;
        fixtures::seed(&t, "web", "v1", "http").await;
        let from = fixtures::raw_revision(&t).await + 1;
        let mut events = t.visor.watch_events(from).await.expect("watch");
        t.visor
            .set_scale("web", "v1", "http", 200)
            .await
            .expect("scale 200");
        // Kill the leader as soon as it has started emitting.
        eventually(
            Duration::from_secs(20),
            "the leader starts emitting",
            || async { (!tickets(&t, TicketOp::Start).await.is_empty()).then_some(()) },
        )
        .await;
        controllers[leader].kill();
        let killed_at = tokio::time::Instant::now();
        eventually(
            Duration::from_secs(20),
            "the standby takes over",
            || async { leads(&controllers[standby]).then_some(()) },
        )
        .await;
        eprintln!(
            "takeover after SIGKILL: {:?} (lease TTL 2 s)",
            killed_at.elapsed()
        );

        eventually(Duration::from_secs(30), "200 active instances", || async {
            (active(&t).await.len() == 200).then_some(())
        })
        .await;
        // Count every start ticket ever created, through the event stream.
        let created = controller::start_tickets_created(&t, &mut events).await;
        assert_eq!(
            created, 200,
            "never more (or fewer) than 200 start tickets in total"
        );
        assert_eq!(
            controller::instances(&t).await.len(),
            200,
            "exactly 200 instances"
        );
        drop(hosts);
    })
    .await;
}

#[tokio::test]
async fn sigterm_hands_leadership_over_at_once() {
    within(LIMIT, "handover never happens", async {
        let t = TestRegistry::start().await;
        let (mut controllers, leader, standby) = leader_and_standby(&t).await;
        let stopped_at = tokio::time::Instant::now();
        controllers[leader].terminate().await;
        eventually(
            Duration::from_secs(10),
            "the standby leads after a SIGTERM",
            || async { leads(&controllers[standby]).then_some(()) },
        )
        .await;
        eprintln!("handover after SIGTERM: {:?}", stopped_at.elapsed());
    })
    .await;
}
