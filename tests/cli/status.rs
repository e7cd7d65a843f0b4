//! `visor status -w`: the status as it stands, then again whenever what it
//! shows changes (and only then), until SIGTERM.

use std::time::Duration;

use serde_json::{Value, json};
use visor_testkit::cli::{Follower, LIMIT};
use visor_testkit::{TestRegistry, fixtures, within};

fn status(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not one JSON object ({e})"))
}

#[tokio::test]
async fn status_watch_prints_it_again_whenever_it_changes_until_sigterm() {
    within(
        LIMIT,
        "etcd start, or visor status -w never printing",
        async {
            let t = TestRegistry::start().await;
            fixtures::seed(&t, "web", "v1", "http").await;
            let mut follower = Follower::spawn(&t, &["-o", "json", "status", "-w"]);
            assert_eq!(
                status(&follower.line("the status as it stands").await),
                json!({"groups": [], "hosts_alive": 0, "leader": null})
            );

            t.visor
                .set_scale("web", "v1", "http", 2)
                .await
                .expect("scale");
            let group = |unplaceable: u32| {
                json!([{"app": "web", "rev": "v1", "proc": "http", "desired": 2,
                    "active": 0, "running": 0, "stopping": 0, "unplaceable": unplaceable}])
            };
            assert_eq!(
                status(&follower.line("the status after a scale change").await),
                json!({"groups": group(2), "hosts_alive": 0, "leader": null})
            );

            // A change the status does not show prints nothing: the next line is the host's.
            t.visor
                .set_env("web", "MODE", "production")
                .await
                .expect("env");
            let _host = t
                .visor
                .register_host("h1", fixtures::host("10.0.0.1"), Duration::from_secs(30))
                .await
                .expect("host");
            assert_eq!(
                status(&follower.line("the status once a host is alive").await),
                json!({"groups": group(0), "hosts_alive": 1, "leader": null})
            );
            follower.terminate().await;
        },
    )
    .await;
}
