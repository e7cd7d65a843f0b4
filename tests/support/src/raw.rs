//! What the benchmarks share: the `visor controller` child process and what
//! `/proc` says about a process (memory, CPU), and bounded raw etcd requests
//! and watches.
//!
//! Invariants: the controller child never outlives its [`Controller`] (it is
//! killed on drop), and every request or wait here is bounded, failing with a
//! message that names what did not happen.

// Each benchmark uses a different subset.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchStream};

/// Linux `CLK_TCK` (the unit of utime/stime in `/proc/<pid>/stat`).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

// ---------------------------------------------------------------------------
// Processes: the controller child, and what /proc says about a process.

/// A `visor controller` child process, killed on drop.
pub struct Controller {
    child: Child,
    admin: u16,
    log: PathBuf,
}

impl Controller {
    /// Starts `visor controller` against `endpoint`, with `lease` as its
    /// `--lease-ttl` and `--renew-deadline`, logging to `log`.
    pub fn start(endpoint: &str, log: &Path, lease: &(String, String)) -> Self {
        let admin = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("pick a free admin port")
            .port();
        let log_file = std::fs::File::create(log).expect("create the controller log");
        let child = Command::new(env!("CARGO_BIN_EXE_visor"))
            .args(["--endpoints", endpoint, "controller"])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .args(["--identity", "bench"])
            .args(["--lease-ttl", &lease.0, "--renew-deadline", &lease.1])
            .env("RUST_LOG", "visor=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn `visor controller`");
        Self {
            child,
            admin,
            log: log.to_owned(),
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the controller's stderr (its log) goes.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// GET `path` on the admin address: (status line, body), or None if not serving.
    fn get(&self, path: &str) -> Option<(String, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.admin)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        Some((head.lines().next()?.to_owned(), body.to_owned()))
    }

    /// The sum of every sample of metric `name` whose labels contain `labels`.
    pub fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        let samples: Vec<f64> = body
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter(|line| line.split(['{', ' ']).next() == Some(name) && line.contains(labels))
            .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
            .collect();
        (!samples.is_empty()).then(|| samples.iter().sum())
    }

    /// Waits (at most a minute) until the controller leads with synced caches.
    pub async fn wait_leading(&mut self) {
        let limit = Duration::from_secs(60);
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the controller exited with {status} before leading; see {}",
                    self.log.display()
                );
            }
            let leading =
                self.metric("leader_election_master_status", "visor-controller") == Some(1.0);
            let ready = self
                .get("/readyz")
                .is_some_and(|(status, _)| status.contains("200"));
            if leading && ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the controller did not become leader and ready within {limit:?}; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How often this controller has lost its leadership so far, from its log.
    pub fn leadership_losses(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("leadership lost"))
            .count()
    }

    /// Log lines at WARN or ERROR, for the report.
    pub fn complaints(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        // Already exited is fine: the point is that it is not running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// The pid of the etcd serving `data_dir` (LocalEtcd does not expose its child).
pub fn etcd_pid(data_dir: &Path) -> u32 {
    let needle = format!("--data-dir={}", data_dir.display());
    std::fs::read_dir("/proc")
        .expect("list /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| {
                    cmdline
                        .split(|b| *b == 0)
                        .any(|arg| arg == needle.as_bytes())
                })
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no etcd process with {needle}"))
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

// ---------------------------------------------------------------------------
// Raw etcd requests, each bounded.

/// How long one raw etcd request may take (a defragmentation is the longest).
pub const REQUEST_LIMIT: Duration = Duration::from_secs(120);

/// A watch response can carry many revisions of events; don't cap it at tonic's 4 MiB.
const WATCH_MESSAGE_LIMIT: usize = 1 << 30;

/// Awaits `request`, failing with `what` if it takes longer than [`REQUEST_LIMIT`].
pub async fn bounded<T>(what: &str, request: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(REQUEST_LIMIT, request)
        .await
        .unwrap_or_else(|_| panic!("no answer within {REQUEST_LIMIT:?} to: {what}"))
}

/// Deletes `prefix`, then compacts and defragments, so that the next write
/// phase meets an etcd in the state the previous one met: tombstones and
/// history of 2N deleted keys otherwise slow it down (3× at N = 100k).
pub async fn delete_prefix(raw: &Client, prefix: &str) {
    let mut kv = raw.kv_client();
    let deleted = bounded(
        &format!("delete {prefix}"),
        kv.delete(
            prefix,
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("delete {prefix}: {e}"));
    let revision = deleted.header().map_or(0, |h| h.revision());
    bounded(
        "compact",
        kv.compact(
            revision,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("compact at {revision}: {e}"));
    bounded("defragment", raw.maintenance_client().defragment())
        .await
        .expect("defragment");
}

/// How many keys `prefix` holds, counted by etcd.
pub async fn count_keys(raw: &Client, prefix: &str) -> i64 {
    let mut kv = raw.kv_client();
    let options = GetOptions::new().with_prefix().with_count_only();
    bounded(&format!("count {prefix}"), kv.get(prefix, Some(options)))
        .await
        .unwrap_or_else(|e| panic!("count {prefix}: {e}"))
        .count()
}

/// etcd's current revision.
pub async fn current_revision(raw: &Client) -> i64 {
    let mut kv = raw.kv_client();
    let options = GetOptions::new().with_count_only();
    bounded("read the current revision", kv.get("/", Some(options)))
        .await
        .expect("read the current revision")
        .header()
        .map_or(0, |h| h.revision())
}

// ---------------------------------------------------------------------------
// Raw watches, each wait bounded.

/// A watch of `prefix` from the next revision, created before it returns.
pub async fn watch_prefix(raw: &Client, prefix: &str) -> WatchStream {
    let from = current_revision(raw).await + 1;
    let mut client = raw
        .watch_client()
        .max_decoding_message_size(WATCH_MESSAGE_LIMIT);
    let options = WatchOptions::new().with_prefix().with_start_revision(from);
    let mut stream = bounded(
        &format!("watch {prefix}"),
        client.watch(prefix, Some(options)),
    )
    .await
    .unwrap_or_else(|e| panic!("watch {prefix}: {e}"));
    let created = next_events(&mut stream, Duration::from_secs(10), "the watch is created").await;
    assert!(created.is_empty(), "a fresh watch starts with no events");
    stream
}

/// The events of the next watch response; panics naming `what` after `limit`.
pub async fn next_events(
    stream: &mut WatchStream,
    limit: Duration,
    what: &str,
) -> Vec<etcd_client::Event> {
    next_response(stream, limit, what)
        .await
        .unwrap_or_else(|| panic!("timed out after {limit:?} waiting until {what}"))
}

/// The events of the next watch response, or None after `limit`; panics
/// naming `what` if the watch fails.
pub async fn next_response(
    stream: &mut WatchStream,
    limit: Duration,
    what: &str,
) -> Option<Vec<etcd_client::Event>> {
    let response = tokio::time::timeout(limit, stream.message())
        .await
        .ok()?
        .unwrap_or_else(|e| panic!("watch failed while waiting until {what}: {e}"))
        .unwrap_or_else(|| panic!("watch ended while waiting until {what}"));
    assert!(
        !response.canceled() && response.compact_revision() == 0,
        "watch cancelled while waiting until {what}: {}",
        response.cancel_reason()
    );
    Some(response.events().to_vec())
}

/// Whether `event` created its key (a first put, `version == 1`).
pub fn is_creation(event: &etcd_client::Event) -> bool {
    event.event_type() == EventType::Put && event.kv().is_some_and(|kv| kv.version() == 1)
}

/// Waits until the lease behind the leader key under `leader_prefix` has been
/// renewed since the call: a defragmentation stalls etcd for a moment, and
/// the leader should have its lease back to full before a measured phase.
pub async fn wait_leader_renewed(raw: &Client, leader_prefix: &str) {
    let mut kv = raw.kv_client();
    let listed = bounded(
        "read the leader key",
        kv.get(leader_prefix, Some(GetOptions::new().with_prefix())),
    )
    .await
    .expect("read the leader key");
    let lease = listed
        .kvs()
        .iter()
        .map(|kv| kv.lease())
        .find(|&lease| lease != 0)
        .unwrap_or_else(|| panic!("no leader key under {leader_prefix}"));
    let remaining = || {
        let mut leases = raw.lease_client();
        async move {
            bounded("read the leader's lease", leases.time_to_live(lease, None))
                .await
                .expect("read the leader's lease")
                .ttl()
        }
    };
    // The remaining TTL falls between renewals and jumps back at one.
    let (mut lowest, limit) = (remaining().await, Duration::from_secs(60));
    let deadline = Instant::now() + limit;
    loop {
        let now = remaining().await;
        if now > lowest {
            return;
        }
        lowest = now;
        assert!(
            Instant::now() < deadline,
            "the leader's lease {lease:x} was not renewed within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
