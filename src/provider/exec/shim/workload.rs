//! The workload process: spawned in a process group of its own, with exactly
//! the spec's environment and working directory, its output piped into the
//! rotated log files; and its end.
//!
//! Invariants: every signal goes to the group (`kill(-pgid)`), never to a
//! PID alone; and when the workload's main process ends, whatever is left of
//! its group (and cgroup) is killed before the main process is reaped, so
//! the group id cannot have been reused by then (the unreaped main process
//! holds it), and no grandchild outlives the instance.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::logs;
use super::stop::{Signalled, StopSignal};
use crate::provider::exec::cgroup::Cgroup;
use crate::provider::exec::instance_dir::{InstanceDir, Spec};
use crate::provider::exec::status::Exit;

/// How long output still in the pipes is copied after the workload ended:
/// a process that escaped both its group and its cgroup may hold a pipe open
/// forever.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// The workload's process group (and cgroup): what stops signal.
#[derive(Debug)]
pub struct Group {
    pgid: Pid,
    cgroup: Option<Cgroup>,
}

impl Signalled for Group {
    fn signal(&self, signal: StopSignal) {
        let sig = match signal {
            StopSignal::Terminate => Signal::TERM,
            StopSignal::Kill => Signal::KILL,
        };
        // ESRCH: the group is already empty.
        if let Err(error) = rustix::process::kill_process_group(self.pgid, sig) {
            tracing::debug!(pgid = self.pgid.as_raw_nonzero(), %error, ?signal, "group signal");
        }
        if let (StopSignal::Kill, Some(cgroup)) = (signal, &self.cgroup) {
            cgroup.kill();
        }
    }
}

impl Group {
    /// Moves the workload into a cgroup of its invocation's own, where the
    /// machine allows one. Done once the start is reported: moving a
    /// process between cgroups waits for the kernel (RCU) for milliseconds,
    /// and whatever the workload forks meanwhile stays in its process group.
    pub fn enter_cgroup(&mut self, instance: &str, invocation: &str) {
        let Some(cgroup) = Cgroup::create(instance, invocation) else {
            return;
        };
        let pid = self.pgid.as_raw_nonzero().get();
        match cgroup.add(pid.unsigned_abs()) {
            Ok(()) => self.cgroup = Some(cgroup),
            Err(error) => {
                tracing::debug!(%error, "cannot move the workload into its cgroup");
                cgroup.remove();
            }
        }
    }

    /// The cgroup, where there is one.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }
}

/// The workload's main process, to be waited for.
#[derive(Debug)]
pub struct Main {
    child: Child,
    pid: Pid,
    output: Vec<JoinHandle<io::Result<()>>>,
}

/// A spawned workload.
#[derive(Debug)]
pub struct Workload {
    /// Its process id.
    pub pid: u32,
    /// What a stop signals.
    pub group: Group,
    /// What ends.
    pub main: Main,
}

/// Spawns the workload `spec` describes, its output going to `dir`'s logs.
pub fn spawn(spec: &Spec, dir: &InstanceDir) -> io::Result<Workload> {
    let working_dir = spec.working_dir.as_deref().unwrap_or("/".as_ref());
    let path = spec.env.get("PATH").map(String::as_str);
    let mut command = Command::new(program(&spec.command, path, working_dir));
    command
        .args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    command.current_dir(working_dir);
    let mut child = command.spawn()?;
    let pid = child
        .id()
        .expect("a child that was not waited for has its pid");
    let raw = i32::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    let pgid = Pid::from_raw(raw).ok_or_else(|| io::Error::other("pid 0"))?;
    let mut output = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        output.push(logs::copy(stdout, dir.stdout_log(), spec.logs));
    }
    if let Some(stderr) = child.stderr.take() {
        output.push(logs::copy(stderr, dir.stderr_log(), spec.logs));
    }
    Ok(Workload {
        pid,
        group: Group { pgid, cgroup: None },
        main: Main {
            child,
            pid: pgid,
            output,
        },
    })
}

impl Main {
    /// Waits for the main process to end, kills what is left of `group`,
    /// reaps it, and copies the rest of its output (bounded).
    pub async fn ended(&mut self, group: &Group) -> io::Result<ExitStatus> {
        // Waits for the end without reaping (WNOWAIT): until the reap, the
        // group id stays the workload's, so killing the group is safe.
        let pid = self.pid;
        let ended = tokio::task::spawn_blocking(move || {
            loop {
                match rustix::process::waitid(
                    WaitId::Pid(pid),
                    WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                ) {
                    Err(Errno::INTR) => continue,
                    other => return other.map(drop),
                }
            }
        });
        match ended.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error.into()),
            Err(error) => return Err(io::Error::other(error)),
        }
        group.signal(StopSignal::Kill);
        let status = self.child.wait().await?;
        let output = std::mem::take(&mut self.output);
        let copied = futures::future::join_all(output);
        match tokio::time::timeout(DRAIN_LIMIT, copied).await {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => tracing::warn!(%error, "copying output failed"),
                        Err(error) => tracing::warn!(%error, "the output copy panicked"),
                    }
                }
            }
            Err(_) => tracing::warn!(?DRAIN_LIMIT, "output still open after the workload ended"),
        }
        Ok(status)
    }
}

/// The program to spawn for `command`: a bare name is looked up in the
/// workload's own `path`, as `execvp` in the workload would (a relative
/// entry against its working dir), so that it is spawned by path, which
/// lets the standard library spawn it with `posix_spawn` (a vfork) rather
/// than a fork of the supervisor. A name found nowhere is left as it is,
/// for the spawn to fail on as it would have.
fn program(command: &str, path: Option<&str>, working_dir: &Path) -> PathBuf {
    let Some(path) = path.filter(|_| !command.contains('/')) else {
        return PathBuf::from(command);
    };
    path.split(':')
        .map(|entry| {
            working_dir
                .join(if entry.is_empty() { "." } else { entry })
                .join(command)
        })
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| PathBuf::from(command))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The recorded form of an exit status.
pub fn exit(status: ExitStatus, exited_at: chrono::DateTime<chrono::Utc>) -> Exit {
    Exit {
        code: status.code(),
        signal: status.signal(),
        exited_at,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_bare_name_is_found_in_the_workloads_path_as_execvp_would() {
        let root = tempfile::tempdir().expect("a temporary dir");
        let (first, second, work) = (
            root.path().join("a"),
            root.path().join("b"),
            root.path().join("w"),
        );
        for dir in [&first, &second, &work.join("bin")] {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        // Not executable: skipped, as execvp skips it.
        write(&first.join("web"), 0o644);
        write(&second.join("web"), 0o755);
        write(&work.join("bin/tool"), 0o755);
        let path = format!("/nowhere:{}:{}:bin", first.display(), second.display());
        assert_eq!(program("web", Some(&path), &work), second.join("web"));
        // A relative entry is the working dir's.
        assert_eq!(program("tool", Some(&path), &work), work.join("bin/tool"));
        // Found nowhere, or not a bare name, or no PATH: left as it is.
        assert_eq!(
            program("missing", Some(&path), &work),
            PathBuf::from("missing")
        );
        assert_eq!(
            program("./bin/tool", Some(&path), &work),
            PathBuf::from("./bin/tool")
        );
        assert_eq!(
            program("/bin/sh", Some(&path), &work),
            PathBuf::from("/bin/sh")
        );
        assert_eq!(program("web", None, &work), PathBuf::from("web"));
    }
}
