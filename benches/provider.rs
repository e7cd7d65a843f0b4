//! `instance.start` → process running, against a raw `tokio::process` spawn
//! of the same command, in the same run.
//!
//! `cargo bench --bench provider` starts N = 200 instances
//! (`VISOR_BENCH_STARTS` to change) of `/bin/sleep 1000` through the exec
//! provider's `instance.start` (which spawns `visor shim`, the built binary,
//! which spawns the workload and reports it running), and N raw spawns of
//! the same command in a process group of its own, alternating one of each
//! so both meet the same machine. Each sample is timed from the call to its
//! return: the workload has been exec'd when either returns. Every instance
//! and raw process is stopped between samples, outside the timing. Ten
//! starts of each warm up first, untimed.
//!
//! A third path times the same start as the host agent makes it: a
//! [`Caller`] sending `instance.start` to a `visor provider exec` child
//! process through its socket, until the response arrives on the caller's
//! response hook.
//!
//! Reports p50 and p99 of each, the p50 ratios, and what the provider adds at
//! p50 in milliseconds (the goal: under 5 ms). Every process started is in a
//! session adopted by a [`Sessions`] guard, killed however the run ends.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use visor::provider::exec::instance::{InstanceStatus, StartArgs, StopArgs};
use visor::provider::exec::{ExecProvider, State};
use visor::provider::{Caller, CallerConfig};
use visor_testkit::cli::visor_binary;
use visor_testkit::exec_provider::ExecProviderProcess;
use visor_testkit::sessions::Sessions;
use visor_testkit::stats::percentile;
use visor_testkit::within;

const WARM_UP: usize = 10;
/// Bound on the whole run.
const LIMIT: Duration = Duration::from_secs(600);

#[tokio::main]
async fn main() {
    let starts: usize = std::env::var("VISOR_BENCH_STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let root = tempfile::Builder::new()
        .prefix("vb")
        .tempdir_in("/tmp")
        .expect("a temporary directory");
    let instances = ExecProvider::new(root.path())
        .expect("this program's path")
        .with_supervisor(visor_binary())
        .instances();
    let sessions = Sessions::default();
    let sockets = root.path().join("sockets");
    let caller = Caller::bind(CallerConfig::new(&sockets, "bench"))
        .await
        .expect("a caller");
    let log = root.path().join("provider.log");
    let data = root.path().join("data");
    let _served = ExecProviderProcess::start(&data, &sockets, &log, &caller, LIMIT).await;

    let (mut raw, mut provider, mut framework) = (Vec::new(), Vec::new(), Vec::new());
    within(LIMIT, "starting and stopping instances", async {
        for i in 0..WARM_UP + starts {
            let began = Instant::now();
            let mut child = tokio::process::Command::new("/bin/sleep")
                .arg("1000")
                .env_clear()
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn()
                .expect("spawn /bin/sleep");
            let raw_took = began.elapsed();
            child.kill().await.expect("kill the raw process");

            let id = uuid::Uuid::now_v7().to_string();
            let args = StartArgs {
                instance: id.clone(),
                invocation: "bench".into(),
                command: "/bin/sleep".into(),
                args: vec!["1000".into()],
                env: BTreeMap::new(),
                working_dir: None,
                kill_timeout: None,
                logs: None,
            };
            let began = Instant::now();
            let status = instances.start(args).await.expect("instance.start");
            let provider_took = began.elapsed();
            assert_eq!(status.state, State::Running, "{status:?}");
            if let Some(pid) = status.pid {
                sessions.adopt(pid);
            }
            let stop = StopArgs {
                instance: id,
                invocation: "bench".into(),
                kill_timeout: Some(Duration::ZERO),
            };
            let stopped = instances.stop(stop).await.expect("instance.stop");
            assert_eq!(stopped.state, State::Exited, "{stopped:?}");

            let id = uuid::Uuid::now_v7().to_string();
            let start = json!({
                "instance": id, "invocation": "bench", "command": "/bin/sleep", "args": ["1000"],
            });
            let began = Instant::now();
            let reply = caller.call("instance.start", start).await;
            let framework_took = began.elapsed();
            let reply = reply.expect("instance.start is acknowledged");
            assert_eq!(
                reply.response.error, None,
                "instance.start through the framework"
            );
            let status: InstanceStatus =
                serde_json::from_value(reply.response.result).expect("an instance status");
            if let Some(pid) = status.pid {
                sessions.adopt(pid);
            }
            let stop = json!({"instance": id, "invocation": "bench", "kill_timeout": "0s"});
            let stopped = caller
                .call("instance.stop", stop)
                .await
                .expect("instance.stop");
            assert_eq!(
                stopped.response.error, None,
                "instance.stop through the framework"
            );

            if i >= WARM_UP {
                raw.push(raw_took);
                provider.push(provider_took);
                framework.push(framework_took);
            }
        }
    })
    .await;

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let raw50 = percentile(&raw, 50.0);
    let ratio = |d: Duration| d.as_secs_f64() / raw50.as_secs_f64().max(f64::EPSILON);
    println!("instance.start -> process running, {starts} starts each, alternating");
    println!("| path | p50 ms | p99 ms | p50 ÷ raw | adds at p50, ms |");
    println!("|---|---:|---:|---:|---:|");
    let rows = [
        ("raw tokio::process spawn", &raw),
        ("exec provider in process (Instances::start)", &provider),
        (
            "through the framework (Caller → visor provider exec)",
            &framework,
        ),
    ];
    for (path, samples) in rows {
        let (p50, p99) = (percentile(samples, 50.0), percentile(samples, 99.0));
        let (p50_ms, p99_ms, adds) = (ms(p50), ms(p99), ms(p50.saturating_sub(raw50)));
        println!(
            "| {path} | {p50_ms:.2} | {p99_ms:.2} | {:.1} | {adds:.2} |",
            ratio(p50)
        );
    }
    println!("goal: the provider adds under 5 ms at p50");
}
