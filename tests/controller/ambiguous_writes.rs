//! Writes whose outcome is unknown never become a second start: a proxy
//! between the controller and etcd forwards a batch of start tickets, lets
//! etcd commit it, and cuts the connection before the response comes back,
//! again and again during a scale-up. The controller resolves each such
//! write before planning again, so the registry ends with exactly the
//! desired instances and exactly one start ticket each.

use std::time::Duration;

use visor_testkit::controller::{self, ControllerProcess, active, instances};
use visor_testkit::fault_proxy::FaultProxy;
use visor_testkit::wait::holds_for;
use visor_testkit::{TestRegistry, eventually, fixtures, within};

const LIMIT: Duration = Duration::from_secs(240);
const DESIRED: usize = 400;
const FAULTS: usize = 6;

#[tokio::test]
async fn commits_whose_response_was_lost_are_not_started_twice() {
    within(
        LIMIT,
        "the scale-up never converges through the faults",
        async {
            let t = TestRegistry::start().await;
            let proxy = FaultProxy::start(&t.server.endpoint(), t.raw()).await;
            let hosts = fixtures::register_hosts(&t, 6, 200, Duration::from_secs(30)).await;
            fixtures::seed(&t, "web", "v1", "http").await;
            // A longer lease than the harness's default: a cut connection must
            // not cost the leadership, or the faults would test failover instead.
            let controller = ControllerProcess::spawn(
                &proxy.endpoint(),
                "c1",
                &["--lease-ttl", "10s", "--renew-deadline", "6s"],
                &[],
            );
            controller.wait_leading().await;

            let from = fixtures::raw_revision(&t).await + 1;
            let mut events = t.visor.watch_events(from).await.expect("watch");
            proxy.arm(FAULTS);
            t.visor
                .set_scale("web", "v1", "http", DESIRED as u32)
                .await
                .expect("scale");
            eventually(
                Duration::from_secs(180),
                "the desired instances exist",
                || async { (active(&t).await.len() >= DESIRED).then_some(()) },
            )
            .await;
            holds_for(
                Duration::from_secs(3),
                "no instance beyond the desired count",
                || async { instances(&t).await.len() == DESIRED },
            )
            .await;
            assert!(
                proxy.injected() >= FAULTS / 2,
                "only {} of {FAULTS} faults cut a committed write: the test proves little",
                proxy.injected()
            );

            // Every start ticket ever created, through the event stream.
            let started = controller::start_tickets_created(&t, &mut events).await;
            eprintln!("faults injected after a commit: {}", proxy.injected());
            assert_eq!(started, DESIRED, "exactly one start ticket per slot");
            assert_eq!(
                instances(&t).await.len(),
                DESIRED,
                "exactly the desired instances"
            );
            drop(hosts);
        },
    )
    .await;
}
