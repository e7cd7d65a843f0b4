//! Rolling deploys with real agents running real processes, whose readiness
//! is a real TCP check: v1 → v2 of 10 instances with max_surge 2 and
//! max_unavailable 0 never has fewer than 10 ready nor more than 12
//! instances (sampled on a watch of every instance change); a v3 that never
//! listens is rolled back to v2 by itself, and `visor apply --wait` says
//! so; a controller SIGKILLed mid-rollout leaves it to the standby, which
//! finishes it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use visor::model::{InstanceState, RolloutPhase};
use visor_testkit::agent::AgentProcess;
use visor_testkit::cli::{Cli, Run};
use visor_testkit::controller::{ControllerProcess, sample_instances};
use visor_testkit::raw::current_revision;
use visor_testkit::{TestRegistry, eventually, within};

use super::support::{file_url, instances_of, revision_dir};

/// Bound on one test: three rollouts of real processes.
const LIMIT: Duration = Duration::from_secs(150);
/// Bound on one rollout settling.
const SETTLE: Duration = Duration::from_secs(60);

/// A web server on `$PORT` (ready once it listens), after `delay` seconds.
fn listening(delay: u32) -> tempfile::TempDir {
    revision_dir(&[(
        "bin/web",
        &format!("sleep {delay}\nexec python3 -m http.server \"$PORT\" --bind 127.0.0.1"),
    )])
}

/// Writes the spec of app `web` at `current` into `dir`; returns its path.
fn spec_file(
    dir: &tempfile::TempDir,
    revisions: &BTreeMap<&str, String>,
    current: &str,
    web: u32,
    max_surge: u32,
    deadline_secs: u32,
) -> String {
    let revisions: serde_json::Map<String, serde_json::Value> = revisions
        .iter()
        .map(|(name, url)| ((*name).to_owned(), json!({ "archive_url": url })))
        .collect();
    let spec = json!({
        "name": "web",
        "repo_url": "https://example.com/web.git",
        "stack": "base",
        "procs": { "web": {
            "command": "./bin/web",
            "kill_timeout_secs": 2,
            "readiness": { "check": "tcp", "timeout_secs": 3600 },
        } },
        "revisions": revisions,
        "current": current,
        "scale": { "web": web },
        "rollout": { "max_surge": max_surge, "max_unavailable": 0, "deadline_secs": deadline_secs },
    });
    let path = dir.path().join(format!("web-{current}.json"));
    std::fs::write(&path, spec.to_string()).expect("write the spec");
    path.display().to_string()
}

/// Running instances of `web`, by revision.
async fn running(t: &TestRegistry) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for instance in instances_of(t, "web").await {
        if instance.value.state == InstanceState::Running {
            *counts.entry(instance.value.rev.to_string()).or_default() += 1;
        }
    }
    counts
}

/// The revision `web`'s rollout is of, and its phase.
async fn rollout(t: &TestRegistry) -> (String, RolloutPhase) {
    let status = t
        .visor
        .rollout_status("web")
        .await
        .expect("the rollout")
        .value;
    (status.revision.to_string(), status.phase)
}

/// Instances of `web` not yet terminal.
async fn active(t: &TestRegistry) -> usize {
    instances_of(t, "web")
        .await
        .iter()
        .filter(|i| !i.value.state.is_terminal())
        .count()
}

/// Agents `h1` and `h2`, with port ranges of their own from `first` on: two
/// hosts on one machine share its ports, and the lowest free port, chosen
/// by both at once, would be bound by one and fail the other.
fn agents(t: &TestRegistry, first: u16) -> [AgentProcess; 2] {
    let range = |from: u16| format!("{from}-{}", from + 199);
    [
        AgentProcess::start_with(t, "h1", &["--port-range", &range(first)]),
        AgentProcess::start_with(t, "h2", &["--port-range", &range(first + 200)]),
    ]
}

fn assert_ok(run: &Run) {
    assert_eq!(run.code, Some(0), "{}", run.context());
}

#[tokio::test]
async fn a_rollout_keeps_every_instance_ready_and_one_never_ready_rolls_back() {
    within(LIMIT, "the rollouts never settle", async {
        let t = TestRegistry::start().await;
        let _controller = ControllerProcess::start(&t, "c1");
        let _agents = agents(&t, 30_000);
        let (v1, v2) = (listening(0), listening(0));
        let v3 = revision_dir(&[("bin/web", "exec sleep 1000")]);
        let revisions = BTreeMap::from([
            ("v1", file_url(v1.path())),
            ("v2", file_url(v2.path())),
            ("v3", file_url(v3.path())),
        ]);
        let dir = tempfile::tempdir().expect("a spec dir");
        let cli = Cli::new(&t);

        let first = spec_file(&dir, &revisions, "v1", 10, 2, 60);
        assert_ok(&cli.run(&format!("apply -f {first} --wait --timeout 60s")).await);
        assert_eq!(running(&t).await, BTreeMap::from([("v1".to_owned(), 10)]));

        let from = current_revision(&t.visor.registry().etcd()).await;
        let sampling = CancellationToken::new();
        let sampler = tokio::spawn(sample_instances(t.connect_again().await, from, sampling.clone()));
        let second = spec_file(&dir, &revisions, "v2", 10, 2, 60);
        assert_ok(&cli.run(&format!("apply -f {second} --wait --timeout 60s")).await);
        assert_eq!(running(&t).await, BTreeMap::from([("v2".to_owned(), 10)]));
        assert_eq!(active(&t).await, 10, "no v1 instance is left");

        // v3 never listens: its deadline passes, and it is rolled back to v2.
        let third = spec_file(&dir, &revisions, "v3", 10, 2, 3);
        let failed = cli.run(&format!("apply -f {third} --wait --timeout 60s")).await;
        assert_eq!(failed.code, Some(1), "{}", failed.context());
        assert_eq!(
            failed.stderr.lines().last(),
            Some(
                "error: web: the rollout to v3 failed and rolls back to v2: revision v3 did not become ready within 3s"
            ),
            "{}",
            failed.context()
        );
        let status = t.visor.rollout_status("web").await.expect("the rollout").value;
        assert_eq!(status.stable.as_ref().map(|s| s.as_str()), Some("v2"));
        eventually(SETTLE, "the v3 instances are gone", || async {
            (active(&t).await == 10).then_some(())
        })
        .await;
        assert_eq!(running(&t).await, BTreeMap::from([("v2".to_owned(), 10)]));

        sampling.cancel();
        let (lowest_ready, highest_total) = sampler.await.expect("the sampler");
        assert!(lowest_ready >= 10, "ready fell to {lowest_ready}, below 10 − 0");
        assert!(highest_total <= 12, "instances rose to {highest_total}, above 10 + 2");
    })
    .await;
}

#[tokio::test]
async fn a_controller_killed_mid_rollout_leaves_it_to_the_standby_which_finishes_it() {
    within(LIMIT, "the standby never finishes the rollout", async {
        let t = TestRegistry::start().await;
        let mut leader = ControllerProcess::start(&t, "c1");
        leader.wait_leading().await;
        let standby = ControllerProcess::start(&t, "c2");
        let _agents = agents(&t, 30_400);
        // v2 takes a second to listen: a rollout of one at a time takes a while.
        let (v1, v2) = (listening(0), listening(1));
        let revisions = BTreeMap::from([("v1", file_url(v1.path())), ("v2", file_url(v2.path()))]);
        let dir = tempfile::tempdir().expect("a spec dir");
        let cli = Cli::new(&t);
        let first = spec_file(&dir, &revisions, "v1", 4, 1, 60);
        assert_ok(
            &cli.run(&format!("apply -f {first} --wait --timeout 60s"))
                .await,
        );

        let from = current_revision(&t.visor.registry().etcd()).await;
        let sampling = CancellationToken::new();
        let sampler = tokio::spawn(sample_instances(
            t.connect_again().await,
            from,
            sampling.clone(),
        ));
        let second = spec_file(&dir, &revisions, "v2", 4, 1, 60);
        assert_ok(&cli.run(&format!("apply -f {second}")).await);
        eventually(SETTLE, "the rollout's first step is taken", || async {
            let scale = t.visor.scale("web", "v2", "web").await.ok()?;
            (scale.value.replicas >= 1).then_some(())
        })
        .await;
        assert_eq!(
            rollout(&t).await,
            ("v2".to_owned(), RolloutPhase::Progressing),
            "the leader is killed mid-rollout"
        );
        leader.kill();
        standby.wait_leading().await;
        // The same file again writes nothing and waits for the standby to finish.
        assert_ok(
            &cli.run(&format!("apply -f {second} --wait --timeout 60s"))
                .await,
        );
        assert_eq!(rollout(&t).await, ("v2".to_owned(), RolloutPhase::Complete));
        assert_eq!(running(&t).await, BTreeMap::from([("v2".to_owned(), 4)]));
        assert_eq!(active(&t).await, 4, "no v1 instance is left");
        sampling.cancel();
        let (lowest_ready, highest_total) = sampler.await.expect("the sampler");
        assert!(
            lowest_ready >= 4,
            "ready fell to {lowest_ready}, below 4 − 0"
        );
        assert!(
            highest_total <= 5,
            "instances rose to {highest_total}, above 4 + 1"
        );
    })
    .await;
}
