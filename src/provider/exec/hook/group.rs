//! A hook's process group, killed whole: on timeout, when the hook exits
//! (whatever it left running in its group goes with it), and when the run is
//! abandoned (its future dropped by a task timeout or a stop).
//!
//! Invariant: once a [`ProcessGroup`] is made for a child that leads its own
//! group, no process of that group outlives the guard, unless it left the
//! group (`setsid`, `setpgid`) on its own.

use rustix::process::{Pid, Signal, kill_process_group};

/// The process group a hook leads (spawned with `process_group(0)`).
#[derive(Debug)]
pub(crate) struct ProcessGroup {
    /// `None` once killed: the group is not signalled twice.
    pgid: Option<Pid>,
}

impl ProcessGroup {
    /// The group led by the child with `pid`. A pid of 0 or 1 is not a
    /// child's (and `kill(-1)` would signal every process), so it makes a
    /// guard that signals nothing.
    pub(crate) fn led_by(pid: Option<u32>) -> Self {
        let pgid = pid
            .and_then(|pid| i32::try_from(pid).ok())
            .filter(|pid| *pid > 1)
            .and_then(Pid::from_raw);
        Self { pgid }
    }

    /// SIGKILLs every process of the group.
    ///
    /// Called while the leader is alive or a zombie (a timeout), the group
    /// id cannot have been reused. Called right after the leader was reaped,
    /// the id stays the group's while any member lives (Linux does not hand
    /// out a pid in use as a group id); if none does, the signal finds no one.
    pub(crate) fn kill(&mut self) {
        let Some(pgid) = self.pgid.take() else {
            return;
        };
        match kill_process_group(pgid, Signal::KILL) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(error) => {
                let error = std::io::Error::from(error);
                tracing::warn!(pgid = pgid.as_raw_nonzero().get(), %error, "cannot kill a hook's process group");
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}
