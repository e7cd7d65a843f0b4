//! `hook.run` against real processes: exit codes and signals, the
//! environment and working directory given, output kept bounded, a timeout
//! that kills the hook's whole group (grandchildren included, checked in
//! `/proc`), a missing hook, paths that escape the revision, and the task
//! through the provider framework.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use visor::provider::Provider;
use visor::provider::exec::hook::{
    HookArgs, HookConfig, HookEnv, HookError, HookRun, HookRunner, InsidePath, Output,
};
use visor::provider::exec::{self, ExecProvider};
use visor_testkit::{eventually, procfs, within};

use crate::archives::{Store, fetch_args, name};
use crate::support::{Running, SocketDir};

/// Bound on one test.
const LIMIT: Duration = Duration::from_secs(60);
/// Bound on a killed process disappearing from `/proc`.
const SETTLE: Duration = Duration::from_secs(20);

/// The revision's hooks: shell scripts, and one that is not executable.
const HOOKS: &[(&str, &str)] = &[
    ("exit-3", "echo out; echo err >&2; exit 3"),
    ("env", "echo \"$GREETING\"; pwd; env"),
    ("term-self", "kill -TERM $$"),
    // A grandchild in the background, its pid said first; then a wait
    // that only the timeout ends.
    ("hang", "sleep 1000 & echo $!; sleep 1000"),
    // Exits at once, leaving a grandchild behind in its group.
    ("leave", "sleep 1000 & echo $!"),
    (
        "chatty",
        "head -c 100000 /dev/zero | tr '\\0' a; echo; echo end",
    ),
];

/// A fetched revision `web/v1` holding [`HOOKS`] under `hooks/`.
struct Revision {
    store: Store,
}

impl Revision {
    async fn fetch() -> Self {
        let store = Store::new();
        let source = store.data_dir().join("src");
        std::fs::create_dir_all(source.join("hooks")).expect("source tree");
        for (hook, body) in HOOKS {
            let path = source.join("hooks").join(hook);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write a hook");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::write(source.join("hooks/plain"), "#!/bin/sh\n").expect("write a hook");
        let url = format!("file://{}", source.display());
        store
            .store
            .fetch(fetch_args("v1", &url))
            .await
            .expect("fetched");
        Self { store }
    }

    fn runner(&self) -> HookRunner {
        self.runner_with(HookConfig::default())
    }

    fn runner_with(&self, config: HookConfig) -> HookRunner {
        HookRunner::new(self.store.store.clone(), config)
    }

    fn dir(&self) -> std::path::PathBuf {
        self.store.app_dir().join("v1")
    }
}

fn args(hook: &str) -> HookArgs {
    HookArgs {
        app: name("web"),
        revision: name("v1"),
        hook: InsidePath::parse(hook).expect("a path inside"),
        env: HookEnv::try_from(BTreeMap::from([(
            "PATH".to_owned(),
            "/usr/bin:/bin".to_owned(),
        )]))
        .expect("a valid env"),
        working_dir: None,
        timeout: None,
    }
}

fn output(tail: &str) -> Output {
    Output {
        tail: tail.to_owned(),
        dropped_bytes: 0,
    }
}

/// The pid a hook printed first.
fn first_pid(stdout: &Output) -> u32 {
    stdout
        .tail
        .lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or_else(|| panic!("the hook printed a pid first: {stdout:?}"))
}

async fn assert_gone(pid: u32, what: &str) {
    eventually(SETTLE, what, || async move {
        (!procfs::is_running(pid)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_hook_reports_its_exit_code_or_signal_with_its_output() {
    within(LIMIT, "a hook run hangs", async {
        let revision = Revision::fetch().await;
        let runner = revision.runner();
        let run = runner.run(args("hooks/exit-3")).await.expect("ran");
        assert_eq!(
            run,
            HookRun::Exited {
                code: 3,
                stdout: output("out\n"),
                stderr: output("err\n"),
            }
        );
        assert!(!run.succeeded());
        let run = runner.run(args("hooks/term-self")).await.expect("ran");
        assert!(
            matches!(run, HookRun::Signaled { signal: 15, .. }),
            "{run:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_hook_gets_exactly_the_env_and_working_dir_given() {
    within(LIMIT, "a hook run hangs", async {
        let revision = Revision::fetch().await;
        let mut args = args("./hooks//env");
        args.env = HookEnv::try_from(BTreeMap::from([
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            ("GREETING".to_owned(), "hello from the agent".to_owned()),
            ("JUJU_REMOTE_UNIT".to_owned(), "db-1".to_owned()),
        ]))
        .expect("a valid env");
        args.working_dir = Some(InsidePath::parse("hooks").expect("a path inside"));
        let run = revision.runner().run(args).await.expect("ran");
        let HookRun::Exited {
            code: 0, stdout, ..
        } = run
        else {
            panic!("the hook succeeded: {run:?}");
        };
        let mut lines = stdout.tail.lines();
        assert_eq!(lines.next(), Some("hello from the agent"));
        let hooks = revision
            .dir()
            .join("hooks")
            .canonicalize()
            .expect("canonical");
        assert_eq!(lines.next().map(Path::new), Some(hooks.as_path()));
        let keys: Vec<&str> = lines
            .filter_map(|line| line.split_once('=').map(|(key, _)| key))
            .collect();
        for given in ["PATH", "GREETING", "JUJU_REMOTE_UNIT"] {
            assert!(keys.contains(&given), "{given} reached the hook: {keys:?}");
        }
        // Nothing else but what the shell itself sets: the provider's own
        // environment (cargo's variables, HOME...) is not inherited.
        let shell_own = ["PWD", "SHLVL", "_", "OLDPWD"];
        let others: Vec<&&str> = keys
            .iter()
            .filter(|key| {
                !["PATH", "GREETING", "JUJU_REMOTE_UNIT"].contains(key) && !shell_own.contains(key)
            })
            .collect();
        assert!(others.is_empty(), "inherited: {others:?}");
    })
    .await;
}

#[tokio::test]
async fn a_timeout_kills_the_hook_and_its_grandchildren() {
    within(LIMIT, "a hook outlives its timeout", async {
        let revision = Revision::fetch().await;
        let mut args = args("hooks/hang");
        // Long enough for the shell to say its grandchild's pid, however
        // loaded the machine; the hook itself would wait 1000 s.
        args.timeout = Some(Duration::from_secs(3));
        let run = revision.runner().run(args).await.expect("ran");
        let HookRun::TimedOut { stdout, .. } = run else {
            panic!("the hook timed out: {run:?}");
        };
        assert_gone(
            first_pid(&stdout),
            "the hook's grandchild is killed with its group",
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn what_a_hook_leaves_running_in_its_group_is_killed_when_it_exits() {
    within(LIMIT, "a hook run hangs", async {
        let revision = Revision::fetch().await;
        let run = revision
            .runner()
            .run(args("hooks/leave"))
            .await
            .expect("ran");
        let HookRun::Exited {
            code: 0, stdout, ..
        } = run
        else {
            panic!("the hook succeeded: {run:?}");
        };
        assert_gone(first_pid(&stdout), "the grandchild left behind is killed").await;
    })
    .await;
}

#[tokio::test]
async fn output_is_kept_bounded_to_its_tail() {
    within(LIMIT, "a hook run hangs", async {
        let revision = Revision::fetch().await;
        let runner = revision.runner_with(HookConfig {
            output_limit: 16,
            ..HookConfig::default()
        });
        let run = runner.run(args("hooks/chatty")).await.expect("ran");
        let HookRun::Exited {
            code: 0, stdout, ..
        } = run
        else {
            panic!("the hook succeeded: {run:?}");
        };
        assert_eq!(stdout.tail, "aaaaaaaaaaa\nend\n");
        assert_eq!(stdout.dropped_bytes, 100_000 + 5 - 16);
    })
    .await;
}

#[tokio::test]
async fn a_missing_hook_runs_nothing_and_bad_hooks_are_errors() {
    within(LIMIT, "a hook run hangs", async {
        let revision = Revision::fetch().await;
        let runner = revision.runner();
        for missing in ["hooks/db-relation-joined", "no-such-dir/install"] {
            let run = runner
                .run(args(missing))
                .await
                .expect("missing is a result");
            assert_eq!(run, HookRun::Missing, "{missing}");
            assert!(run.succeeded());
        }
        let refused = runner
            .run(args("hooks/plain"))
            .await
            .expect_err("not executable");
        assert!(
            matches!(refused, HookError::NotExecutable { .. }),
            "{refused:?}"
        );
        let refused = runner.run(args("hooks")).await.expect_err("a directory");
        assert!(matches!(refused, HookError::NotAFile { .. }), "{refused:?}");

        // The cache itself altered to point out of the revision: a hook and
        // a working directory that resolve outside are refused, unrun.
        std::os::unix::fs::symlink("/bin/true", revision.dir().join("hooks/out")).expect("symlink");
        let refused = runner.run(args("hooks/out")).await.expect_err("escapes");
        assert!(matches!(refused, HookError::Escapes { .. }), "{refused:?}");
        std::os::unix::fs::symlink("/tmp", revision.dir().join("tmp")).expect("symlink");
        let mut outside = args("hooks/exit-3");
        outside.working_dir = Some(InsidePath::parse("tmp").expect("a path inside"));
        let refused = runner.run(outside).await.expect_err("escapes");
        assert!(matches!(refused, HookError::Escapes { .. }), "{refused:?}");

        let mut unfetched = args("hooks/exit-3");
        unfetched.revision = name("v2");
        let refused = runner.run(unfetched).await.expect_err("not fetched");
        assert_eq!(refused.to_string(), "revision v2 of app web is not fetched");
    })
    .await;
}

#[tokio::test]
async fn hook_run_is_served_by_the_exec_provider_and_escaping_paths_are_refused_in_the_ack() {
    within(LIMIT, "the provider or the call hangs", async {
        let revision = Revision::fetch().await;
        let sockets = SocketDir::new();
        let exec = ExecProvider::new(revision.store.data_dir()).expect("an exec provider");
        let provider = exec::register(Provider::new(sockets.config("exec", 50)), &exec);
        let _running = Running::start(provider).await;
        let caller = sockets.caller().await;

        let reply = caller
            .call(
                "hook.run",
                json!({"app": "web", "revision": "v1", "hook": "hooks/exit-3", "env": {"PATH": "/bin"}}),
            )
            .await
            .expect("acknowledged");
        let result = reply.response.into_result().expect("ran");
        assert_eq!(
            result,
            json!({
                "status": "exited",
                "code": 3,
                "stdout": {"tail": "out\n", "dropped_bytes": 0},
                "stderr": {"tail": "err\n", "dropped_bytes": 0},
            })
        );
        let missing = caller
            .call("hook.run", json!({"app": "web", "revision": "v1", "hook": "hooks/nope"}))
            .await
            .expect("acknowledged");
        assert_eq!(missing.response.into_result().expect("ran"), json!({"status": "missing"}));

        for hook in ["../../../bin/sh", "/bin/sh"] {
            let refused = caller
                .call("hook.run", json!({"app": "web", "revision": "v1", "hook": hook}))
                .await
                .expect_err("refused");
            assert!(refused.to_string().contains("invalid args"), "{hook}: {refused}");
        }
    })
    .await;
}
