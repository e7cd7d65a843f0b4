//! The rollout loop in the real `visor controller` binary: an app applied
//! with a current revision and a scale comes up at that scale, and a change
//! of revision rolls it, with the ready count never below desired −
//! max_unavailable and the instances never above desired + max_surge,
//! sampled on a watch of every instance change through the whole rollout.
//! The hosts' agents are simulated: they claim and start what is placed on
//! them and stop what their stop tickets name.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use visor::model::{AppSpec, InstanceState, Name, NotificationKind, RolloutPhase, TicketOp};
use visor::registry::Visor;

use serde_json::json;
use visor_testkit::cli::Cli;
use visor_testkit::controller::{ControllerProcess, sample_instances};
use visor_testkit::{TestRegistry, eventually, fixtures, within};

const LIMIT: Duration = Duration::from_secs(90);
const CONVERGE: Duration = Duration::from_secs(30);
const HOST_TTL: Duration = Duration::from_secs(5);
const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

fn spec(current: &str, web: u32, max_surge: u32, max_unavailable: u32) -> AppSpec {
    spec_with(current, web, max_surge, max_unavailable, 300)
}

fn spec_with(
    current: &str,
    web: u32,
    max_surge: u32,
    max_unavailable: u32,
    deadline_secs: u32,
) -> AppSpec {
    serde_json::from_value(serde_json::json!({
        "name": "web",
        "repo_url": "https://example.com/web.git",
        "stack": "base",
        "procs": { "web": { "command": "serve" } },
        "revisions": {
            "v1": { "archive_url": "file:///v1" },
            "v2": { "archive_url": "file:///v2" },
            "v3": { "archive_url": "file:///v3" },
        },
        "current": current,
        "scale": { "web": web },
        "rollout": {
            "max_surge": max_surge,
            "max_unavailable": max_unavailable,
            "deadline_secs": deadline_secs,
        },
    }))
    .expect("a valid spec")
}

async fn apply(t: &TestRegistry, spec: &AppSpec) {
    let state = t.visor.app_state("web").await.expect("read the app");
    t.visor
        .apply_spec(spec, &state, false)
        .await
        .expect("apply");
}

/// The hosts' agents, simulated until `stop`: each start ticket's instance
/// is claimed and started (except those of revision `never_ready`, which
/// stay claimed, as if their readiness check never passed), each stop
/// ticket's instance stopped and exited, and the ticket completed.
async fn simulated_agents(t: Visor, never_ready: Option<&'static str>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while !stop.is_cancelled() {
        tick.tick().await;
        let Ok(tickets) = t.tickets(None).await else {
            continue;
        };
        for ticket in tickets.items {
            let host = t.registry().keys().parse(&ticket.key).addressee().cloned();
            let Some(host) = host else { continue };
            let id = ticket.value.instance.as_str();
            let done = match ticket.value.op {
                TicketOp::Start if never_ready == Some(ticket.value.rev.as_str()) => {
                    let _ = t.claim_instance(id, host.as_str()).await;
                    false
                }
                TicketOp::Start => {
                    t.claim_instance(id, host.as_str()).await.is_ok()
                        && t.start_instance(id, host.as_str(), None).await.is_ok()
                }
                TicketOp::Stop => {
                    let _ = t.stop_instance(id, host.as_str()).await;
                    t.exit_instance(id, host.as_str(), None).await.is_ok()
                }
            };
            if done {
                let _ = t.complete_ticket(&ticket, host.as_str()).await;
            }
        }
    }
}

/// Running instances of each revision.
async fn running(t: &TestRegistry) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for instance in visor_testkit::controller::active(t).await {
        if instance.value.state == InstanceState::Running {
            *counts.entry(instance.value.rev.to_string()).or_default() += 1;
        }
    }
    counts
}

#[tokio::test]
async fn a_change_of_revision_rolls_within_surge_and_unavailability() {
    within(LIMIT, "the rollout never completes", async {
        let t = TestRegistry::start().await;
        let _controller = ControllerProcess::start(&t, "c1");
        let mut leases = Vec::new();
        for host in HOSTS {
            leases.push(
                t.visor
                    .register_host(host, fixtures::host("10.0.0.1"), HOST_TTL)
                    .await
                    .expect("register a host"),
            );
        }
        let stop = CancellationToken::new();
        let agents = tokio::spawn(simulated_agents(
            t.connect_again().await,
            None,
            stop.clone(),
        ));

        apply(&t, &spec("v1", 10, 2, 0)).await;
        eventually(CONVERGE, "ten v1 instances run", || async {
            (running(&t).await == BTreeMap::from([("v1".to_owned(), 10)])).then_some(())
        })
        .await;

        let mut kv = t.visor.registry().etcd();
        let at = kv
            .get("/", None)
            .await
            .expect("revision")
            .header()
            .map_or(0, |h| h.revision());
        let sampling = CancellationToken::new();
        let sampler = tokio::spawn(sample_instances(
            t.connect_again().await,
            at,
            sampling.clone(),
        ));
        apply(&t, &spec("v2", 10, 2, 0)).await;
        eventually(
            CONVERGE,
            "ten v2 instances run and no v1 one is left",
            || async {
                let done = running(&t).await == BTreeMap::from([("v2".to_owned(), 10)])
                    && visor_testkit::controller::active(&t).await.len() == 10;
                done.then_some(())
            },
        )
        .await;
        sampling.cancel();
        let (lowest_ready, highest_total) = sampler.await.expect("the sampler");
        assert!(
            lowest_ready >= 10,
            "ready fell to {lowest_ready}, below 10 − 0"
        );
        assert!(
            highest_total <= 12,
            "instances rose to {highest_total}, above 10 + 2"
        );

        stop.cancel();
        agents.await.expect("the simulated agents");
        drop(leases);
    })
    .await;
}

async fn registry_revision(t: &TestRegistry) -> i64 {
    let mut kv = t.visor.registry().etcd();
    let response = kv.get("/", None).await.expect("revision");
    response.header().map_or(0, |h| h.revision())
}

async fn hosts(t: &TestRegistry) -> Vec<visor::registry::HostRegistration> {
    let mut leases = Vec::new();
    for host in HOSTS {
        leases.push(
            t.visor
                .register_host(host, fixtures::host("10.0.0.1"), HOST_TTL)
                .await
                .expect("register a host"),
        );
    }
    leases
}

#[tokio::test]
async fn a_revision_that_never_becomes_ready_is_rolled_back() {
    within(LIMIT, "the rollback never completes", async {
        let t = TestRegistry::start().await;
        let controller = ControllerProcess::start(&t, "c1");
        let _hosts = hosts(&t).await;
        let stop = CancellationToken::new();
        let agents = tokio::spawn(simulated_agents(
            t.connect_again().await,
            Some("v3"),
            stop.clone(),
        ));
        apply(&t, &spec_with("v2", 4, 1, 0, 2)).await;
        eventually(CONVERGE, "four v2 instances run, the rollout complete", || async {
            let status = t.visor.rollout_status("web").await.ok()?.value;
            let complete = status.phase == RolloutPhase::Complete
                && running(&t).await == BTreeMap::from([("v2".to_owned(), 4)]);
            complete.then_some(())
        })
        .await;

        let at = registry_revision(&t).await;
        let sampling = CancellationToken::new();
        let sampler = tokio::spawn(sample_instances(t.connect_again().await, at, sampling.clone()));
        apply(&t, &spec_with("v3", 4, 1, 0, 2)).await;
        let back = eventually(
            CONVERGE,
            "the rollout to v3 is rolled back to v2",
            || async {
                let status = t.visor.rollout_status("web").await.ok()?.value;
                let settled = status.phase == RolloutPhase::RolledBack
                    && running(&t).await == BTreeMap::from([("v2".to_owned(), 4)])
                    && visor_testkit::controller::active(&t).await.len() == 4;
                settled.then_some(status)
            },
        )
        .await;
        assert_eq!(back.revision.as_str(), "v3");
        assert_eq!(back.stable.as_ref().map(|s| s.as_str()), Some("v2"));
        assert!(
            back.reason
                .as_deref()
                .is_some_and(|r| r.contains("v3 did not become ready within 2s")),
            "{back:?}"
        );
        // It was notified, once as it failed and once as it was back.
        let notified: Vec<_> = t
            .visor
            .notifications(0)
            .await
            .expect("list notifications")
            .items
            .into_iter()
            .map(|n| {
                let n = n.value;
                let of = |name: Option<Name>| name.map(String::from);
                (n.kind, of(n.app), of(n.revision), of(n.service), n.reason)
            })
            .collect();
        let rollout = |kind, reason: &str| {
            (kind, Some("web".to_owned()), Some("v3".to_owned()), None, reason.to_owned())
        };
        assert_eq!(
            notified,
            [
                rollout(
                    NotificationKind::RolloutFailed,
                    "revision v3 did not become ready within 2s; rolling back to v2"
                ),
                rollout(
                    NotificationKind::RolloutRolledBack,
                    "back on revision v2 after revision v3 did not become ready within 2s"
                ),
            ]
        );
        // The metrics show it...
        eventually(CONVERGE, "the metrics show the rollback", || async {
            let phase = controller.metric("visor_rollout_phase", "phase=\"rolled-back\"")?;
            let ended = controller.metric("visor_rollouts_ended_total", "result=\"rolled-back\"")?;
            let ready = controller.metric("visor_rollout_ready_instances", "app=\"web\"")?;
            (phase == 1.0 && ended == 1.0 && ready == 4.0).then_some(())
        })
        .await;
        // ...the CLI too, and following it ends at once, with why.
        let cli = Cli::new(&t);
        let shown = cli.json("rollout status web").await.json();
        assert_eq!(
            (&shown["revision"], &shown["phase"], &shown["stable"], &shown["ready"], &shown["desired"]),
            (&json!("v3"), &json!("rolled-back"), &json!("v2"), &json!(0), &json!(4))
        );
        let followed = cli.run("rollout status web -w").await;
        assert_eq!(followed.code, Some(1), "{}", followed.context());
        assert_eq!(
            followed.stderr,
            "error: the rollout of app web to v3 is rolled-back: revision v3 did not become ready within 2s\n"
        );
        assert_eq!(followed.stdout.lines().count(), 2, "a header and a line: {}", followed.context());
        sampling.cancel();
        let (lowest_ready, highest_total) = sampler.await.expect("the sampler");
        assert!(lowest_ready >= 4, "ready fell to {lowest_ready}");
        assert!(highest_total <= 5, "instances rose to {highest_total}");

        stop.cancel();
        agents.await.expect("the simulated agents");
    })
    .await;
}

#[tokio::test]
async fn a_new_leader_finishes_a_rollout_the_old_one_began() {
    within(LIMIT, "the new leader never finishes the rollout", async {
        let t = TestRegistry::start().await;
        let mut first = ControllerProcess::start(&t, "c1");
        first.wait_leading().await;
        let second = ControllerProcess::start(&t, "c2");
        let _hosts = hosts(&t).await;
        let stop = CancellationToken::new();
        let agents = tokio::spawn(simulated_agents(
            t.connect_again().await,
            None,
            stop.clone(),
        ));
        apply(&t, &spec("v1", 6, 1, 0)).await;
        eventually(CONVERGE, "six v1 instances run", || async {
            (running(&t).await == BTreeMap::from([("v1".to_owned(), 6)])).then_some(())
        })
        .await;
        // The agents hold still, so the rollout is caught half-way.
        stop.cancel();
        agents.await.expect("the simulated agents");
        let at = registry_revision(&t).await;
        let sampling = CancellationToken::new();
        let sampler = tokio::spawn(sample_instances(
            t.connect_again().await,
            at,
            sampling.clone(),
        ));
        apply(&t, &spec("v2", 6, 1, 0)).await;
        eventually(CONVERGE, "the first step is taken", || async {
            let status = t.visor.rollout_status("web").await.ok()?.value;
            let begun = status.revision.as_str() == "v2"
                && t.visor
                    .scale("web", "v2", "web")
                    .await
                    .is_ok_and(|s| s.value.replicas == 1);
            begun.then_some(())
        })
        .await;
        let shown = Cli::new(&t).json("rollout status web").await.json();
        assert_eq!(
            (&shown["phase"], &shown["ready"], &shown["old"]),
            (&json!("progressing"), &json!(0), &json!(6))
        );
        // Followed through the change of leader, until complete (as long as
        // that takes: the test's own limit bounds it).
        let follower_dir = tempfile::tempdir().expect("temp dir");
        let follower_out = follower_dir.path().join("stdout");
        let follower_err = follower_dir.path().join("stderr");
        let mut follower = tokio::process::Command::new(visor_testkit::cli::visor_binary())
            .args(["--endpoints", &t.server.endpoint()])
            .args(["rollout", "status", "web", "-w"])
            .stdout(std::fs::File::create(&follower_out).expect("stdout file"))
            .stderr(std::fs::File::create(&follower_err).expect("stderr file"))
            .kill_on_drop(true)
            .spawn()
            .expect("start visor rollout status -w");
        first.kill();
        second.wait_leading().await;
        let stop = CancellationToken::new();
        let agents = tokio::spawn(simulated_agents(
            t.connect_again().await,
            None,
            stop.clone(),
        ));
        eventually(
            CONVERGE,
            "six v2 instances run and the rollout is complete",
            || async {
                let status = t.visor.rollout_status("web").await.ok()?.value;
                let done = status.phase == RolloutPhase::Complete
                    && running(&t).await == BTreeMap::from([("v2".to_owned(), 6)])
                    && visor_testkit::controller::active(&t).await.len() == 6;
                done.then_some(())
            },
        )
        .await;
        let followed = tokio::time::timeout(CONVERGE, follower.wait()).await;
        let stdout = std::fs::read_to_string(&follower_out).unwrap_or_default();
        let context = format!(
            "{followed:?}\n--- stdout\n{stdout}--- stderr\n{}",
            std::fs::read_to_string(&follower_err).unwrap_or_default()
        );
        let status = followed
            .unwrap_or_else(|_| panic!("rollout status -w did not end: {context}"))
            .expect("wait for rollout status -w");
        assert!(status.success(), "{context}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(lines.len() >= 3, "{context}");
        assert!(
            lines
                .last()
                .is_some_and(|l| l.contains("complete") && l.contains("6/6")),
            "{context}"
        );
        sampling.cancel();
        let (lowest_ready, highest_total) = sampler.await.expect("the sampler");
        assert!(lowest_ready >= 6, "ready fell to {lowest_ready}");
        assert!(highest_total <= 7, "instances rose to {highest_total}");
        stop.cancel();
        agents.await.expect("the simulated agents");
    })
    .await;
}

/// Writes `spec` as a file `visor apply -f` reads.
fn spec_file(dir: &tempfile::TempDir, spec: &AppSpec) -> String {
    let path = dir.path().join(format!(
        "web-{}.json",
        spec.current.as_ref().map_or("none", |c| c.as_str())
    ));
    std::fs::write(&path, serde_json::to_vec(spec).expect("a spec serializes"))
        .expect("write the spec");
    path.display().to_string()
}

/// Its stderr's last line.
fn last_line(run: &visor_testkit::cli::Run) -> &str {
    run.stderr.lines().last().unwrap_or_default()
}

#[tokio::test]
async fn apply_wait_returns_once_the_rollout_is_complete_and_fails_naming_a_rollback() {
    within(LIMIT, "visor apply --wait never returns", async {
        let t = TestRegistry::start().await;
        let _controller = ControllerProcess::start(&t, "c1");
        let _hosts = hosts(&t).await;
        let stop = CancellationToken::new();
        let agents = tokio::spawn(simulated_agents(
            t.connect_again().await,
            Some("v3"),
            stop.clone(),
        ));
        let dir = tempfile::tempdir().expect("temp dir");
        let cli = Cli::new(&t);

        let v2 = spec_file(&dir, &spec_with("v2", 4, 1, 0, 2));
        let applied = cli.run(&format!("apply -f {v2} --wait --timeout 60s")).await;
        assert_eq!(applied.code, Some(0), "{}", applied.context());
        // When it returns, the registry shows what was asked for: no later look needed.
        let rollout = t.visor.rollout_status("web").await.expect("a rollout").value;
        assert_eq!((rollout.revision.as_str(), rollout.phase), ("v2", RolloutPhase::Complete));
        assert_eq!(running(&t).await, BTreeMap::from([("v2".to_owned(), 4)]));
        assert!(applied.stdout.contains("change(s) applied"), "{}", applied.context());
        // Progress went to stderr, plain lines since it is not a terminal.
        assert!(
            applied.stderr.lines().all(|l| l.starts_with("waiting: ") || l == "done: 4/4 running"),
            "{}",
            applied.context()
        );
        assert_eq!(last_line(&applied), "done: 4/4 running");

        // Applying it again changes nothing and is done at once.
        let again = cli.run(&format!("apply -f {v2} --wait")).await;
        assert_eq!(again.code, Some(0), "{}", again.context());
        assert_eq!(again.stderr, "done: 4/4 running\n", "{}", again.context());

        let v3 = spec_file(&dir, &spec_with("v3", 4, 1, 0, 2));
        let failed = cli.run(&format!("apply -f {v3} --wait --timeout 60s")).await;
        assert_eq!(failed.code, Some(1), "{}", failed.context());
        assert_eq!(
            last_line(&failed),
            "error: web: the rollout to v3 failed and rolls back to v2: revision v3 did not become ready within 2s",
            "{}",
            failed.context()
        );
        assert_eq!(running(&t).await, BTreeMap::from([("v2".to_owned(), 4)]));

        stop.cancel();
        agents.await.expect("the simulated agents");
    })
    .await;
}

#[tokio::test]
async fn scale_wait_returns_once_the_instances_run_and_times_out_naming_what_is_missing() {
    within(LIMIT, "visor scale --wait never returns", async {
        let t = TestRegistry::start().await;
        let _controller = ControllerProcess::start(&t, "c1");
        fixtures::seed(&t, "web", "v1", "http").await;
        let cli = Cli::new(&t);

        // No host: nothing can run, and the timeout says so.
        let stuck = cli.run("scale web v1 http=3 --wait --timeout 2s").await;
        assert_eq!(stuck.code, Some(1), "{}", stuck.context());
        assert_eq!(
            last_line(&stuck),
            "error: timed out after 2s waiting; still missing: web v1/http: 0 of 3 running, 3 unplaceable",
            "{}",
            stuck.context()
        );
        // The factor was written all the same: waiting is after writing.
        assert_eq!(t.visor.scale("web", "v1", "http").await.expect("scale").value.replicas, 3);

        let _hosts = hosts(&t).await;
        let stop = CancellationToken::new();
        let agents = tokio::spawn(simulated_agents(t.connect_again().await, None, stop.clone()));
        let waited = cli.run("-o json scale web v1 http=3 --wait --timeout 60s").await;
        assert_eq!(waited.code, Some(0), "{}", waited.context());
        assert_eq!(running(&t).await, BTreeMap::from([("v1".to_owned(), 3)]));
        // Stdout stays the command's own output; progress is on stderr.
        let printed: serde_json::Value =
            serde_json::from_str(&waited.stdout).expect("stdout is JSON");
        assert_eq!(
            printed,
            json!([{"app": "web", "rev": "v1", "proc": "http", "replicas": 3}])
        );
        assert_eq!(last_line(&waited), "done: 3/3 running");

        // --timeout without --wait is a usage error, found before anything is written.
        cli.run("scale web v1 http=5 --timeout 2s").await.usage_error("--wait");
        assert_eq!(t.visor.scale("web", "v1", "http").await.expect("scale").value.replicas, 3);

        stop.cancel();
        agents.await.expect("the simulated agents");
    })
    .await;
}
