//! The exec provider's instance tasks against real processes, supervised by
//! the built `visor shim`: environment and working directory, log files and
//! their rotation, exit codes, idempotent starts, the invocation rule, stop
//! of a workload that ignores SIGTERM and its grandchildren, and supervisors
//! that outlive whoever started them.
//!
//! Every process a test starts is in a session adopted by a
//! [`Sessions`] guard, killed when the test ends however it ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use visor::provider::{Caller, CallerConfig, Liveness};

use visor::provider::exec::instance::{
    InstanceArgs, InstanceStatus, LogArgs, StartArgs, StopArgs, WaitArgs,
};
use visor::provider::exec::{ExecProvider, InstanceError, Instances, State};
use visor_testkit::cli::visor_binary;
use visor_testkit::procfs;
use visor_testkit::sessions::Sessions;
use visor_testkit::{eventually, within};

/// Bound on one test.
const LIMIT: Duration = Duration::from_secs(60);
/// Bound on waiting for a condition inside a test.
const SETTLE: Duration = Duration::from_secs(20);

struct Setup {
    root: tempfile::TempDir,
    instances: Instances,
    sessions: Sessions,
}

fn setup() -> Setup {
    // Short paths: the control socket's must fit a unix socket address.
    let root = tempfile::Builder::new()
        .prefix("vx")
        .tempdir_in("/tmp")
        .expect("a temporary directory");
    let instances = ExecProvider::new(root.path())
        .expect("the test binary's path")
        .with_supervisor(visor_binary())
        .instances();
    Setup {
        root,
        instances,
        sessions: Sessions::default(),
    }
}

fn instance_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Start args running `script` with `sh -c`.
fn shell(instance: &str, invocation: &str, script: &str) -> StartArgs {
    StartArgs {
        instance: instance.to_owned(),
        invocation: invocation.to_owned(),
        command: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        env: BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]),
        working_dir: None,
        kill_timeout: None,
        logs: None,
    }
}

fn which(instance: &str, invocation: &str) -> InstanceArgs {
    InstanceArgs {
        instance: instance.to_owned(),
        invocation: invocation.to_owned(),
    }
}

impl Setup {
    async fn start(&self, args: StartArgs) -> InstanceStatus {
        let what = format!("start {}", args.instance);
        let status = self.instances.start(args).await.expect(&what);
        if let Some(pid) = status.pid {
            self.sessions.adopt(pid);
        }
        status
    }

    async fn wait(&self, instance: &str, invocation: &str) -> InstanceStatus {
        let args = WaitArgs {
            instance: instance.to_owned(),
            invocation: invocation.to_owned(),
            timeout: SETTLE,
        };
        let status = self.instances.wait(args).await.expect("wait");
        assert_eq!(
            status.state,
            State::Exited,
            "the workload exited: {status:?}"
        );
        status
    }

    async fn stop(
        &self,
        instance: &str,
        invocation: &str,
        kill_timeout: Duration,
    ) -> InstanceStatus {
        let args = StopArgs {
            instance: instance.to_owned(),
            invocation: invocation.to_owned(),
            kill_timeout: Some(kill_timeout),
        };
        self.instances.stop(args).await.expect("stop")
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn runs_a_process_with_its_env_and_working_dir_and_reports_its_exit() {
    let t = setup();
    within(LIMIT, "start, wait and logs of a short process", async {
        let work = t.root.path().join("work");
        std::fs::create_dir(&work).expect("a working dir");
        let id = instance_id();
        let mut args = shell(
            &id,
            "a",
            r#"echo "$GREETING from $(pwd)"; echo "no HOME: ${HOME:-unset}"; echo oops >&2; exit 3"#,
        );
        args.env.insert("GREETING".into(), "hello".into());
        args.working_dir = Some(work.clone());
        let started = t.start(args).await;
        assert!(matches!(started.state, State::Running | State::Exited), "{started:?}");
        assert!(started.pid.is_some());

        let exited = t.wait(&id, "a").await;
        let exit = exited.exit.expect("an exit is recorded");
        assert_eq!((exit.code, exit.signal), (Some(3), None));
        assert_eq!(exited.started_at, started.started_at);
        let stdout = read(&exited.logs.stdout);
        assert_eq!(
            stdout,
            format!("hello from {}\nno HOME: unset\n", work.display()),
            "the environment is exactly the one given"
        );
        assert_eq!(read(&exited.logs.stderr), "oops\n");
    })
    .await;
}

#[tokio::test]
async fn output_lands_in_rotated_files() {
    let t = setup();
    within(LIMIT, "a process writing 200 lines", async {
        let id = instance_id();
        let mut args = shell(
            &id,
            "a",
            r#"i=0; while [ $i -lt 200 ]; do echo "line $i"; i=$((i+1)); done"#,
        );
        args.logs = Some(LogArgs {
            max_bytes: 500,
            keep: 3,
        });
        t.start(args).await;
        let exited = t.wait(&id, "a").await;
        assert_eq!(exited.exit.and_then(|e| e.code), Some(0));

        let current = exited.logs.stdout;
        let rotated = |n: u32| current.with_file_name(format!("stdout.log.{n}"));
        assert!(rotated(1).exists(), "the output rotated");
        assert!(!rotated(4).exists(), "only three rotated files are kept");
        let kept: String = [rotated(3), rotated(2), rotated(1), current.clone()]
            .iter()
            .map(|path| {
                let text = read(path);
                assert!(
                    text.len() <= 500,
                    "{} holds {} bytes",
                    path.display(),
                    text.len()
                );
                text
            })
            .collect();
        let all: String = (0..200).map(|i| format!("line {i}\n")).collect();
        assert!(
            kept.len() >= 1500,
            "three full files and the current one are kept"
        );
        assert!(all.ends_with(&kept), "the newest output is kept, in order");
    })
    .await;
}

#[tokio::test]
async fn start_is_idempotent_per_invocation() {
    let t = setup();
    within(LIMIT, "starting one invocation twice, then another", async {
        let id = instance_id();
        let (first, concurrent) = tokio::join!(
            t.start(shell(&id, "a", "exec sleep 1000")),
            t.start(shell(&id, "a", "exec sleep 1000")),
        );
        assert_eq!(first.state, State::Running);
        assert_eq!(concurrent, first, "concurrent starts of one invocation start it once");
        let again = t.start(shell(&id, "a", "exec sleep 1000")).await;
        assert_eq!(again, first, "the same invocation is reported, not started again");

        let wait = WaitArgs {
            instance: id.clone(),
            invocation: "a".into(),
            timeout: Duration::from_millis(50),
        };
        let waited = t.instances.wait(wait).await.expect("wait");
        assert_eq!(waited.state, State::Running, "still running at the wait's deadline");

        let refused = t.instances.start(shell(&id, "b", "exec sleep 1000")).await;
        assert!(
            matches!(&refused, Err(InstanceError::AlreadyRunning { running, .. }) if running == "a"),
            "{refused:?}"
        );

        let stopped = t.stop(&id, "a", Duration::from_secs(5)).await;
        assert_eq!(stopped.state, State::Exited);
        assert_eq!(stopped.exit.and_then(|e| e.signal), Some(15), "SIGTERM sufficed");
        // An ended invocation is reported as it ended, not run again.
        let ended = t.start(shell(&id, "a", "exec sleep 1000")).await;
        assert_eq!((ended.state, ended.exit), (State::Exited, stopped.exit));

        let next = t.start(shell(&id, "b", "exec sleep 1000")).await;
        assert_eq!(next.state, State::Running);
        assert_ne!(next.pid, first.pid);
        t.stop(&id, "b", Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test]
async fn a_wrong_invocation_is_refused_while_running_and_after_the_exit() {
    let t = setup();
    within(LIMIT, "asking with the wrong invocation id", async {
        let id = instance_id();
        let started = t.start(shell(&id, "right", "exec sleep 1000")).await;
        let refused = |result: Result<InstanceStatus, InstanceError>| {
            assert!(
                matches!(&result, Err(InstanceError::OtherInvocation { actual, .. }) if actual == "right"),
                "{result:?}"
            );
        };
        refused(t.instances.status(which(&id, "wrong")).await);
        refused(t.instances.attach(which(&id, "wrong")).await);
        let stop = StopArgs {
            instance: id.clone(),
            invocation: "wrong".into(),
            kill_timeout: Some(Duration::ZERO),
        };
        refused(t.instances.stop(stop).await);
        let pid = started.pid.expect("a pid");
        assert!(procfs::is_running(pid), "a refused stop stops nothing");

        let shim = procfs::session(pid).expect("the workload's session: its supervisor");
        t.stop(&id, "right", Duration::from_secs(5)).await;
        // The supervisor is gone once it recorded the exit, and reaped by
        // the provider that spawned it (no zombie); the file answers.
        let proc_entry = PathBuf::from(format!("/proc/{shim}"));
        eventually(SETTLE, "the supervisor ends and is reaped", || async {
            (!proc_entry.exists()).then_some(())
        })
        .await;
        let socket = t.root.path().join("instances").join(&id).join("control.sock");
        eventually(SETTLE, "the supervisor removes its socket", || async {
            (!socket.exists()).then_some(())
        })
        .await;
        let status = t.instances.status(which(&id, "right")).await.expect("status");
        assert_eq!(status.state, State::Exited);
        refused(t.instances.attach(which(&id, "wrong")).await);

        let unknown = t.instances.status(which(&instance_id(), "right")).await;
        assert!(matches!(unknown, Err(InstanceError::NotFound { .. })), "{unknown:?}");
        let invalid = t.instances.status(which("../etc", "right")).await;
        assert!(matches!(invalid, Err(InstanceError::InvalidId(_))), "{invalid:?}");
    })
    .await;
}

#[tokio::test]
async fn stop_kills_a_process_ignoring_sigterm_and_its_grandchildren() {
    let t = setup();
    within(LIMIT, "stopping a workload that ignores SIGTERM", async {
        let id = instance_id();
        let script =
            r#"trap "" TERM; sleep 1000 & echo $!; sleep 1000 & echo $!; echo ready; wait"#;
        let started = t.start(shell(&id, "a", script)).await;
        let stdout = started.logs.stdout.clone();
        let grandchildren: Vec<u32> =
            eventually(SETTLE, "the workload prints its children", || async {
                let text = read(&stdout);
                text.contains("ready")
                    .then(|| text.lines().filter_map(|line| line.parse().ok()).collect())
            })
            .await;
        assert_eq!(grandchildren.len(), 2);
        let pid = started.pid.expect("a pid");
        for child in &grandchildren {
            assert_eq!(
                procfs::process_group(*child),
                Some(pid),
                "in the workload's group"
            );
        }

        let stopped = t.stop(&id, "a", Duration::from_millis(200)).await;
        assert_eq!(stopped.state, State::Exited);
        assert_eq!(
            stopped.exit.and_then(|e| e.signal),
            Some(9),
            "killed: it ignored SIGTERM"
        );
        for child in grandchildren {
            eventually(SETTLE, "no grandchild survives the stop", || async {
                (!procfs::is_running(child)).then_some(())
            })
            .await;
        }
        assert!(!procfs::is_running(pid));
    })
    .await;
}

#[tokio::test]
async fn a_killed_supervisor_leaves_the_instance_lost() {
    let t = setup();
    within(LIMIT, "status after the supervisor was killed", async {
        let id = instance_id();
        let started = t.start(shell(&id, "a", "exec sleep 1000")).await;
        let pid = started.pid.expect("a pid");
        let shim = procfs::session(pid).expect("the workload's session");
        assert_ne!(
            shim,
            std::process::id(),
            "the supervisor has a session of its own"
        );
        assert!(
            procfs::is_running(shim),
            "the session leader is the supervisor"
        );
        let shim_pid = rustix::process::Pid::from_raw(shim as i32).expect("a pid");
        rustix::process::kill_process(shim_pid, rustix::process::Signal::KILL).expect("kill");
        eventually(SETTLE, "the supervisor dies", || async {
            (!procfs::is_running(shim)).then_some(())
        })
        .await;
        let status = t.instances.status(which(&id, "a")).await.expect("status");
        assert_eq!(
            status.state,
            State::Lost,
            "no supervisor and no exit recorded"
        );
        assert!(
            procfs::is_running(pid),
            "the workload outlives its supervisor"
        );
        // Where the machine has cgroup v2, the workload is in a cgroup of the
        // invocation's own, which the provider reclaims before a replacement.
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let in_own_cgroup = cgroups.contains(&format!("visor-{id}-a"));

        // A new invocation may start: the lost one has no supervisor to refuse it.
        let next = t.start(shell(&id, "b", "exec sleep 1000")).await;
        assert_eq!(next.state, State::Running);
        if in_own_cgroup {
            assert!(
                !procfs::is_running(pid),
                "the lost workload was killed with its cgroup"
            );
        }
        t.stop(&id, "b", Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test]
async fn a_start_that_cannot_spawn_says_why_and_runs_nothing() {
    let t = setup();
    within(LIMIT, "starting a program that does not exist", async {
        let id = instance_id();
        let mut args = shell(&id, "a", "");
        args.command = "/nonexistent/program".into();
        let error = t.instances.start(args).await.expect_err("nothing to run");
        let message = visor::telemetry::Chain(&error).to_string();
        assert!(message.contains("/nonexistent/program"), "{message}");
        let status = t.instances.status(which(&id, "a")).await;
        assert!(
            matches!(status, Err(InstanceError::NotFound { .. })),
            "{status:?}"
        );
    })
    .await;
}

/// `visor provider exec` as a child process, killed on drop.
struct ProviderProcess {
    child: Child,
}

impl ProviderProcess {
    /// Starts it and waits until `caller` sees every instance task served
    /// by a live owner (a killed provider's sockets are still there, stale).
    async fn start(root: &Path, caller: &Caller) -> Self {
        let sockets = root.join("sockets");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("provider.log"))
            .expect("the provider's log");
        let child = Command::new(visor_binary())
            .args(["provider", "exec", "--log-level", "info", "--data-dir"])
            .arg(root.join("data"))
            .arg("--socket-dir")
            .arg(&sockets)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn visor provider exec");
        let provider = Self { child };
        let tasks = ["start", "stop", "status", "wait", "attach"].map(|t| format!("instance.{t}"));
        eventually(
            SETTLE,
            "the provider serves every instance task",
            || async {
                let live = |task: &String| {
                    caller.candidates(task).is_ok_and(|candidates| {
                        candidates.iter().any(|c| c.liveness == Liveness::Live)
                    })
                };
                tasks.iter().all(live).then_some(())
            },
        )
        .await;
        provider
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Calls `task` through the framework: the result, or the error the
/// provider answered with.
async fn call(caller: &Caller, task: &str, args: Value) -> Result<InstanceStatus, String> {
    let reply = caller
        .call(task, args)
        .await
        .expect("the request is acknowledged");
    match reply.response.error {
        Some(error) => Err(error),
        None => Ok(serde_json::from_value(reply.response.result).expect("an instance status")),
    }
}

#[tokio::test]
async fn a_workload_outlives_a_killed_provider_and_is_reattached() {
    let t = setup();
    within(
        LIMIT,
        "SIGKILL of visor provider exec, then a new one",
        async {
            let root = t.root.path();
            let caller = Caller::bind(CallerConfig::new(root.join("sockets"), "test"))
                .await
                .expect("a caller");
            let mut first = ProviderProcess::start(root, &caller).await;
            let work = root.join("work");
            std::fs::create_dir(&work).expect("a working dir");
            let id = instance_id();
            let script = "while [ ! -e go ]; do sleep 0.05; done; echo done; exit 7";
            let start = json!({
                "instance": id, "invocation": "a", "command": "/bin/sh", "args": ["-c", script],
                "env": {"PATH": "/usr/bin:/bin"}, "working_dir": work,
            });
            let started = call(&caller, "instance.start", start)
                .await
                .expect("started");
            let pid = started.pid.expect("a pid");
            t.sessions.adopt(pid);
            assert_eq!(started.state, State::Running);

            first.kill();
            assert!(
                procfs::is_running(pid),
                "the workload survives the provider"
            );

            // A new provider on the same data dir (over the killed one's stale sockets).
            let _second = ProviderProcess::start(root, &caller).await;
            let attach = |invocation: &str| json!({"instance": id, "invocation": invocation});
            let attached = call(&caller, "instance.attach", attach("a"))
                .await
                .expect("attached");
            assert_eq!((attached.state, attached.pid), (State::Running, Some(pid)));
            assert_eq!(attached.started_at, started.started_at);
            let refused = call(&caller, "instance.attach", attach("b")).await;
            let error = refused.expect_err("another invocation is refused");
            assert!(error.contains("is invocation a, not b"), "{error}");

            std::fs::write(work.join("go"), "").expect("tell the workload to exit");
            let wait = json!({"instance": id, "invocation": "a", "timeout": "20s"});
            let exited = call(&caller, "instance.wait", wait).await.expect("waited");
            assert_eq!(exited.state, State::Exited);
            assert_eq!(exited.exit.and_then(|e| e.code), Some(7));
            assert_eq!(read(&exited.logs.stdout), "done\n");
            let refused = call(&caller, "instance.status", attach("b")).await;
            assert!(refused.is_err(), "refused after the exit too: {refused:?}");
        },
    )
    .await;
}
