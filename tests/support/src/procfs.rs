//! What `/proc` says about a process (memory, CPU) and about the machine,
//! for benchmarks that report what a run cost.
//!
//! Linux only, as the benchmarks are; every wait here is bounded.

use std::path::Path;
use std::time::{Duration, Instant};

/// Linux `CLK_TCK` (the unit of utime/stime in `/proc/<pid>/stat`).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// (VmRSS, VmHWM) of `pid` in KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU seconds `pid` has used, all threads.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    // The command name may contain spaces; fields are counted after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| -> f64 {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("malformed /proc/{pid}/stat")) as f64
    };
    (ticks(11) + ticks(12)) / CLOCK_TICKS_PER_SECOND
}

/// CPU seconds the whole machine has been busy (every core, every process):
/// what the benchmark's own processes did not use of it was someone else's.
pub fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("read /proc/stat");
    // `cpu  user nice system idle iowait irq softirq steal ...`, in ticks.
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .filter(|line| line.starts_with("cpu "))
        .map(|line| {
            line.split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| {
            *ticks
                .get(i)
                .unwrap_or_else(|| panic!("malformed /proc/stat"))
        })
        .sum();
    busy as f64 / CLOCK_TICKS_PER_SECOND
}

/// The registry process (etcd, or `visor registry serve`) serving
/// `data_dir`: the one whose command line names it (`--data-dir=<dir>` for
/// etcd, `--data-dir <dir>` for the embedded registry).
pub fn registry_pid(data_dir: &Path) -> u32 {
    let joined = format!("--data-dir={}", data_dir.display());
    let dir = data_dir.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .expect("list /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| {
                    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                    args.contains(&joined.as_bytes())
                        || args
                            .windows(2)
                            .any(|pair| pair[0] == b"--data-dir" && pair[1] == dir)
                })
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no registry process serving {}", data_dir.display()))
}

/// Waits until `pid` has used at most `idle_cpu` seconds of CPU in a `window`;
/// returns when that quiet window began (from `since`), or None after `limit`.
pub async fn wait_quiet(
    pid: u32,
    since: Instant,
    window: Duration,
    idle_cpu: f64,
    limit: Duration,
) -> Option<Duration> {
    let deadline = Instant::now() + limit;
    loop {
        let began = since.elapsed();
        let before = cpu_seconds(pid);
        tokio::time::sleep(window).await;
        if cpu_seconds(pid) - before <= idle_cpu {
            return Some(began);
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (state first,
/// then ppid, pgrp, session, ...), or None if there is no such process.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Whether `pid` is a process that runs: it exists and is neither a zombie
/// nor dead.
pub fn is_running(pid: u32) -> bool {
    stat_fields(pid)
        .and_then(|fields| fields.first().cloned())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// The session id of `pid`, if it exists.
pub fn session(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(3)?.parse().ok()
}

/// The process group id of `pid`, if it exists.
pub fn process_group(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// Every process of session `sid` that still runs (zombies excluded).
pub fn session_members(sid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| session(pid) == Some(sid) && is_running(pid))
        .collect()
}

/// The processes (not zombies) with a command-line argument that names
/// `path` anywhere in it (`--data-dir=<path>`, `<path>/log`): what a
/// process tree using `path` left running.
pub fn processes_naming(path: &Path) -> Vec<u32> {
    let name = path.as_os_str().as_encoded_bytes().to_vec();
    processes_with_an_arg(|arg| arg.windows(name.len()).any(|window| window == name))
}

/// The processes (not zombies) with a command-line argument that is a path
/// under `dir`: the exec provider's supervisors of a data dir (`visor shim
/// --dir <dir>/exec/instances/<id>`).
pub fn processes_with_arg_under(dir: &Path) -> Vec<u32> {
    let prefix = dir.as_os_str().as_encoded_bytes().to_vec();
    processes_with_an_arg(|arg| arg.starts_with(&prefix) && arg.len() > prefix.len())
}

/// The running processes (not zombies) one of whose command-line arguments
/// `matches`, by pid.
fn processes_with_an_arg(matches: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(&matches))
        })
        .filter(|pid| is_running(*pid))
        .collect();
    pids.sort_unstable();
    pids
}
