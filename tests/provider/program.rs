//! A provider program, `examples/greeter_provider.rs`, as a child process:
//! its configuration from flags over the environment over its file, typed
//! args and errors through the framework, a refused config naming its field,
//! and SIGTERM removing its socket before it exits.
//!
//! A plain `cargo test` builds the example next to the test binaries
//! (`cargo test --test provider` alone does not: run `cargo build --example
//! greeter_provider` before it).

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use visor::provider::{AttemptFailure, CallError};
use visor_testkit::examples::example;
use visor_testkit::within;

use crate::support::{LIMIT, SocketDir};

/// A running greeter, killed on drop.
struct Greeter {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Greeter {
    async fn start(args: &[&str], env: &[(&str, &str)]) -> (Self, String) {
        let mut child = Command::new(example("greeter_provider"))
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the greeter");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut greeter = Self {
            child,
            stdout: BufReader::new(stdout).lines(),
        };
        let line = greeter.line("the greeter never says it serves").await;
        let socket = line
            .strip_prefix("serving ")
            .unwrap_or_else(|| panic!("expected `serving <socket>`, got {line:?}"))
            .to_owned();
        (greeter, socket)
    }

    async fn line(&mut self, what: &str) -> String {
        within(Duration::from_secs(10), what, self.stdout.next_line())
            .await
            .expect("read the greeter's stdout")
            .unwrap_or_else(|| panic!("the greeter's stdout closed: {what}"))
    }

    async fn terminate(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -TERM");
        assert_eq!(
            self.line("the greeter does not stop on SIGTERM").await,
            "stopped"
        );
        let status = within(
            Duration::from_secs(10),
            "the greeter does not exit",
            self.child.wait(),
        )
        .await
        .expect("wait");
        assert!(status.success(), "clean exit on SIGTERM: {status}");
    }
}

#[tokio::test]
async fn a_provider_program_takes_flags_over_environment_over_file_and_stops_on_sigterm() {
    within(LIMIT, "the greeter or a call hangs", async {
        let dir = SocketDir::new();
        let config = dir.path().join("greeter.json");
        std::fs::write(
            &config,
            json!({"service_name": "file", "tasks": {"greet": {"priority": 70, "timeout": "5s"}}})
                .to_string(),
        )
        .expect("write config");
        let socket_dir = dir.path().display().to_string();
        let config_arg = config.display().to_string();
        let env = [("VISOR_PROVIDER_SOCKET_DIR", socket_dir.as_str()), ("VISOR_PROVIDER_SERVICE_NAME", "env")];

        let (greeter, socket) = Greeter::start(&["--config", &config_arg], &env).await;
        assert_eq!(socket, dir.socket("greet", 70, "env").display().to_string());
        let caller = dir.caller().await;
        let reply = caller.call("greet", json!({"name": "visor"})).await.expect("call");
        assert_eq!(reply.response.into_result(), Ok(json!({"greeting": "hello, visor", "by": "env"})));
        let failed = caller.call("greet", json!({"name": ""})).await.expect("call");
        assert_eq!(failed.response.error.as_deref(), Some("nobody to greet: name is empty"));
        let refused = caller.call("greet", json!({"nme": "x"})).await.expect_err("refused");
        let CallError::NotAcknowledged { attempts, .. } = &refused else {
            panic!("{refused:?}");
        };
        assert!(
            matches!(&attempts[0].failure, AttemptFailure::Refused(why) if why.contains("unknown field `nme`")),
            "{refused}"
        );

        greeter.terminate().await;
        assert!(!dir.socket("greet", 70, "env").exists(), "the socket is removed on SIGTERM");
        assert!(!dir.socket("greet", 70, "env").with_extension("lock").exists());

        let (greeter, socket) =
            Greeter::start(&["--config", &config_arg, "--service-name", "flag", "--default-priority", "5"], &env).await;
        assert_eq!(socket, dir.socket("greet", 70, "flag").display().to_string(), "the task's own priority wins");
        greeter.terminate().await;
    })
    .await;
}

#[tokio::test]
async fn a_refused_config_names_its_field() {
    within(LIMIT, "the greeter hangs on a bad config", async {
        let dir = SocketDir::new();
        let config = dir.path().join("greeter.json");
        std::fs::write(
            &config,
            json!({"tasks": {"greet": {"timeout": 0}}}).to_string(),
        )
        .expect("write");
        let output = Command::new(example("greeter_provider"))
            .args([
                "--config",
                &config.display().to_string(),
                "--socket-dir",
                &dir.path().display().to_string(),
            ])
            .output()
            .await
            .expect("run the greeter");
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr.trim(),
            "error: tasks.greet.timeout: must be more than zero"
        );
        assert!(
            !dir.path().join("greet").exists(),
            "nothing is created for a refused config"
        );
    })
    .await;
}
