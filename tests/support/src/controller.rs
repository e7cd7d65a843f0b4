//! Running the real `visor controller` binary against a test's etcd, and
//! reading what it did from the registry and its `/metrics`.
//!
//! Invariant: the child never outlives its [`ControllerProcess`] (or
//! [`LoggedController`]): it is killed on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use visor::model::{Instance, InstanceState, Ticket, TicketOp};
use visor::registry::{EventKind, EventStream, Versioned};

use crate::registry::TestRegistry;
use crate::wait;

/// The lease flags of [`ControllerProcess::start`]: a short lease, as tests want fast failover.
pub const SHORT_LEASE: &[&str] = &["--lease-ttl", "2s", "--renew-deadline", "1500ms"];
/// Loop flags of every test controller: a short resync, so that a test need not
/// wait long for what only a resync would notice.
const TEST_LOOPS: &[&str] = &["--resync", "2s", "--concurrency", "4"];
/// How long a test controller may take to lead (or to serve as a standby).
const READY_WAIT: Duration = Duration::from_secs(20);
/// How long a benchmark's controller may take to lead (its caches may hold 100k objects).
const LOGGED_READY_WAIT: Duration = Duration::from_secs(60);

/// A `visor controller` child process, killed on drop.
pub struct ControllerProcess {
    child: Option<Child>,
    /// The loopback port its admin server (`/metrics`, `/healthz`, `/readyz`) listens on.
    pub admin: u16,
}

impl ControllerProcess {
    /// Starts a controller named `identity` with a short lease, as tests want fast failover.
    pub fn start(t: &TestRegistry, identity: &str) -> Self {
        Self::start_with(t, identity, &[])
    }

    /// Like [`start`](Self::start), with further `visor controller` flags.
    pub fn start_with(t: &TestRegistry, identity: &str, extra: &[&str]) -> Self {
        Self::spawn(&t.server.endpoint(), identity, SHORT_LEASE, extra)
    }

    /// A controller of the registry at `endpoint` (where nothing need
    /// listen), with the lease flags `lease` and further flags `extra`. Its
    /// log goes nowhere, or to the test's stderr if `VISOR_TEST_LOGS` is set.
    pub fn spawn(endpoint: &str, identity: &str, lease: &[&str], extra: &[&str]) -> Self {
        let stderr = if std::env::var_os("VISOR_TEST_LOGS").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        Self::launch(
            endpoint,
            identity,
            &[lease, TEST_LOOPS, extra].concat(),
            stderr,
        )
    }

    /// `visor controller` with exactly `flags` (beyond endpoint, identity and
    /// admin address), its stderr going to `stderr`.
    fn launch(endpoint: &str, identity: &str, flags: &[&str], stderr: Stdio) -> Self {
        let admin = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(assert_cmd::cargo::cargo_bin("visor"))
            .args([
                "--endpoints",
                endpoint,
                "controller",
                "--identity",
                identity,
            ])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .args(flags)
            .env("RUST_LOG", "visor=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn visor controller");
        Self {
            child: Some(child),
            admin,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("the controller is running (not killed or terminated)")
            .id()
    }

    /// GET `path` on the admin address: (status line, body), or None if not serving.
    pub fn get(&self, path: &str) -> Option<(String, String)> {
        admin_get(self.admin, path)
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

    /// Waits until this controller reports itself leader (and ready).
    pub async fn wait_leading(&self) {
        self.wait_leading_within(READY_WAIT, "the controller becomes leader and ready")
            .await;
    }

    /// Waits until this controller reports itself leader and ready, failing
    /// after `limit` with `what`.
    pub async fn wait_leading_within(&self, limit: Duration, what: &str) {
        wait::eventually(limit, what, || async {
            let leading =
                self.metric("leader_election_master_status", "visor-controller") == Some(1.0);
            let ready = self
                .get("/readyz")
                .is_some_and(|(status, _)| status.contains("200"));
            (leading && ready).then_some(())
        })
        .await;
    }

    /// Waits until this controller serves metrics as a standby (not leading).
    pub async fn wait_ready_standby(&self) {
        wait::eventually(READY_WAIT, "the standby serves its metrics", || async {
            (self.metric("leader_election_master_status", "visor-controller") == Some(0.0))
                .then_some(())
        })
        .await;
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = wait::eventually(
            Duration::from_secs(15),
            "the controller exits on SIGTERM",
            || {
                let status = child.try_wait().expect("wait");
                async move { status }
            },
        )
        .await;
        assert!(status.success(), "clean exit on SIGTERM: {status}");
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A controller whose log (its stderr) goes to a file, read back for what it
/// says about the run: a benchmark's controller.
pub struct LoggedController {
    process: ControllerProcess,
    log: PathBuf,
}

impl LoggedController {
    /// Starts `visor controller` against `endpoint` as `identity`, with
    /// exactly `flags` (lease and loop settings), logging to `log`.
    pub fn start(endpoint: &str, identity: &str, flags: &[&str], log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("create the controller log");
        Self {
            process: ControllerProcess::launch(endpoint, identity, flags, file.into()),
            log: log.to_owned(),
        }
    }

    /// Where the controller's log goes.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Waits (at most a minute) until the controller leads with synced caches.
    pub async fn wait_leading(&self) {
        let what = format!(
            "the controller becomes leader and ready; see {}",
            self.log.display()
        );
        self.process
            .wait_leading_within(LOGGED_READY_WAIT, &what)
            .await;
    }

    /// How often this controller has lost its leadership so far, from its log.
    pub fn leadership_losses(&self) -> usize {
        self.log_lines()
            .iter()
            .filter(|l| l.contains("leadership lost"))
            .count()
    }

    /// Log lines at WARN or ERROR, for the report.
    pub fn complaints(&self) -> Vec<String> {
        self.log_lines()
            .into_iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect()
    }

    /// The log so far; none if it cannot be read (nothing to report from it).
    fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// A logged controller is a controller: its admin endpoints, pid and signals.
impl Deref for LoggedController {
    type Target = ControllerProcess;

    fn deref(&self) -> &ControllerProcess {
        &self.process
    }
}

/// Instances and tickets as the registry has them now.
pub async fn instances(t: &TestRegistry) -> Vec<Versioned<Instance>> {
    t.visor
        .instances(&Default::default())
        .await
        .expect("list instances")
        .items
}

/// Tickets of `op`, in registry order.
pub async fn tickets(t: &TestRegistry, op: TicketOp) -> Vec<Versioned<Ticket>> {
    let all = t.visor.tickets(None).await.expect("list tickets").items;
    all.into_iter()
        .filter(|ticket| ticket.value.op == op)
        .collect()
}

/// Active (pending, claimed or running) instances.
pub async fn active(t: &TestRegistry) -> Vec<Versioned<Instance>> {
    let mut all = instances(t).await;
    all.retain(|i| {
        matches!(
            i.value.state,
            InstanceState::Pending | InstanceState::Claimed | InstanceState::Running
        )
    });
    all
}

/// Sends `signal` (e.g. "STOP", "CONT") to the controller process.
pub fn signal(controller: &ControllerProcess, signal: &str) {
    let pid = controller.pid();
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -{signal}");
}

/// How many start tickets `events` shows created so far: up to a sentinel
/// app written now, after everything the test counts.
pub async fn start_tickets_created(t: &TestRegistry, events: &mut EventStream) -> usize {
    let until = t
        .visor
        .register_app("sentinel", crate::fixtures::app("git://end"))
        .await
        .expect("sentinel")
        .mod_revision;
    let mut created = 0;
    while let Some(event) = wait::within(
        Duration::from_secs(20),
        "the event stream stalls",
        events.next(),
    )
    .await
    {
        let event = event.expect("event");
        if let EventKind::TicketCreated {
            op: TicketOp::Start,
            ..
        } = event.kind
        {
            created += 1;
        }
        if event.revision >= until {
            break;
        }
    }
    created
}

/// `GET <path>` on an admin endpoint at `127.0.0.1:<port>`: the status line
/// and the body, or `None` if nothing answered.
pub fn admin_get(port: u16, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

/// The lowest ready count and the highest instance count seen, event by
/// event, on a watch of every instance from `revision` on, until `stop`.
///
/// Ready is running (the agents start an instance's readiness check before
/// they call it running); an instance counts until it is terminal.
pub async fn sample_instances(
    t: visor::Visor,
    revision: i64,
    stop: tokio_util::sync::CancellationToken,
) -> (usize, usize) {
    use etcd_client::{EventType, WatchOptions};
    use std::collections::BTreeMap;
    let prefix = t
        .registry()
        .keys()
        .kind_prefix(visor::registry::Kind::Instance);
    let mut watcher = t.registry().etcd();
    let mut stream = watcher
        .watch(
            prefix.as_str(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        )
        .await
        .expect("watch the instances");
    let mut states: BTreeMap<Vec<u8>, InstanceState> = BTreeMap::new();
    let listed = t
        .instances(&Default::default())
        .await
        .expect("list instances");
    for instance in listed.items {
        states.insert(instance.key.clone().into_bytes(), instance.value.state);
    }
    let ready = |s: &BTreeMap<Vec<u8>, InstanceState>| {
        s.values()
            .filter(|st| **st == InstanceState::Running)
            .count()
    };
    let total =
        |s: &BTreeMap<Vec<u8>, InstanceState>| s.values().filter(|st| !st.is_terminal()).count();
    let (mut lowest, mut highest) = (ready(&states), total(&states));
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return (lowest, highest),
            message = stream.message() => message,
        };
        let Some(response) = message.expect("the watch") else {
            return (lowest, highest);
        };
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Delete => {
                    states.remove(kv.key());
                }
                EventType::Put => {
                    let instance: Instance =
                        serde_json::from_slice(kv.value()).expect("an instance");
                    states.insert(kv.key().to_vec(), instance.state);
                }
            }
        }
        lowest = lowest.min(ready(&states));
        highest = highest.max(total(&states));
    }
}
