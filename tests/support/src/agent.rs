//! Running the real `visor agent` binary against a test's etcd: start it,
//! SIGKILL it, freeze it, restart it on the same data dir, and find the
//! processes it runs.
//!
//! Invariant: when an [`AgentProcess`] drops, the agent and every
//! instance it started (each supervisor's session: the workload and its
//! children) are killed, and its data dir is removed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use visor::provider::exec::cgroup;

use crate::procfs;
use crate::registry::TestRegistry;
use crate::wait;

/// Flags every test agent gets: a short lease and quick restarts, so that
/// loss and supervision show within a test's patience.
const TEST_FLAGS: &[&str] = &[
    "--lease-ttl",
    "2s",
    "--restart-delay",
    "100ms",
    "--restart-delay-max",
    "500ms",
    "--drain-timeout",
    "10s",
];

/// A `visor agent` child process and its data dir.
pub struct AgentProcess {
    child: Option<Child>,
    /// The host name it registers.
    pub host: String,
    endpoint: String,
    data: tempfile::TempDir,
    flags: Vec<String>,
    /// The loopback port of its admin endpoint.
    pub admin: u16,
}

impl AgentProcess {
    /// Starts an agent for host `host` on its own data dir.
    pub fn start(t: &TestRegistry, host: &str) -> Self {
        Self::start_with(t, host, &[])
    }

    /// The same, with further `visor agent` flags.
    pub fn start_with(t: &TestRegistry, host: &str, extra: &[&str]) -> Self {
        Self::start_at(&t.server.endpoint(), host, extra)
    }

    /// An agent of the registry at `endpoint` (a proxy in front of it, say).
    pub fn start_at(endpoint: &str, host: &str, extra: &[&str]) -> Self {
        // Short: instance control sockets live under it.
        let data = tempfile::Builder::new()
            .prefix("va")
            .tempdir_in("/tmp")
            .expect("a data dir");
        let mut agent = Self {
            child: None,
            host: host.to_owned(),
            endpoint: endpoint.to_owned(),
            data,
            flags: extra.iter().map(|f| (*f).to_owned()).collect(),
            admin: free_port(),
        };
        agent.launch();
        agent
    }

    fn launch(&mut self) {
        let stderr = match std::env::var_os("VISOR_TEST_LOGS") {
            Some(_) => Stdio::inherit(),
            None => Stdio::null(),
        };
        let child = Command::new(assert_cmd::cargo::cargo_bin("visor"))
            .args(["--endpoints", &self.endpoint, "agent", "--host", &self.host])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--admin-addr", &format!("127.0.0.1:{}", self.admin)])
            .args(TEST_FLAGS)
            .args(&self.flags)
            .env("RUST_LOG", "visor=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn visor agent");
        self.child = Some(child);
    }

    /// The agent's data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.data.path().join("agent")
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the agent runs").id()
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("a pid")).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("signal the agent");
    }

    /// SIGKILLs the agent (its instances keep running) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the agent again on the same data dir, after [`kill`](Self::kill).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill the agent before restarting it");
        self.launch();
    }

    /// SIGTERM, then waits for the agent to exit (after its drain).
    pub async fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        self.signal(Signal::TERM);
        let mut child = self.child.take().expect("the agent runs");
        wait::eventually(limit, "the agent exits after SIGTERM", || {
            let status = child.try_wait().expect("wait");
            async move { status }
        })
        .await
    }

    /// Whether the agent process has exited, and how.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().expect("wait")
    }

    /// Whether `/readyz` says the agent is registered and back with every
    /// instance it ran before.
    pub fn ready(&self) -> bool {
        crate::controller::admin_get(self.admin, "/readyz")
            .is_some_and(|(status, _)| status.contains(" 200"))
    }

    /// The supervisors of its instances that run, by pid.
    pub fn supervisors(&self) -> Vec<u32> {
        procfs::processes_with_arg_under(&self.data_dir())
    }

    /// The workload processes of its instances (every member of each
    /// supervisor's session but the supervisor).
    pub fn workloads(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for shim in self.supervisors() {
            pids.extend(
                procfs::session_members(shim)
                    .into_iter()
                    .filter(|pid| *pid != shim),
            );
        }
        pids.sort_unstable();
        pids
    }

    /// Kills every instance process it started, and removes the cgroups
    /// their supervisors leave behind (a killed supervisor cannot).
    pub fn kill_instances(&self) {
        for shim in self.supervisors() {
            for pid in procfs::session_members(shim) {
                if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
            }
        }
        for dir in self.instance_cgroups() {
            remove_cgroup(&dir);
        }
    }

    /// The cgroups of this agent's instances, found by name (each is
    /// `visor-<instance>-<invocation>` beside this process's own cgroup),
    /// so that one made but not yet entered, or entered just before its
    /// supervisor was killed, is found as well.
    fn instance_cgroups(&self) -> Vec<PathBuf> {
        let Some(parent) = cgroup::dir_of("self") else {
            return Vec::new();
        };
        let Ok(instances) = std::fs::read_dir(self.data_dir().join("exec").join("instances"))
        else {
            return Vec::new();
        };
        let prefixes: Vec<String> = instances
            .filter_map(|entry| Some(entry.ok()?.file_name().to_str()?.to_owned()))
            .map(|id| format!("{}{id}-", cgroup::PREFIX))
            .collect();
        let Ok(cgroups) = std::fs::read_dir(&parent) else {
            return Vec::new();
        };
        cgroups
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().to_str()?.to_owned();
                prefixes
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
                    .then(|| parent.join(name))
            })
            .collect()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
        self.kill_instances();
    }
}

/// Removes the cgroup `dir` once the processes killed in it are gone,
/// giving them a bounded while to go.
fn remove_cgroup(dir: &Path) {
    let deadline = Instant::now() + CGROUP_EMPTY_LIMIT;
    while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How long killed workloads may take to leave their cgroups.
const CGROUP_EMPTY_LIMIT: Duration = Duration::from_secs(2);

/// A free loopback port (bound, then let go).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
