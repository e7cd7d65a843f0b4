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
//! Reports p50 and p99 of both, the p50 ratio, and what the provider adds at
//! p50 in milliseconds (the goal: under 5 ms). Every process started is in a
//! session adopted by a [`Sessions`] guard, killed however the run ends.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use visor::provider::exec::instance::{StartArgs, StopArgs};
use visor::provider::exec::{ExecProvider, State};
use visor_testkit::cli::visor_binary;
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

    let (mut raw, mut provider) = (Vec::new(), Vec::new());
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

            if i >= WARM_UP {
                raw.push(raw_took);
                provider.push(provider_took);
            }
        }
    })
    .await;

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (raw50, raw99) = (percentile(&raw, 50.0), percentile(&raw, 99.0));
    let (p50, p99) = (percentile(&provider, 50.0), percentile(&provider, 99.0));
    println!("instance.start -> process running, {starts} starts each, alternating");
    println!("| path | p50 ms | p99 ms |");
    println!("|---|---:|---:|");
    println!(
        "| raw tokio::process spawn | {:.2} | {:.2} |",
        ms(raw50),
        ms(raw99)
    );
    println!(
        "| exec provider instance.start | {:.2} | {:.2} |",
        ms(p50),
        ms(p99)
    );
    println!(
        "p50 ratio provider/raw: {:.1}; the provider adds {:.2} ms at p50 (goal: under 5 ms)",
        p50.as_secs_f64() / raw50.as_secs_f64().max(f64::EPSILON),
        ms(p50.saturating_sub(raw50))
    );
}
