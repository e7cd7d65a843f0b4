//! A drop guard for the processes a test leaves behind on purpose: the exec
//! provider's supervisors run in sessions of their own, with their workloads
//! and grandchildren, and outlive whoever started them by design.
//!
//! Invariant: when a [`Sessions`] is dropped (a test passing, failing or
//! panicking), every process of every session it adopted is killed.

use std::sync::Mutex;

use rustix::process::{Pid, Signal};

use crate::procfs;

/// The sessions a test must not leave running.
#[derive(Debug, Default)]
pub struct Sessions {
    sids: Mutex<Vec<u32>>,
}

impl Sessions {
    /// Adopts the session `pid` belongs to (a workload's: its supervisor's
    /// session); a process that is gone already is ignored.
    pub fn adopt(&self, pid: u32) {
        if let Some(sid) = procfs::session(pid) {
            let mut sids = self.sids.lock().unwrap_or_else(|e| e.into_inner());
            if !sids.contains(&sid) {
                sids.push(sid);
            }
        }
    }

    /// Kills every process of every adopted session now.
    pub fn kill_all(&self) {
        let sids = self.sids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for sid in sids {
            for pid in procfs::session_members(sid) {
                if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
            }
        }
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        self.kill_all();
    }
}
