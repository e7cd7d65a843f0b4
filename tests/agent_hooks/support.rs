//! One host's worth of relation hooks for a test: its own etcd, the real
//! controller handing hooks, apps whose units run (registered and started
//! with the API, no workloads), their revisions unpacked by a real `visor
//! provider exec` from `file://` directories of shell hooks, and
//! [`RelationHooks`] serving every unit, its hook tools the real binary.
//!
//! Every hook appends one line to a log: `<unit> <hook> <remote or -> rel=<endpoint>
//! members=<relation-list, comma-separated> <what it did>`, which the tests
//! read back. Everything started here stops when the [`Deployment`] drops.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use visor::agent::relation_hooks::{
    RelationHooks, RelationHooksConfig, RelationHooksError, UnitContext,
};
use visor::model::{HookKind, Name, RelationState};
use visor::provider::{Caller, CallerConfig};
use visor::registry::{BackoffPolicy, EndpointSpec, HostRegistration};
use visor_testkit::cli::visor_binary;
use visor_testkit::controller::ControllerProcess;
use visor_testkit::exec_provider::ExecProviderProcess;
use visor_testkit::{TestRegistry, eventually, relations, within};

/// Bound on one test, etcd and controller start included.
pub const LIMIT: Duration = Duration::from_secs(120);
/// Bound on the hooks of one step settling.
pub const SETTLE: Duration = Duration::from_secs(40);

/// What every hook does before anything else: log who it is.
const LOG_LINE: &str = r#"members=$(visor relation-list | tr '\n' ',')
echo "$VISOR_UNIT $VISOR_HOOK ${VISOR_REMOTE_UNIT:--} rel=$VISOR_RELATION members=$members $DID" >> "$HOOK_LOG""#;

/// An app to deploy: `units` units of proc type `proc`, revision `v1`
/// holding `hooks` (file name under `hooks/` → the script's own part).
pub struct AppSpec<'a> {
    pub app: &'a str,
    pub proc: &'a str,
    pub units: u32,
    pub hooks: &'a [(&'a str, &'a str)],
}

/// Apps `web` (proc `http`, one unit, running `web_hooks`) and `db` (proc
/// `sql`, `db_units` units, running `db_hooks`): the pair most tests relate.
pub fn web_and_db<'a>(
    web_hooks: &'a [(&'a str, &'a str)],
    db_units: u32,
    db_hooks: &'a [(&'a str, &'a str)],
) -> [AppSpec<'a>; 2] {
    [
        AppSpec {
            app: "web",
            proc: "http",
            units: 1,
            hooks: web_hooks,
        },
        AppSpec {
            app: "db",
            proc: "sql",
            units: db_units,
            hooks: db_hooks,
        },
    ]
}

/// One line of the hook log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub unit: String,
    /// The hook's file name, e.g. `web-relation-joined`.
    pub hook: String,
    pub kind: HookKind,
    pub remote: Option<String>,
    /// `VISOR_RELATION`.
    pub endpoint: String,
    /// What `relation-list` printed.
    pub members: Vec<String>,
    /// The rest of the line: what the hook reported doing.
    pub did: String,
}

/// A running deployment; see the module doc.
pub struct Deployment {
    pub t: TestRegistry,
    /// Unit ids by app, sorted.
    pub units: BTreeMap<String, Vec<String>>,
    pub prometheus: prometheus::Registry,
    pub dir: tempfile::TempDir,
    pub tools_socket: PathBuf,
    served: watch::Sender<BTreeMap<Name, UnitContext>>,
    shutdown: CancellationToken,
    running: Option<JoinHandle<Result<(), RelationHooksError>>>,
    _hosts: Vec<HostRegistration>,
    _provider: ExecProviderProcess,
    _caller: Caller,
    _controller: ControllerProcess,
}

pub fn name(value: &str) -> Name {
    Name::parse("test", value).expect("a valid name")
}

impl Deployment {
    /// Deploys `apps`, each on a host of its own, and serves their units'
    /// hooks, retrying failed hooks along `retry`.
    pub async fn start(apps: &[AppSpec<'_>], retry: BackoffPolicy) -> Self {
        let t = TestRegistry::start().await;
        let controller = ControllerProcess::start(&t, "controller");
        controller.wait_leading().await;
        // Short, under /tmp: socket paths must fit in 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("vh")
            .tempdir_in("/tmp")
            .expect("a test directory");
        let sockets = dir.path().join("s");
        let caller = Caller::bind(CallerConfig::new(&sockets, "test"))
            .await
            .expect("a caller");
        let provider = ExecProviderProcess::start(
            &dir.path().join("data"),
            &sockets,
            &dir.path().join("provider.log"),
            &caller,
            SETTLE,
        )
        .await;
        let log = dir.path().join("hooks.log");
        let mut hosts = Vec::new();
        let mut units = BTreeMap::new();
        let mut served = BTreeMap::new();
        for spec in apps {
            let host = format!("{}-host", spec.app);
            hosts.extend(relations::deploy_app(&t, spec.app, spec.proc, &[&host]).await);
            fetch_revision(&caller, dir.path(), spec).await;
            let ids = relations::run_units(&t, spec.app, spec.proc, spec.units).await;
            for id in &ids {
                let env = BTreeMap::from([
                    ("HOOK_LOG".to_owned(), log.display().to_string()),
                    ("TEST_DIR".to_owned(), dir.path().display().to_string()),
                    ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
                ]);
                served.insert(
                    name(id),
                    UnitContext {
                        unit: name(id),
                        app: name(spec.app),
                        rev: name("v1"),
                        proc: name(spec.proc),
                        env,
                    },
                );
            }
            units.insert(spec.app.to_owned(), ids);
        }
        let tools_socket = dir.path().join("tools.sock");
        let mut config =
            RelationHooksConfig::new(&sockets, dir.path().join("state"), &tools_socket)
                .expect("a configuration");
        config.tools_dir = visor_binary()
            .parent()
            .expect("the binary is in a directory")
            .to_owned();
        config.hook_timeout = Duration::from_secs(10);
        config.retry = retry;
        let prometheus = prometheus::Registry::new();
        let runner = RelationHooks::new(t.visor.clone(), config, &prometheus).expect("set up");
        let (served, units_rx) = watch::channel(served);
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(runner.run(units_rx, shutdown.clone()));
        let deployment = Self {
            t,
            units,
            prometheus,
            tools_socket,
            served,
            shutdown,
            running: Some(running),
            _hosts: hosts,
            _provider: provider,
            _caller: caller,
            _controller: controller,
            dir,
        };
        eventually(SETTLE, "the hook tools' socket is bound", || async {
            deployment.tools_socket.exists().then_some(())
        })
        .await;
        deployment
    }

    /// The units of `app`.
    pub fn units_of(&self, app: &str) -> &[String] {
        &self.units[app]
    }

    /// Adds relation `id` between `endpoints` (`app` or `app:proc`).
    pub async fn relate(&self, id: &str, endpoints: &[&str]) {
        let specs: Vec<EndpointSpec> = endpoints
            .iter()
            .map(|e| e.parse().expect("an endpoint"))
            .collect();
        self.t
            .visor
            .add_relation(id, &specs)
            .await
            .expect("add the relation");
    }

    /// Stops serving `unit`, as the agent does when its instance stops.
    pub fn stop_serving(&self, unit: &str) {
        self.served.send_modify(|units| {
            units.remove(unit);
        });
    }

    /// Every hook run so far, in the order they ran.
    pub fn log(&self) -> Vec<Ran> {
        let text = std::fs::read_to_string(self.dir.path().join("hooks.log")).unwrap_or_default();
        text.lines().map(parse_line).collect()
    }

    /// Waits until no hook is outstanding and `done` holds of the log.
    pub async fn settle(&self, what: &str, done: impl Fn(&[Ran]) -> bool) {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let outstanding = self.t.visor.hooks(None).await.map(|l| l.items);
            let quiet = outstanding.as_ref().is_ok_and(Vec::is_empty);
            let log = self.log();
            if quiet && done(&log) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not settled within {SETTLE:?}: {what}; outstanding: {outstanding:#?}; ran: {log:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The sum of the samples of `metric` whose labels include every pair of `labels`.
    pub fn metric(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.prometheus
            .gather()
            .iter()
            .filter(|family| family.name() == metric)
            .flat_map(|family| {
                let histogram = family.get_field_type() == prometheus::proto::MetricType::HISTOGRAM;
                family
                    .get_metric()
                    .iter()
                    .map(move |sample| (histogram, sample))
            })
            .filter(|(_, sample)| {
                labels.iter().all(|(name, value)| {
                    sample
                        .get_label()
                        .iter()
                        .any(|pair| pair.name() == *name && pair.value() == *value)
                })
            })
            .map(|(histogram, sample)| match histogram {
                true => sample.get_histogram().get_sample_count() as f64,
                false => sample.get_counter().get_value(),
            })
            .sum()
    }

    /// Stops the runner and waits until it returned.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            let stopped = within(SETTLE, "the runner stops at shutdown", running).await;
            stopped
                .expect("the runner task panicked")
                .expect("the runner stopped cleanly");
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Writes `spec`'s hooks into a source directory and has the provider
/// unpack it as revision `v1`.
async fn fetch_revision(caller: &Caller, dir: &Path, spec: &AppSpec<'_>) {
    let source = dir.join(format!("src-{}", spec.app));
    std::fs::create_dir_all(source.join("hooks")).expect("the revision's tree");
    for (file, body) in spec.hooks {
        let path = source.join("hooks").join(file);
        let script = format!("#!/bin/sh\nset -e\nDID=''\n{body}\n{LOG_LINE}\n");
        std::fs::write(&path, script).expect("write a hook");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let args = json!({
        "app": spec.app,
        "revision": "v1",
        "url": format!("file://{}", source.display()),
    });
    let reply = caller
        .call("artifact.fetch", args)
        .await
        .expect("artifact.fetch answered");
    reply
        .response
        .into_result()
        .unwrap_or_else(|e| panic!("fetching {}'s revision: {e}", spec.app));
}

fn parse_line(line: &str) -> Ran {
    let mut words = line.splitn(6, ' ');
    let mut next = || words.next().unwrap_or_default().to_owned();
    let (unit, hook, remote) = (next(), next(), next());
    let endpoint = next().trim_start_matches("rel=").to_owned();
    let members = next();
    let did = next();
    let kind = HookKind::ALL
        .into_iter()
        .find(|kind| hook.ends_with(&format!("-relation-{kind}")))
        .unwrap_or_else(|| panic!("a hook log line: {line:?}"));
    let members = members
        .trim_start_matches("members=")
        .split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    Ran {
        unit,
        hook,
        kind,
        remote: (remote != "-").then_some(remote),
        endpoint,
        members,
        did,
    }
}

/// Checks Juju's ordering over the hooks one unit ran in one relation, in
/// order: each follows from the ones before (joined only for a non-member,
/// changed and departed only for a member, broken only once every member
/// departed, nothing after broken), and a joined is followed at once by a
/// changed for the same unit.
pub fn assert_juju_order(unit: &str, ran: &[Ran]) {
    let mut state = RelationState::new("r");
    for (i, hook) in ran.iter().enumerate() {
        let context = || {
            format!(
                "{unit}, hook {i} ({} {:?}) of {ran:#?}",
                hook.hook, hook.remote
            )
        };
        let info = match (&hook.remote, hook.kind) {
            (None, HookKind::Broken) => visor::model::HookInfo::broken("r"),
            (Some(remote), HookKind::Joined) => visor::model::HookInfo::joined("r", remote, 1),
            (Some(remote), HookKind::Changed) => visor::model::HookInfo::changed("r", remote, 1),
            (Some(remote), HookKind::Departed) => visor::model::HookInfo::departed("r", remote, 1),
            _ => panic!("a hook about the wrong unit: {}", context()),
        };
        state
            .apply(&info)
            .unwrap_or_else(|e| panic!("{e}: {}", context()));
        if i > 0 && ran[i - 1].kind == HookKind::Joined {
            assert_eq!(
                hook.kind,
                HookKind::Changed,
                "changed after joined: {}",
                context()
            );
            assert_eq!(hook.remote, ran[i - 1].remote, "{}", context());
        }
        if hook.kind == HookKind::Broken {
            assert_eq!(i, ran.len() - 1, "broken is last: {}", context());
        }
    }
}
