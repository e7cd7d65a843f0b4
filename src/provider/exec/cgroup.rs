//! A cgroup v2 of the instance's own, where the machine allows one: so that
//! a stop kills every process the workload left, even those that left its
//! process group (`cgroup.kill`).
//!
//! A supervisor killed before it removed its cgroup leaves it, with whatever
//! still runs in it: the provider reclaims it (kills and removes it) before
//! it starts another invocation of the instance, so a lost workload never
//! runs beside its replacement where the machine has cgroups.
//!
//! Best effort by design: without a writable cgroup v2 hierarchy (cgroup v1
//! only, an unprivileged user, a read-only mount) the process group is what
//! a stop kills, and nothing fails. The cgroup is created as a child of the
//! supervisor's own cgroup, named after the instance and invocation, and
//! the workload moved into it once its start is reported (without
//! `pre_exec` or `CLONE_INTO_CGROUP`, a process it forks before that stays
//! in its process group only).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long killed processes may take to leave a cgroup before it is left
/// in place.
const EMPTY_LIMIT: Duration = Duration::from_millis(500);

/// A child cgroup holding the workload.
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Creates the cgroup of `instance`'s `invocation`,
    /// `<own cgroup>/visor-<instance>-<invocation>`, if cgroup v2 is mounted
    /// and this process's own cgroup is writable; `None` otherwise.
    pub fn create(instance: &str, invocation: &str) -> Option<Self> {
        let path = path(instance, invocation)?;
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => {
                tracing::debug!(path = %path.display(), %error, "no cgroup for the instance");
                return None;
            }
        }
        tracing::debug!(path = %path.display(), "created the instance's cgroup");
        Some(Self { path })
    }

    /// The cgroup of `instance`'s `invocation` if it exists (left by a
    /// supervisor that was killed).
    pub fn existing(instance: &str, invocation: &str) -> Option<Self> {
        let path = path(instance, invocation)?;
        path.is_dir().then_some(Self { path })
    }

    /// Moves process `pid` into the cgroup.
    pub fn add(&self, pid: u32) -> io::Result<()> {
        fs::write(self.path.join("cgroup.procs"), pid.to_string())
    }

    /// Kills every process in the cgroup (`cgroup.kill`, Linux 5.14+); best
    /// effort.
    pub fn kill(&self) {
        if let Err(error) = fs::write(self.path.join("cgroup.kill"), "1") {
            tracing::debug!(path = %self.path.display(), %error, "cgroup.kill failed");
        }
    }

    /// Kills what is left in it and removes it once empty (bounded).
    pub async fn kill_and_remove(&self) {
        self.kill();
        let empty = async {
            while !self.is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(EMPTY_LIMIT, empty).await.is_err() {
            tracing::warn!(path = %self.path.display(), "processes still in the instance's cgroup");
        }
        self.remove();
    }

    /// Whether no process is left in it.
    fn is_empty(&self) -> bool {
        fs::read_to_string(self.path.join("cgroup.procs"))
            .is_ok_and(|procs| procs.trim().is_empty())
    }

    /// Removes the cgroup once it is empty; best effort (a cgroup left behind
    /// is reused by the next supervisor of the same invocation).
    pub fn remove(&self) {
        if let Err(error) = fs::remove_dir(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove the instance's cgroup");
        }
    }
}

/// `<own cgroup>/visor-<instance>-<invocation>`, where there is a cgroup v2.
fn path(instance: &str, invocation: &str) -> Option<PathBuf> {
    let parent = dir_of("self")?;
    Some(parent.join(format!("{PREFIX}{instance}-{invocation}")))
}

/// What the name of every instance's cgroup starts with.
pub const PREFIX: &str = "visor-";

/// The directory of the cgroup v2 that process `pid` (or `self`) is in,
/// where cgroup v2 is mounted: an instance's own cgroup for a workload
/// moved into one (its name starts with [`PREFIX`]).
pub fn dir_of(pid: &str) -> Option<PathBuf> {
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    own_dir(&mountinfo, &own)
}

/// The directory of this process's cgroup v2, from `/proc/self/mountinfo`
/// (where cgroup2 is mounted) and `/proc/self/cgroup` (its `0::<path>` line).
fn own_dir(mountinfo: &str, own: &str) -> Option<PathBuf> {
    let relative = own.lines().find_map(|line| line.strip_prefix("0::"))?;
    let mount = mountinfo.lines().find_map(|line| {
        // `<id> <parent> <dev> <root> <mount point> <options> [tags] - <fstype> ...`
        let (fields, rest) = line.split_once(" - ")?;
        let fstype = rest.split_whitespace().next()?;
        let fields: Vec<&str> = fields.split_whitespace().collect();
        // A mount of the hierarchy's root only: `<root>` is `/`.
        (fstype == "cgroup2" && fields.get(3) == Some(&"/")).then(|| fields.get(4).copied())?
    })?;
    let path = Path::new(mount).join(relative.trim_start_matches('/'));
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_cgroup_is_found_under_the_cgroup2_mount() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let own = "4:memory:/x\n0::/system.slice/visor.service\n";
        assert_eq!(
            own_dir(mountinfo, own),
            Some(PathBuf::from(
                "/sys/fs/cgroup/unified/system.slice/visor.service"
            ))
        );
        assert_eq!(
            own_dir(mountinfo, "0::/\n"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        // cgroup v1 only, or no v2 line: no cgroup of our own.
        assert_eq!(
            own_dir("30 25 0:26 / /c rw - cgroup cgroup rw\n", "0::/\n"),
            None
        );
        assert_eq!(own_dir(mountinfo, "4:memory:/x\n"), None);
    }
}
