//! The controller through registry trouble, against a real etcd: etcd killed
//! and restarted on the same data dir (the controller reconnects, leads again
//! and converges), and a controller frozen while the history it missed is
//! compacted away (it catches up by relisting and converges; no change is lost).

use std::time::Duration;

use visor_testkit::controller::{self, ControllerProcess, active};
use visor_testkit::{TestRegistry, eventually, fixtures, within};

const LIMIT: Duration = Duration::from_secs(120);
const CONVERGE: Duration = Duration::from_secs(30);

async fn converged(t: &TestRegistry, count: usize, what: &str) {
    eventually(CONVERGE, what, || async {
        (active(t).await.len() == count).then_some(())
    })
    .await;
}

#[tokio::test]
async fn converges_after_etcd_is_killed_and_restarted() {
    within(LIMIT, "the controller never recovers", async {
        let mut t = TestRegistry::start().await;
        let controller = ControllerProcess::start(&t, "c1");
        controller.wait_leading().await;
        let _host = fixtures::scaled_web(&t, "h1", 2).await;
        converged(&t, 2, "2 active before the outage").await;

        t.server.kill();
        eventually(
            CONVERGE,
            "the controller stops leading while etcd is down",
            || async {
                (controller.metric("leader_election_master_status", "visor-controller")
                    == Some(0.0))
                .then_some(())
            },
        )
        .await;
        t.server.restart().await.expect("restart etcd");
        controller.wait_leading().await;
        t.visor
            .set_scale("web", "v1", "http", 4)
            .await
            .expect("scale after restart");
        converged(&t, 4, "4 active after etcd came back").await;
    })
    .await;
}

#[tokio::test]
async fn a_frozen_controller_catches_up_after_compaction() {
    within(LIMIT, "the controller never catches up", async {
        let t = TestRegistry::start().await;
        let controller = ControllerProcess::start(&t, "c1");
        controller.wait_leading().await;
        let _host = t
            .visor
            .register_host("h1", fixtures::host("10.0.0.1"), Duration::from_secs(30))
            .await
            .expect("host");
        fixtures::seed(&t, "web", "v1", "http").await;
        fixtures::seed(&t, "api", "v1", "http").await;
        t.visor
            .set_scale("web", "v1", "http", 1)
            .await
            .expect("scale");
        converged(&t, 1, "1 active before the freeze").await;

        controller::signal(&controller, "STOP");
        for replicas in [3, 0, 2] {
            t.visor
                .set_scale("web", "v1", "http", replicas)
                .await
                .expect("scale while frozen");
        }
        t.visor
            .set_scale("api", "v1", "http", 1)
            .await
            .expect("scale while frozen");
        t.visor
            .unregister_app("web")
            .await
            .expect("remove an app while frozen");
        let revision = fixtures::raw_revision(&t).await;
        t.raw()
            .compact(revision, None)
            .await
            .expect("compact the missed history");
        controller::signal(&controller, "CONT");

        // Only api/v1/http should run: web was removed while the controller was
        // frozen, so each of its instances must have a stop ticket (no agent runs
        // here to carry them out).
        eventually(CONVERGE, "the final desired state, and only it", || async {
            let stopping: Vec<String> = controller::tickets(&t, visor::model::TicketOp::Stop)
                .await
                .iter()
                .map(|ticket| ticket.value.instance.to_string())
                .collect();
            let live = active(&t).await;
            let kept: Vec<String> = live
                .iter()
                .filter(|i| !stopping.contains(&i.name().to_owned()))
                .map(|i| i.value.app.to_string())
                .collect();
            (kept == ["api"]).then_some(())
        })
        .await;
    })
    .await;
}
