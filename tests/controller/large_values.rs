//! Values near etcd's request limit: ten malformed values of 1 MiB each under
//! several prefixes (one listing page of them weighs far more than gRPC's
//! default 4 MiB message limit). A controller that takes over after them
//! loads its caches, becomes ready, converges, and reports the values as
//! malformed; the CLI still lists.

use std::time::Duration;

use visor_testkit::cli::{self, Cli};
use visor_testkit::controller::{ControllerProcess, active};
use visor_testkit::{TestRegistry, eventually, fixtures, within};

const LIMIT: Duration = Duration::from_secs(120);
const MIB: usize = 1 << 20;

/// (key under the root, how many of them): more than four under one prefix,
/// so that one page of that prefix is over 4 MiB.
const LARGE: &[(&str, usize)] = &[
    ("instances/big-", 5),
    ("hosts/big-", 2),
    ("tickets/h0/big-", 2),
    ("procs/web/big-", 1),
];

fn leads(controller: &ControllerProcess) -> bool {
    controller.metric("leader_election_master_status", "visor-controller") == Some(1.0)
}

#[tokio::test]
async fn a_new_leader_loads_caches_holding_1_mib_values_and_the_cli_lists() {
    within(LIMIT, "a cache never loads past the large values", async {
        let t = TestRegistry::start().await;
        let _host = fixtures::scaled_web(&t, "h0", 2).await;

        let mut first = ControllerProcess::start(&t, "c1");
        first.wait_leading().await;
        eventually(Duration::from_secs(20), "2 active instances", || async {
            (active(&t).await.len() == 2).then_some(())
        })
        .await;

        // Malformed (not JSON) and as large as etcd's default request limit allows.
        let mut raw = t.raw();
        let value = format!("not json {}", "x".repeat(MIB));
        let mut written = 0;
        for (prefix, count) in LARGE {
            for i in 0..*count {
                raw.put(format!("/visor/{prefix}{i}"), value.clone(), None)
                    .await
                    .expect("put a 1 MiB value");
                written += 1;
            }
        }
        assert_eq!(written, 10);

        // A new leader lists every prefix from scratch.
        first.kill();
        let second = ControllerProcess::start(&t, "c2");
        second.wait_leading().await;
        assert!(leads(&second));
        eventually(
            Duration::from_secs(20),
            "the new leader reports every large value as malformed",
            || async {
                let malformed = second.metric("visor_malformed_objects_total", "")?;
                (malformed >= 10.0).then_some(())
            },
        )
        .await;
        t.visor
            .set_scale("web", "v1", "http", 3)
            .await
            .expect("scale 3");
        eventually(
            Duration::from_secs(20),
            "the new leader converges to 3",
            || async { (active(&t).await.len() == 3).then_some(()) },
        )
        .await;

        // The CLI lists what decodes, and names on stderr what it skipped.
        let cli = Cli::new(&t);
        let listed = |run: &cli::Run, skipped: &str| {
            assert_eq!(run.code, Some(0), "{}", run.context());
            assert!(
                run.stderr.contains("skipping malformed") && run.stderr.contains(skipped),
                "the skipped values are reported: {}",
                run.context()
            );
            let json: serde_json::Value = serde_json::from_str(&run.stdout)
                .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", run.context()));
            json.as_array().map_or(0, Vec::len)
        };
        let instances = cli.json("instances").await;
        assert_eq!(listed(&instances, "/visor/instances/big-4"), 3);
        let hosts = cli.json("hosts").await;
        assert_eq!(listed(&hosts, "/visor/hosts/big-1"), 1, "h0 only");
        let status = cli.run("status").await;
        assert_eq!(status.code, Some(0), "{}", status.context());
    })
    .await;
}
