//! `visor provider exec`, the built binary, as a child process: for tests
//! and benchmarks of the exec provider through the provider framework.
//!
//! Invariant: the child is killed (SIGKILL) and reaped when its handle is
//! dropped; the instances it started are not (their supervisors are in
//! sessions of their own: see [`sessions`](crate::sessions)).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use visor::provider::{Caller, Liveness};

use crate::cli::visor_binary;
use crate::wait::eventually;

/// The exec provider's tasks.
pub const INSTANCE_TASKS: [&str; 5] = [
    "instance.start",
    "instance.stop",
    "instance.status",
    "instance.wait",
    "instance.attach",
];

/// A running `visor provider exec`.
#[derive(Debug)]
pub struct ExecProviderProcess {
    child: Child,
    log: PathBuf,
}

impl ExecProviderProcess {
    /// Starts `visor provider exec --data-dir <data_dir> --socket-dir
    /// <caller's socket dir>`, its log appended to `log`, and waits (up to
    /// `limit`) until `caller` sees every instance task served by a live
    /// owner: a killed provider's sockets are still there, stale, until a
    /// new one binds them.
    pub async fn start(
        data_dir: &Path,
        socket_dir: &Path,
        log: &Path,
        caller: &Caller,
        limit: Duration,
    ) -> Self {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("the provider's log");
        let child = Command::new(visor_binary())
            .args(["provider", "exec", "--log-level", "info", "--data-dir"])
            .arg(data_dir)
            .arg("--socket-dir")
            .arg(socket_dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn visor provider exec");
        let provider = Self {
            child,
            log: log.to_owned(),
        };
        let what = format!(
            "the provider serves every instance task (its log: {})",
            provider.log.display()
        );
        eventually(limit, &what, || async {
            let live = |task: &&str| {
                caller
                    .candidates(task)
                    .is_ok_and(|candidates| candidates.iter().any(|c| c.liveness == Liveness::Live))
            };
            INSTANCE_TASKS.iter().all(live).then_some(())
        })
        .await;
        provider
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ExecProviderProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
