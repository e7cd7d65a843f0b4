//! The `visor` command line end to end: every command run as the built binary
//! against a real etcd, in table and JSON output, including its error exits.
//!
//! Covered: `app register|unregister|list|show`, `env set|get|unset|list`,
//! `proc register|unregister|list`, `rev register|unregister|list`, `scale`
//! (set and show), `instances` with every filter, `hosts`, `tickets [--host]`
//! and `watch [--from] [--count]`, plus endpoints and root from flags or
//! environment, an unreachable registry, and malformed stored values.
//!
//! JSON field names are the CLI's contract for scripts, so JSON checks compare
//! whole objects, field names included. Error exits are checked for their code
//! (2 usage, 3 not found, 4 already exists, 1 invalid name and other failures,
//! 5 unavailable), for exactly one `error: ` line on stderr (clap's multi-line
//! usage errors only for their code and the bad value), and for having written
//! nothing to the registry. Observed state (instances, hosts, tickets) is
//! seeded through the typed API. Commands with several assignments are all or
//! nothing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use visor::Error;
use visor::model::{
    App, Host, Instance, InstanceState, Name, ProcType, Revision, Ticket, TicketOp,
};
use visor::registry::{HostRegistration, InstanceFilter};

use common::TestRegistry;

/// Bound on one test, etcd start included.
const LIMIT: Duration = Duration::from_secs(90);
/// Bound on one `visor` run; it is killed after this.
const RUN_LIMIT: Duration = Duration::from_secs(30);
/// An endpoint where nothing listens.
const CLOSED_PORT: &str = "http://127.0.0.1:1";
/// Variables that would change how the binary behaves if inherited from the test's environment.
const INHERITED_VARS: &[&str] = &[
    "VISOR_ENDPOINTS",
    "VISOR_ROOT",
    "VISOR_CONNECT_TIMEOUT",
    "VISOR_REQUEST_TIMEOUT",
    "VISOR_CA_CERT",
    "VISOR_CERT",
    "VISOR_KEY",
    "VISOR_USER",
    "VISOR_PASSWORD",
    "RUST_LOG",
];

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

/// The outcome of one `visor` run.
struct Run {
    /// The command line, for failure messages.
    command: String,
    /// The exit code; `None` if killed (it outlived [`RUN_LIMIT`]).
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn context(&self) -> String {
        format!(
            "`{}` exited with {:?}\n--- stdout\n{}--- stderr\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }

    fn assert_exited(&self) {
        assert!(
            self.code.is_some(),
            "killed after {RUN_LIMIT:?} (the command hung): {}",
            self.context()
        );
    }

    /// Stdout of a successful run that printed nothing on stderr.
    fn ok(&self) -> &str {
        self.assert_exited();
        assert_eq!(self.code, Some(0), "expected success: {}", self.context());
        assert_eq!(
            self.stderr,
            "",
            "expected a quiet stderr: {}",
            self.context()
        );
        &self.stdout
    }

    /// Stdout of a successful run parsed as one JSON document.
    fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.context()))
    }

    /// Stdout of a successful run parsed as one JSON document per line.
    fn json_lines(&self) -> Vec<Value> {
        self.ok()
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("line {line:?} is not JSON ({e}): {}", self.context())
                })
            })
            .collect()
    }

    /// Stdout of a successful run as table cells: header first, then rows.
    fn table(&self) -> Vec<Vec<String>> {
        cells(self.ok())
    }

    /// Asserts a failure with `code`, nothing on stdout and exactly one
    /// `error: ` line on stderr; returns the message after `error: `.
    fn error(&self, code: i32) -> String {
        self.assert_exited();
        assert_eq!(self.code, Some(code), "wrong exit code: {}", self.context());
        assert_eq!(
            self.stdout,
            "",
            "a failure prints nothing on stdout: {}",
            self.context()
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one stderr line: {}",
            self.context()
        );
        let message = lines[0]
            .strip_prefix("error: ")
            .unwrap_or_else(|| panic!("stderr must start with \"error: \": {}", self.context()));
        message.to_owned()
    }

    /// Asserts a clap usage error (exit 2) whose message mentions `mention`.
    fn usage_error(&self, mention: &str) {
        self.assert_exited();
        assert_eq!(
            self.code,
            Some(2),
            "expected a usage error: {}",
            self.context()
        );
        assert_eq!(self.stdout, "", "{}", self.context());
        assert!(
            self.stderr.contains(mention),
            "the usage error should mention {mention:?}: {}",
            self.context()
        );
    }
}

/// Splits table output into cells: columns are separated by at least two spaces.
fn cells(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// An expected table: header, then rows.
fn rows(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| row.iter().map(|cell| (*cell).to_owned()).collect())
        .collect()
}

/// Splits a command line into arguments: whitespace separates, single quotes
/// group (`''` is an empty argument).
fn words(line: &str) -> Vec<String> {
    let (mut args, mut current) = (Vec::new(), String::new());
    let (mut quoted, mut started) = (false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    args.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    assert!(!quoted, "unbalanced quote in {line:?}");
    if started {
        args.push(current);
    }
    args
}

/// Runs the built `visor` binary with `args` and extra environment `env`.
async fn visor_with_env(args: Vec<String>, env: &[(&str, &str)]) -> Run {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut command =
            assert_cmd::Command::cargo_bin("visor").expect("the visor binary is built");
        for var in INHERITED_VARS {
            command.env_remove(var);
        }
        command.envs(env).args(&args).timeout(RUN_LIMIT);
        let output = command.output().expect("spawn the visor binary");
        Run {
            command: format!("visor {}", args.join(" ")),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("the thread running visor panicked")
}

/// Runs `visor <line>` with no endpoint given.
async fn visor(line: &str) -> Run {
    visor_with_env(words(line), &[]).await
}

/// The CLI pointed at one test registry.
struct Cli {
    endpoint: String,
}

impl Cli {
    fn new(t: &TestRegistry) -> Self {
        Self {
            endpoint: t.etcd.endpoint(),
        }
    }

    /// `visor --endpoints <endpoint> <line>`: table output unless `line` says otherwise.
    async fn run(&self, line: &str) -> Run {
        visor(&format!("--endpoints {} {line}", self.endpoint)).await
    }

    /// `visor --endpoints <endpoint> -o json <line>`.
    async fn json(&self, line: &str) -> Run {
        self.run(&format!("-o json {line}")).await
    }
}

// ---------------------------------------------------------------------------
// Fixtures and checks
// ---------------------------------------------------------------------------

fn name(value: &str) -> Name {
    Name::parse("test", value).expect("test names are valid")
}

fn app_spec(repo_url: &str) -> App {
    App {
        repo_url: repo_url.to_owned(),
        stack: name("base"),
        deploy_type: "lxc".to_owned(),
        created_at: Utc::now(),
    }
}

fn proc_spec(command: &str) -> ProcType {
    ProcType {
        command: command.to_owned(),
        port: None,
        limits: Default::default(),
        host_labels: Default::default(),
        created_at: Utc::now(),
    }
}

fn rev_spec(archive_url: &str) -> Revision {
    Revision {
        archive_url: archive_url.to_owned(),
        created_at: Utc::now(),
    }
}

fn host_spec(addr: &str, capacity: u32, stacks: &[&str], labels: &[(&str, &str)]) -> Host {
    Host {
        addr: addr.to_owned(),
        capacity,
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        stacks: stacks.iter().copied().map(name).collect(),
        registered_at: Utc::now(),
    }
}

fn instance_spec(app: &str, rev: &str, proc: &str, host: Option<&str>) -> Instance {
    Instance::pending(name(app), name(rev), name(proc), host.map(name), Utc::now())
}

fn ticket_spec(op: TicketOp, instance: &str, app: &str, rev: &str, proc: &str) -> Ticket {
    Ticket {
        op,
        instance: name(instance),
        app: name(app),
        rev: name(rev),
        proc: name(proc),
        created_at: Utc::now(),
        claimed_by: None,
        claimed_at: None,
    }
}

async fn register_app(t: &TestRegistry, app: &str) {
    t.visor
        .register_app(app, app_spec(&format!("https://git.example/{app}")))
        .await
        .expect("register app");
}

/// Registers app `app` with revision `v1` and proc types `http` and `worker`.
async fn seed_app(t: &TestRegistry, app: &str) {
    register_app(t, app).await;
    t.visor
        .register_rev(app, "v1", rev_spec(&format!("s3://builds/{app}/v1.tgz")))
        .await
        .expect("register rev");
    for proc in ["http", "worker"] {
        t.visor
            .register_proc(app, proc, proc_spec(&format!("bin/{proc}")))
            .await
            .expect("register proc");
    }
}

async fn register_host(t: &TestRegistry, host: &str, spec: Host) -> HostRegistration {
    t.visor
        .register_host(host, spec, Duration::from_secs(30))
        .await
        .expect("register host")
}

/// The registry's current revision: unchanged across a command that wrote nothing.
async fn registry_revision(t: &TestRegistry) -> i64 {
    let response = t
        .raw()
        .get("/", None)
        .await
        .expect("read the registry revision");
    response.header().expect("response header").revision()
}

/// Asserts `value` is an object with exactly the field names `fields`.
fn assert_fields(value: &Value, fields: &[&str]) {
    let have: BTreeSet<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    let want: BTreeSet<&str> = fields.iter().copied().collect();
    assert_eq!(
        have, want,
        "JSON field names are the CLI's contract: {value}"
    );
}

/// Removes the timestamp `field` from `value` and returns it parsed.
fn take_time(value: &mut Value, field: &str) -> DateTime<Utc> {
    let raw = value
        .as_object_mut()
        .and_then(|o| o.remove(field))
        .unwrap_or_else(|| panic!("no {field:?} in {value}"));
    let text = raw
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string: {raw}"));
    parse_time(text)
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

fn as_array(value: &Value) -> &Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {value}"))
}

/// The `field` of every element of the JSON array `value`.
fn column(value: &Value, field: &str) -> Vec<String> {
    as_array(value)
        .iter()
        .map(|row| {
            row[field]
                .as_str()
                .unwrap_or_else(|| panic!("no string {field:?} in {row}"))
                .to_owned()
        })
        .collect()
}

const APP_FIELDS: &[&str] = &[
    "name",
    "repo_url",
    "stack",
    "deploy_type",
    "created_at",
    "mod_revision",
];
const PROC_FIELDS: &[&str] = &[
    "app",
    "name",
    "command",
    "port",
    "limits",
    "host_labels",
    "created_at",
];
const REV_FIELDS: &[&str] = &["app", "name", "archive_url", "created_at"];
const REMOVED_FIELDS: &[&str] = &["removed", "revision"];
const REMOVED_HEADER: &[&str] = &["REMOVED", "REVISION"];

// ---------------------------------------------------------------------------
// app
// ---------------------------------------------------------------------------

#[tokio::test]
async fn app_commands_in_json() {
    common::within(LIMIT, "etcd start or a visor app command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);

        let mut web = cli
            .json("app register web --repo-url https://git.example/web --stack base")
            .await
            .json();
        assert_fields(&web, APP_FIELDS);
        let stored = t.visor.app("web").await.expect("the CLI registered web");
        assert_eq!(take_time(&mut web, "created_at"), stored.value.created_at);
        assert_eq!(
            web,
            json!({"name": "web", "repo_url": "https://git.example/web", "stack": "base",
                   "deploy_type": "lxc", "mod_revision": stored.mod_revision})
        );

        // `-o` is global: it may follow the subcommand.
        let api = cli
            .run(
                "app register api --repo-url https://git.example/api --stack jvm \
                 --deploy-type docker -o json",
            )
            .await
            .json();
        assert_eq!(api["deploy_type"], "docker");
        assert_eq!(api["stack"], "jvm");
        assert_eq!(
            t.visor.app("api").await.expect("api").value.deploy_type,
            "docker"
        );

        let list = cli.json("app list").await.json();
        assert_eq!(column(&list, "name"), ["api", "web"], "apps in name order");
        for app in as_array(&list) {
            assert_fields(app, APP_FIELDS);
        }
        let mut listed_web = list[1].clone();
        assert_eq!(
            take_time(&mut listed_web, "created_at"),
            stored.value.created_at
        );
        assert_eq!(listed_web, web);

        // Everything `show` gathers, written through the typed API.
        t.visor
            .set_env("web", "PORT", "8080")
            .await
            .expect("set env");
        t.visor
            .set_env("web", "MODE", "prod")
            .await
            .expect("set env");
        let mut http = proc_spec("bin/http --port 8080");
        http.port = Some(8080);
        http.limits.memory_mb = Some(256);
        http.host_labels.insert("zone".into(), "a".into());
        let http = t
            .visor
            .register_proc("web", "http", http)
            .await
            .expect("proc");
        let v1 = t
            .visor
            .register_rev("web", "v1", rev_spec("s3://b/v1.tgz"))
            .await
            .expect("rev");
        t.visor
            .set_scale("web", "v1", "http", 3)
            .await
            .expect("scale");

        let mut show = cli.json("app show web").await.json();
        assert_fields(
            &show,
            &[APP_FIELDS, &["env", "procs", "revs", "scale"]].concat(),
        );
        assert_fields(&show["procs"][0], PROC_FIELDS);
        assert_fields(&show["revs"][0], REV_FIELDS);
        assert_eq!(take_time(&mut show, "created_at"), stored.value.created_at);
        let proc_time = take_time(&mut show["procs"][0], "created_at");
        assert_eq!(proc_time, http.value.created_at);
        let rev_time = take_time(&mut show["revs"][0], "created_at");
        assert_eq!(rev_time, v1.value.created_at);
        assert_eq!(
            show,
            json!({
                "name": "web", "repo_url": "https://git.example/web", "stack": "base",
                "deploy_type": "lxc", "mod_revision": stored.mod_revision,
                "env": {"MODE": "prod", "PORT": "8080"},
                "procs": [{"app": "web", "name": "http", "command": "bin/http --port 8080",
                           "port": 8080, "limits": {"memory_mb": 256, "cpu_shares": null},
                           "host_labels": {"zone": "a"}}],
                "revs": [{"app": "web", "name": "v1", "archive_url": "s3://b/v1.tgz"}],
                "scale": [{"app": "web", "rev": "v1", "proc": "http", "replicas": 3}],
            })
        );

        let removed = cli.json("app unregister web").await.json();
        assert_fields(&removed, REMOVED_FIELDS);
        let revision = registry_revision(&t).await;
        assert_eq!(removed, json!({"removed": "app web", "revision": revision}));
        assert!(matches!(t.visor.app("web").await, Err(Error::NotFound(_))));
        assert!(t.visor.envs("web").await.expect("envs").items.is_empty());
        assert!(t.visor.procs("web").await.expect("procs").items.is_empty());
        assert!(t.visor.revs("web").await.expect("revs").items.is_empty());
        let scales = t.visor.scales(Some("web")).await.expect("scales");
        assert!(
            scales.items.is_empty(),
            "unregister cascades to scale factors"
        );
        assert_eq!(column(&cli.json("app list").await.json(), "name"), ["api"]);
    })
    .await;
}

#[tokio::test]
async fn app_commands_as_tables() {
    common::within(LIMIT, "etcd start or a visor app command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let header = ["NAME", "STACK", "DEPLOY TYPE", "REPO URL", "CREATED AT"];

        assert_eq!(
            cli.run("app list").await.table(),
            [header],
            "an empty listing is its header"
        );

        let registered = cli
            .run("app register web --repo-url https://git.example/web --stack base")
            .await
            .table();
        let web = t.visor.app("web").await.expect("registered");
        let web_row = ["web", "base", "lxc", "https://git.example/web"];
        assert_eq!(registered.len(), 2, "{registered:?}");
        assert_eq!(registered[0], header);
        assert_eq!(registered[1][..4], web_row);
        assert_eq!(parse_time(&registered[1][4]), web.value.created_at);

        register_app(&t, "api").await;
        let list = cli.run("app list").await.table();
        assert_eq!(list.len(), 3, "{list:?}");
        assert_eq!(list[0], header);
        assert_eq!(
            list[1][..4],
            ["api", "base", "lxc", "https://git.example/api"]
        );
        assert_eq!(list[2][..4], web_row);

        let show_header: &[&str] = &[
            "NAME",
            "STACK",
            "DEPLOY TYPE",
            "REPO URL",
            "ENV",
            "PROCS",
            "REVS",
            "SCALE",
        ];
        let bare = cli.run("app show web").await.table();
        let bare_row: &[&str] = &[
            "web",
            "base",
            "lxc",
            "https://git.example/web",
            "-",
            "-",
            "-",
            "-",
        ];
        assert_eq!(
            bare,
            rows(&[show_header, bare_row]),
            "absent parts show as -"
        );
        seed_parts(&t).await;
        let show = cli.run("app show web").await.table();
        let full_row: &[&str] = &[
            "web",
            "base",
            "lxc",
            "https://git.example/web",
            "MODE=prod,PORT=8080",
            "http,worker",
            "v1,v2",
            "v1/http=3,v2/worker=1",
        ];
        assert_eq!(show, rows(&[show_header, full_row]));

        let removed = cli.run("app unregister web").await.table();
        let revision = registry_revision(&t).await.to_string();
        assert_eq!(removed, rows(&[REMOVED_HEADER, &["app web", &revision]]));
        assert!(matches!(t.visor.app("web").await, Err(Error::NotFound(_))));
    })
    .await;
}

/// Env vars, two proc types, two revisions and two scale factors for app `web`.
async fn seed_parts(t: &TestRegistry) {
    t.visor.set_env("web", "PORT", "8080").await.expect("env");
    t.visor.set_env("web", "MODE", "prod").await.expect("env");
    for proc in ["http", "worker"] {
        t.visor
            .register_proc("web", proc, proc_spec(proc))
            .await
            .expect("proc");
    }
    for rev in ["v1", "v2"] {
        t.visor
            .register_rev("web", rev, rev_spec(rev))
            .await
            .expect("rev");
    }
    t.visor
        .set_scale("web", "v1", "http", 3)
        .await
        .expect("scale");
    t.visor
        .set_scale("web", "v2", "worker", 1)
        .await
        .expect("scale");
}

#[tokio::test]
async fn app_errors_exit_with_their_codes_and_write_nothing() {
    common::within(
        LIMIT,
        "etcd start or a failing visor app command hangs",
        async {
            let t = TestRegistry::start().await;
            let cli = Cli::new(&t);
            register_app(&t, "web").await;
            let web = t.visor.app("web").await.expect("web");
            let before = registry_revision(&t).await;

            let again = "app register web --repo-url https://other.example --stack base";
            assert_eq!(cli.run(again).await.error(4), "app web already exists");
            assert_eq!(
                cli.json(again).await.error(4),
                "app web already exists",
                "errors are one plain line in JSON mode too"
            );
            let after = t.visor.app("web").await.expect("web is still there");
            assert_eq!(after.value.repo_url, "https://git.example/web");
            assert_eq!(after.mod_revision, web.mod_revision);

            let message = cli
                .run("app register 'Bad Name' --repo-url u --stack base")
                .await
                .error(1);
            assert!(
                message.contains("invalid app name \"Bad Name\""),
                "{message}"
            );
            let message = cli
                .run("app register ok --repo-url u --stack 'Bad Stack'")
                .await
                .error(1);
            assert!(
                message.contains("invalid stack name \"Bad Stack\""),
                "{message}"
            );

            assert_eq!(
                cli.run("app show nope").await.error(3),
                "app nope not found"
            );
            assert_eq!(
                cli.json("app show nope").await.error(3),
                "app nope not found"
            );
            assert_eq!(
                cli.run("app unregister nope").await.error(3),
                "app nope not found"
            );
            let message = cli.run("app unregister 'Bad Name'").await.error(1);
            assert!(
                message.contains("invalid app name \"Bad Name\""),
                "{message}"
            );

            cli.run("app register x --stack base")
                .await
                .usage_error("--repo-url");
            cli.run("app register").await.usage_error("<NAME>");
            cli.run("app show").await.usage_error("<NAME>");
            cli.run("app frobnicate").await.usage_error("frobnicate");

            assert_eq!(
                registry_revision(&t).await,
                before,
                "a failed command wrote"
            );
            assert_eq!(t.visor.apps().await.expect("apps").items.len(), 1);
        },
    )
    .await;
}

#[tokio::test]
async fn a_malformed_app_is_skipped_with_a_warning_naming_its_key() {
    common::within(
        LIMIT,
        "etcd start, etcdctl or visor app list hangs",
        async {
            let t = TestRegistry::start().await;
            let cli = Cli::new(&t);
            register_app(&t, "api").await;
            register_app(&t, "web").await;
            let endpoint = t.etcd.endpoint();
            let put = tokio::task::spawn_blocking(move || {
                std::process::Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args([
                        "--endpoints",
                        &endpoint,
                        "put",
                        "/visor/apps/broken",
                        "not json",
                    ])
                    .output()
            })
            .await
            .expect("etcdctl thread")
            .expect("run etcdctl");
            assert!(put.status.success(), "etcdctl put failed: {put:?}");

            for json in [false, true] {
                let run = if json {
                    cli.json("app list").await
                } else {
                    cli.run("app list").await
                };
                run.assert_exited();
                assert_eq!(
                    run.code,
                    Some(0),
                    "a malformed value fails a listing: {}",
                    run.context()
                );
                assert!(
                    run.stderr.contains("/visor/apps/broken"),
                    "the warning should name the malformed key: {}",
                    run.context()
                );
                assert!(!run.stderr.contains("error"), "{}", run.context());
                let names: Vec<String> = if json {
                    let list: Value = serde_json::from_str(&run.stdout).expect("JSON listing");
                    column(&list, "name")
                } else {
                    cells(&run.stdout)
                        .into_iter()
                        .skip(1)
                        .map(|row| row[0].clone())
                        .collect()
                };
                assert_eq!(names, ["api", "web"], "{}", run.context());
            }

            let message = cli.run("app show broken").await.error(1);
            assert!(message.contains("/visor/apps/broken"), "{message}");
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// env
// ---------------------------------------------------------------------------

#[tokio::test]
async fn env_commands_in_json() {
    common::within(LIMIT, "etcd start or a visor env command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;

        let set = cli
            .json("env set web PORT=80 URL=http://x/?a=b EMPTY=")
            .await
            .json();
        for row in as_array(&set) {
            assert_fields(row, &["app", "key", "value"]);
        }
        assert_eq!(
            set,
            json!([
                {"app": "web", "key": "PORT", "value": "80"},
                {"app": "web", "key": "URL", "value": "http://x/?a=b"},
                {"app": "web", "key": "EMPTY", "value": ""},
            ]),
            "rows in argument order; values may contain '=' or be empty"
        );
        assert_eq!(
            t.visor.env("web", "URL").await.expect("URL").value,
            "http://x/?a=b"
        );
        assert_eq!(t.visor.env("web", "EMPTY").await.expect("EMPTY").value, "");

        let replaced = cli.json("env set web PORT=8080").await.json();
        assert_eq!(
            replaced,
            json!([{"app": "web", "key": "PORT", "value": "8080"}])
        );
        assert_eq!(
            t.visor.env("web", "PORT").await.expect("PORT").value,
            "8080"
        );

        let list = cli.json("env list web").await.json();
        assert_eq!(
            list,
            json!([
                {"app": "web", "key": "EMPTY", "value": ""},
                {"app": "web", "key": "PORT", "value": "8080"},
                {"app": "web", "key": "URL", "value": "http://x/?a=b"},
            ]),
            "env vars in key order"
        );

        // Both removals happen in one transaction, at one revision.
        let unset = cli.json("env unset web PORT URL").await.json();
        for row in as_array(&unset) {
            assert_fields(row, REMOVED_FIELDS);
        }
        let last = registry_revision(&t).await;
        assert_eq!(
            unset,
            json!([
                {"removed": "env var web/PORT", "revision": last},
                {"removed": "env var web/URL", "revision": last},
            ])
        );
        let left = t.visor.envs("web").await.expect("envs");
        assert_eq!(left.items.len(), 1);
        assert_eq!(left.items[0].name(), "EMPTY");

        cli.json("env unset web EMPTY").await.json();
        assert_eq!(cli.json("env list web").await.json(), json!([]));
    })
    .await;
}

#[tokio::test]
async fn env_commands_as_tables() {
    common::within(LIMIT, "etcd start or a visor env command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        let header: &[&str] = &["APP", "KEY", "VALUE"];

        assert_eq!(cli.run("env list web").await.table(), rows(&[header]));
        let set = cli.run("env set web PORT=80 'MODE=prod run'").await.table();
        assert_eq!(
            set,
            rows(&[header, &["web", "PORT", "80"], &["web", "MODE", "prod run"]])
        );
        let list = cli.run("env list web").await.table();
        assert_eq!(
            list,
            rows(&[header, &["web", "MODE", "prod run"], &["web", "PORT", "80"]])
        );
        let unset = cli.run("env unset web MODE").await.table();
        let revision = registry_revision(&t).await.to_string();
        assert_eq!(
            unset,
            rows(&[REMOVED_HEADER, &["env var web/MODE", &revision]])
        );
        assert!(matches!(
            t.visor.env("web", "MODE").await,
            Err(Error::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn env_errors_exit_with_their_codes_and_write_nothing() {
    common::within(
        LIMIT,
        "etcd start or a failing visor env command hangs",
        async {
            let t = TestRegistry::start().await;
            let cli = Cli::new(&t);
            register_app(&t, "web").await;
            t.visor.set_env("web", "PORT", "80").await.expect("env");
            let before = registry_revision(&t).await;

            assert_eq!(
                cli.run("env set nope PORT=80").await.error(3),
                "app nope not found"
            );
            assert_eq!(
                cli.run("env unset web NOPE").await.error(3),
                "env var web/NOPE not found"
            );

            let message = cli.run("env set web 1BAD=x").await.error(1);
            assert!(message.contains("invalid env name \"1BAD\""), "{message}");
            let message = cli.run("env set 'Bad Name' PORT=1").await.error(1);
            assert!(
                message.contains("invalid app name \"Bad Name\""),
                "{message}"
            );

            cli.run("env set web NOEQUALS")
                .await
                .usage_error("NOEQUALS");
            cli.run("env set web =value").await.usage_error("=value");
            cli.run("env set web").await.usage_error("<VARS>");
            cli.run("env unset web").await.usage_error("<KEYS>");

            assert_eq!(
                registry_revision(&t).await,
                before,
                "a failed command wrote"
            );
            assert_eq!(t.visor.env("web", "PORT").await.expect("PORT").value, "80");
            assert_eq!(t.visor.envs("web").await.expect("envs").items.len(), 1);
        },
    )
    .await;
}

#[tokio::test]
async fn env_set_with_one_bad_assignment_writes_none() {
    common::within(LIMIT, "etcd start or visor env set hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        let before = registry_revision(&t).await;

        let message = cli.run("env set web GOOD=1 1BAD=2").await.error(1);
        assert!(message.contains("invalid env name \"1BAD\""), "{message}");
        assert!(
            matches!(t.visor.env("web", "GOOD").await, Err(Error::NotFound(_))),
            "env set failed, yet wrote GOOD"
        );
        assert_eq!(registry_revision(&t).await, before);
    })
    .await;
}

#[tokio::test]
async fn env_unset_with_one_missing_key_removes_none() {
    common::within(LIMIT, "etcd start or visor env unset hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        t.visor.set_env("web", "PORT", "80").await.expect("env");
        let before = registry_revision(&t).await;

        let message = cli.run("env unset web PORT NOPE").await.error(3);
        assert_eq!(message, "env var web/NOPE not found");
        assert!(
            t.visor.env("web", "PORT").await.is_ok(),
            "env unset failed, yet removed PORT"
        );
        assert_eq!(registry_revision(&t).await, before);
    })
    .await;
}

#[tokio::test]
async fn env_get_prints_one_var_or_fails() {
    common::within(LIMIT, "etcd start or visor env get hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        t.visor
            .set_env("web", "URL", "http://x/?a=b")
            .await
            .expect("env");
        t.visor
            .set_env("web", "MODE", "prod run")
            .await
            .expect("env");

        let get = cli.json("env get web URL").await.json();
        assert_fields(&get, &["app", "key", "value"]);
        assert_eq!(
            get,
            json!({"app": "web", "key": "URL", "value": "http://x/?a=b"})
        );
        let get = cli.run("env get web MODE").await.table();
        assert_eq!(
            get,
            rows(&[&["APP", "KEY", "VALUE"], &["web", "MODE", "prod run"]])
        );

        let before = registry_revision(&t).await;
        assert_eq!(
            cli.json("env get web NOPE").await.error(3),
            "env var web/NOPE not found"
        );
        assert_eq!(
            cli.run("env get nope URL").await.error(3),
            "env var nope/URL not found"
        );
        let message = cli.run("env get web BAD-KEY").await.error(1);
        assert!(
            message.contains("invalid env name \"BAD-KEY\""),
            "{message}"
        );
        cli.run("env get web").await.usage_error("<KEY>");
        let line = format!("--endpoints {CLOSED_PORT} --connect-timeout 1s env get web URL");
        assert!(
            visor(&line)
                .await
                .error(5)
                .starts_with("registry unavailable")
        );
        assert_eq!(registry_revision(&t).await, before, "env get wrote");
    })
    .await;
}

// ---------------------------------------------------------------------------
// proc
// ---------------------------------------------------------------------------

#[tokio::test]
async fn proc_commands_in_json() {
    common::within(LIMIT, "etcd start or a visor proc command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;

        let mut http = cli
            .json(
                "proc register web http --command 'bin/http --port 8080' --port 8080 \
                 --memory-mb 256 --cpu-shares 512 --host-label zone=a --host-label disk=ssd",
            )
            .await
            .json();
        assert_fields(&http, PROC_FIELDS);
        let stored = t
            .visor
            .proc("web", "http")
            .await
            .expect("the CLI registered http");
        assert_eq!(take_time(&mut http, "created_at"), stored.value.created_at);
        let http_json = json!({
            "app": "web", "name": "http", "command": "bin/http --port 8080", "port": 8080,
            "limits": {"memory_mb": 256, "cpu_shares": 512},
            "host_labels": {"disk": "ssd", "zone": "a"},
        });
        assert_eq!(http, http_json);
        assert_eq!(stored.value.command, "bin/http --port 8080");
        assert_eq!(stored.value.port, Some(8080));
        assert_eq!(stored.value.limits.memory_mb, Some(256));
        assert_eq!(stored.value.limits.cpu_shares, Some(512));
        let labels: Vec<(&str, &str)> = stored
            .value
            .host_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, [("disk", "ssd"), ("zone", "a")]);

        let mut worker = cli
            .json("proc register web worker --command bin/worker")
            .await
            .json();
        take_time(&mut worker, "created_at");
        let worker_json = json!({
            "app": "web", "name": "worker", "command": "bin/worker", "port": null,
            "limits": {"memory_mb": null, "cpu_shares": null}, "host_labels": {},
        });
        assert_eq!(worker, worker_json, "absent options are null or empty");

        let mut list = cli.json("proc list web").await.json();
        for row in list.as_array_mut().expect("array") {
            assert_fields(row, PROC_FIELDS);
            take_time(row, "created_at");
        }
        assert_eq!(list, json!([http_json, worker_json]), "procs in name order");

        t.visor
            .register_rev("web", "v1", rev_spec("v1"))
            .await
            .expect("rev");
        t.visor
            .set_scale("web", "v1", "http", 2)
            .await
            .expect("scale");
        t.visor
            .set_scale("web", "v1", "worker", 1)
            .await
            .expect("scale");
        let removed = cli.json("proc unregister web http").await.json();
        assert_fields(&removed, REMOVED_FIELDS);
        let revision = registry_revision(&t).await;
        assert_eq!(
            removed,
            json!({"removed": "proc type web/http", "revision": revision})
        );
        assert!(matches!(
            t.visor.proc("web", "http").await,
            Err(Error::NotFound(_))
        ));
        assert!(
            matches!(
                t.visor.scale("web", "v1", "http").await,
                Err(Error::NotFound(_))
            ),
            "unregistering a proc type removes its scale factors"
        );
        let kept = t.visor.scale("web", "v1", "worker").await.expect("kept");
        assert_eq!(kept.value.replicas, 1);
        assert_eq!(
            column(&cli.json("proc list web").await.json(), "name"),
            ["worker"]
        );
    })
    .await;
}

#[tokio::test]
async fn proc_commands_as_tables() {
    common::within(LIMIT, "etcd start or a visor proc command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        let header: &[&str] = &["APP", "NAME", "COMMAND", "PORT", "HOST LABELS"];

        assert_eq!(cli.run("proc list web").await.table(), rows(&[header]));
        let http = cli
            .run(
                "proc register web http --command 'bin/http -v' --port 80 \
                 --host-label zone=a --host-label disk=ssd",
            )
            .await
            .table();
        let http_row: &[&str] = &["web", "http", "bin/http -v", "80", "disk=ssd,zone=a"];
        assert_eq!(http, rows(&[header, http_row]));
        let worker = cli
            .run("proc register web worker --command bin/worker")
            .await
            .table();
        let worker_row: &[&str] = &["web", "worker", "bin/worker", "-", "-"];
        assert_eq!(
            worker,
            rows(&[header, worker_row]),
            "absent port and labels show as -"
        );

        let list = cli.run("proc list web").await.table();
        assert_eq!(list, rows(&[header, http_row, worker_row]));

        let removed = cli.run("proc unregister web worker").await.table();
        let revision = registry_revision(&t).await.to_string();
        assert_eq!(
            removed,
            rows(&[REMOVED_HEADER, &["proc type web/worker", &revision]])
        );
        assert!(matches!(
            t.visor.proc("web", "worker").await,
            Err(Error::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn proc_errors_exit_with_their_codes_and_write_nothing() {
    common::within(
        LIMIT,
        "etcd start or a failing visor proc command hangs",
        async {
            let t = TestRegistry::start().await;
            let cli = Cli::new(&t);
            register_app(&t, "web").await;
            let http = t
                .visor
                .register_proc("web", "http", proc_spec("bin/http"))
                .await
                .expect("http");
            let before = registry_revision(&t).await;

            let register =
                |app: &str, proc: &str| format!("proc register {app} {proc} --command other");
            assert_eq!(
                cli.run(&register("nope", "http")).await.error(3),
                "app nope not found"
            );
            assert_eq!(
                cli.run(&register("web", "http")).await.error(4),
                "proc type web/http already exists"
            );
            let message = cli.run(&register("web", "Bad_Proc")).await.error(1);
            assert!(
                message.contains("invalid proc name \"Bad_Proc\""),
                "{message}"
            );
            let message = cli.run(&register("Bad", "http")).await.error(1);
            assert!(message.contains("invalid app name \"Bad\""), "{message}");
            assert_eq!(
                cli.json("proc unregister web nope").await.error(3),
                "proc type web/nope not found"
            );
            assert_eq!(
                cli.run("proc unregister nope http").await.error(3),
                "proc type nope/http not found"
            );

            let base = "proc register web x --command c";
            cli.run(&format!("{base} --port 70000"))
                .await
                .usage_error("70000");
            cli.run(&format!("{base} --host-label nolabel"))
                .await
                .usage_error("nolabel");
            cli.run(&format!("{base} --memory-mb lots"))
                .await
                .usage_error("lots");
            cli.run(&format!("{base} --cpu-shares -1"))
                .await
                .usage_error("-1");
            cli.run("proc register web x")
                .await
                .usage_error("--command");

            assert_eq!(
                registry_revision(&t).await,
                before,
                "a failed command wrote"
            );
            let stored = t
                .visor
                .proc("web", "http")
                .await
                .expect("http is still there");
            assert_eq!(stored.value.command, "bin/http");
            assert_eq!(stored.mod_revision, http.mod_revision);
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// rev
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rev_commands_in_json() {
    common::within(LIMIT, "etcd start or a visor rev command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        t.visor
            .register_proc("web", "http", proc_spec("bin/http"))
            .await
            .expect("http");

        let mut v1 = cli
            .json("rev register web v1 --archive-url s3://b/web/v1.tgz")
            .await
            .json();
        assert_fields(&v1, REV_FIELDS);
        let stored = t
            .visor
            .rev("web", "v1")
            .await
            .expect("the CLI registered v1");
        assert_eq!(take_time(&mut v1, "created_at"), stored.value.created_at);
        assert_eq!(
            v1,
            json!({"app": "web", "name": "v1", "archive_url": "s3://b/web/v1.tgz"})
        );
        assert_eq!(stored.value.archive_url, "s3://b/web/v1.tgz");

        cli.json("rev register web v2 --archive-url s3://b/web/v2.tgz")
            .await
            .json();
        let mut list = cli.json("rev list web").await.json();
        for row in list.as_array_mut().expect("array") {
            assert_fields(row, REV_FIELDS);
            take_time(row, "created_at");
        }
        assert_eq!(
            list,
            json!([
                {"app": "web", "name": "v1", "archive_url": "s3://b/web/v1.tgz"},
                {"app": "web", "name": "v2", "archive_url": "s3://b/web/v2.tgz"},
            ])
        );

        t.visor
            .set_scale("web", "v1", "http", 2)
            .await
            .expect("scale");
        t.visor
            .set_scale("web", "v2", "http", 1)
            .await
            .expect("scale");
        let removed = cli.json("rev unregister web v1").await.json();
        assert_fields(&removed, REMOVED_FIELDS);
        let revision = registry_revision(&t).await;
        assert_eq!(
            removed,
            json!({"removed": "revision web/v1", "revision": revision})
        );
        assert!(matches!(
            t.visor.rev("web", "v1").await,
            Err(Error::NotFound(_))
        ));
        assert!(
            matches!(
                t.visor.scale("web", "v1", "http").await,
                Err(Error::NotFound(_))
            ),
            "unregistering a revision removes its scale factors"
        );
        let kept = t.visor.scale("web", "v2", "http").await.expect("kept");
        assert_eq!(kept.value.replicas, 1);
        assert_eq!(
            column(&cli.json("rev list web").await.json(), "name"),
            ["v2"]
        );
    })
    .await;
}

#[tokio::test]
async fn rev_commands_as_tables() {
    common::within(LIMIT, "etcd start or a visor rev command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        let header = ["APP", "NAME", "ARCHIVE URL", "CREATED AT"];

        assert_eq!(cli.run("rev list web").await.table(), [header]);
        let v1 = cli
            .run("rev register web v1 --archive-url s3://b/v1.tgz")
            .await
            .table();
        assert_eq!(v1.len(), 2, "{v1:?}");
        assert_eq!(v1[0], header);
        assert_eq!(v1[1][..3], ["web", "v1", "s3://b/v1.tgz"]);
        let stored = t.visor.rev("web", "v1").await.expect("v1");
        assert_eq!(parse_time(&v1[1][3]), stored.value.created_at);
        t.visor
            .register_rev("web", "v2", rev_spec("s3://b/v2.tgz"))
            .await
            .expect("v2");

        let list = cli.run("rev list web").await.table();
        assert_eq!(list.len(), 3, "{list:?}");
        assert_eq!(list[0], header);
        assert_eq!(list[1][..3], ["web", "v1", "s3://b/v1.tgz"]);
        assert_eq!(list[2][..3], ["web", "v2", "s3://b/v2.tgz"]);

        let removed = cli.run("rev unregister web v2").await.table();
        let revision = registry_revision(&t).await.to_string();
        assert_eq!(
            removed,
            rows(&[REMOVED_HEADER, &["revision web/v2", &revision]])
        );
        assert!(matches!(
            t.visor.rev("web", "v2").await,
            Err(Error::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn rev_errors_exit_with_their_codes_and_write_nothing() {
    common::within(
        LIMIT,
        "etcd start or a failing visor rev command hangs",
        async {
            let t = TestRegistry::start().await;
            let cli = Cli::new(&t);
            register_app(&t, "web").await;
            let v1 = t
                .visor
                .register_rev("web", "v1", rev_spec("s3://b/v1.tgz"))
                .await
                .expect("v1");
            let before = registry_revision(&t).await;

            let register =
                |app: &str, rev: &str| format!("rev register {app} {rev} --archive-url s3://x");
            assert_eq!(
                cli.run(&register("nope", "v1")).await.error(3),
                "app nope not found"
            );
            assert_eq!(
                cli.run(&register("web", "v1")).await.error(4),
                "revision web/v1 already exists"
            );
            let message = cli.run(&register("web", "V1")).await.error(1);
            assert!(message.contains("invalid rev name \"V1\""), "{message}");
            assert_eq!(
                cli.run("rev unregister web v9").await.error(3),
                "revision web/v9 not found"
            );
            assert_eq!(
                cli.json("rev unregister web v9").await.error(3),
                "revision web/v9 not found"
            );
            cli.run("rev register web v2")
                .await
                .usage_error("--archive-url");
            cli.run("rev list").await.usage_error("<APP>");

            assert_eq!(
                registry_revision(&t).await,
                before,
                "a failed command wrote"
            );
            let stored = t.visor.rev("web", "v1").await.expect("v1 is still there");
            assert_eq!(stored.value.archive_url, "s3://b/v1.tgz");
            assert_eq!(stored.mod_revision, v1.mod_revision);
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// scale
// ---------------------------------------------------------------------------

#[tokio::test]
async fn scale_sets_and_shows_factors_in_json() {
    common::within(LIMIT, "etcd start or visor scale hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        seed_app(&t, "web").await;
        t.visor
            .register_rev("web", "v2", rev_spec("v2"))
            .await
            .expect("v2");

        assert_eq!(
            cli.json("scale web v1").await.json(),
            json!([]),
            "nothing set yet"
        );

        let set = cli.json("scale web v1 worker=1 http=3").await.json();
        for row in as_array(&set) {
            assert_fields(row, &["app", "rev", "proc", "replicas"]);
        }
        assert_eq!(
            set,
            json!([
                {"app": "web", "rev": "v1", "proc": "worker", "replicas": 1},
                {"app": "web", "rev": "v1", "proc": "http", "replicas": 3},
            ]),
            "rows in argument order"
        );
        let http = t.visor.scale("web", "v1", "http").await.expect("http");
        assert_eq!(http.value.replicas, 3);
        let worker = t.visor.scale("web", "v1", "worker").await.expect("worker");
        assert_eq!(worker.value.replicas, 1);
        t.visor
            .set_scale("web", "v2", "http", 7)
            .await
            .expect("v2 scale");

        let show = cli.json("scale web v1").await.json();
        assert_eq!(
            show,
            json!([
                {"app": "web", "rev": "v1", "proc": "http", "replicas": 3},
                {"app": "web", "rev": "v1", "proc": "worker", "replicas": 1},
            ]),
            "only v1's factors, in proc order"
        );

        let zero = cli.json("scale web v1 http=0").await.json();
        assert_eq!(
            zero,
            json!([{"app": "web", "rev": "v1", "proc": "http", "replicas": 0}])
        );
        let http = t.visor.scale("web", "v1", "http").await.expect("http");
        assert_eq!(http.value.replicas, 0);
        let show = cli.json("scale web v2").await.json();
        assert_eq!(
            show,
            json!([{"app": "web", "rev": "v2", "proc": "http", "replicas": 7}])
        );
    })
    .await;
}

#[tokio::test]
async fn scale_sets_and_shows_factors_as_tables() {
    common::within(LIMIT, "etcd start or visor scale hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        seed_app(&t, "web").await;
        let header: &[&str] = &["APP", "REV", "PROC", "REPLICAS"];

        assert_eq!(cli.run("scale web v1").await.table(), rows(&[header]));
        let set = cli.run("scale web v1 http=3 worker=12").await.table();
        let expected = rows(&[
            header,
            &["web", "v1", "http", "3"],
            &["web", "v1", "worker", "12"],
        ]);
        assert_eq!(set, expected);
        assert_eq!(cli.run("scale web v1").await.table(), expected);
    })
    .await;
}

#[tokio::test]
async fn scale_errors_exit_with_their_codes_and_write_nothing() {
    common::within(LIMIT, "etcd start or a failing visor scale hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        seed_app(&t, "web").await;
        t.visor
            .set_scale("web", "v1", "http", 2)
            .await
            .expect("scale");
        let before = registry_revision(&t).await;

        cli.run("scale web v1 http=x").await.usage_error("http=x");
        cli.run("scale web v1 http=-1").await.usage_error("http=-1");
        cli.run("scale web v1 http=1.5")
            .await
            .usage_error("http=1.5");
        cli.run("scale web v1 http").await.usage_error("http");
        cli.run("scale web v1 http=99999999999")
            .await
            .usage_error("99999999999");
        cli.run("scale web").await.usage_error("<REV>");

        assert_eq!(
            cli.run("scale web v1 nope=1").await.error(3),
            "proc type web/nope not found"
        );
        assert_eq!(
            cli.json("scale web v9 http=1").await.error(3),
            "revision web/v9 not found"
        );
        assert_eq!(
            cli.run("scale nope v1 http=1").await.error(3),
            "app nope not found"
        );
        assert_eq!(
            cli.run("scale web v9").await.error(3),
            "revision web/v9 not found"
        );
        assert_eq!(
            cli.json("scale nope v1").await.error(3),
            "revision nope/v1 not found"
        );
        let message = cli.run("scale web v1 Bad=1").await.error(1);
        assert!(message.contains("invalid proc name \"Bad\""), "{message}");

        assert_eq!(
            registry_revision(&t).await,
            before,
            "a failed command wrote"
        );
        let http = t.visor.scale("web", "v1", "http").await.expect("http");
        assert_eq!(http.value.replicas, 2);
        assert_eq!(
            t.visor
                .scales(Some("web"))
                .await
                .expect("scales")
                .items
                .len(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn scale_with_one_bad_assignment_sets_none() {
    common::within(LIMIT, "etcd start or visor scale hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        seed_app(&t, "web").await;
        let before = registry_revision(&t).await;

        let message = cli.run("scale web v1 http=3 nope=1").await.error(3);
        assert_eq!(message, "proc type web/nope not found");
        assert!(
            matches!(
                t.visor.scale("web", "v1", "http").await,
                Err(Error::NotFound(_))
            ),
            "scale failed, yet set http"
        );
        assert_eq!(registry_revision(&t).await, before);
    })
    .await;
}

// ---------------------------------------------------------------------------
// instances, hosts, tickets
// ---------------------------------------------------------------------------

/// Four instances: web/v1/http on h1 running, web/v1/worker on h2 pending,
/// web/v2/http unassigned, api/v1/http on h1 failed. Returns their ids in that order.
async fn seed_instances(t: &TestRegistry) -> Vec<String> {
    let mut running = instance_spec("web", "v1", "http", Some("h1"));
    running.state = InstanceState::Running;
    running.port = Some(8080);
    running.restarts = 2;
    let mut failed = instance_spec("api", "v1", "http", Some("h1"));
    failed.state = InstanceState::Failed;
    failed.reason = Some("exit status 1".to_owned());
    let specs = [
        running,
        instance_spec("web", "v1", "worker", Some("h2")),
        instance_spec("web", "v2", "http", None),
        failed,
    ];
    let mut ids = Vec::new();
    for spec in specs {
        let created = t
            .visor
            .create_instance(spec)
            .await
            .expect("create instance");
        ids.push(created.name().to_owned());
    }
    ids
}

#[tokio::test]
async fn instances_in_json_with_every_filter() {
    common::within(LIMIT, "etcd start or visor instances hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        assert_eq!(cli.json("instances").await.json(), json!([]));
        let ids = seed_instances(&t).await;

        let mut all = cli.json("instances").await.json();
        let stored = t
            .visor
            .instances(&InstanceFilter::default())
            .await
            .expect("instances");
        let listed = all.as_array_mut().expect("array");
        assert_eq!(listed.len(), stored.items.len());
        for (row, instance) in listed.iter_mut().zip(&stored.items) {
            assert_fields(
                row,
                &[
                    "id",
                    "app",
                    "rev",
                    "proc",
                    "host",
                    "state",
                    "port",
                    "restarts",
                    "reason",
                    "created_at",
                ],
            );
            assert_eq!(take_time(row, "created_at"), instance.value.created_at);
        }
        assert_eq!(
            all,
            json!([
                {"id": ids[0], "app": "web", "rev": "v1", "proc": "http", "host": "h1",
                 "state": "running", "port": 8080, "restarts": 2, "reason": null},
                {"id": ids[1], "app": "web", "rev": "v1", "proc": "worker", "host": "h2",
                 "state": "pending", "port": null, "restarts": 0, "reason": null},
                {"id": ids[2], "app": "web", "rev": "v2", "proc": "http", "host": null,
                 "state": "pending", "port": null, "restarts": 0, "reason": null},
                {"id": ids[3], "app": "api", "rev": "v1", "proc": "http", "host": "h1",
                 "state": "failed", "port": null, "restarts": 0, "reason": "exit status 1"},
            ]),
            "every instance, in creation order"
        );

        let cases: &[(&str, &[usize])] = &[
            ("--app web", &[0, 1, 2]),
            ("--app api", &[3]),
            ("--rev v2", &[2]),
            ("--rev v1", &[0, 1, 3]),
            ("--proc worker", &[1]),
            ("--proc http", &[0, 2, 3]),
            ("--host h1", &[0, 3]),
            ("--host h2", &[1]),
            ("--app web --rev v1 --proc http --host h1", &[0]),
            ("--app web --host h1", &[0]),
            ("--app nope", &[]),
            ("--host h3", &[]),
        ];
        for (filter, want) in cases {
            let listing = cli.json(&format!("instances {filter}")).await.json();
            let want: Vec<&str> = want.iter().map(|&i| ids[i].as_str()).collect();
            assert_eq!(column(&listing, "id"), want, "instances {filter}");
        }
    })
    .await;
}

#[tokio::test]
async fn instances_as_tables() {
    common::within(LIMIT, "etcd start or visor instances hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let header: &[&str] = &[
            "ID", "APP", "REV", "PROC", "HOST", "STATE", "PORT", "RESTARTS",
        ];
        assert_eq!(cli.run("instances").await.table(), rows(&[header]));
        let ids = seed_instances(&t).await;
        let row = |i: usize, rest: [&'static str; 7]| {
            std::iter::once(ids[i].clone())
                .chain(rest.map(str::to_owned))
                .collect::<Vec<String>>()
        };
        let header = rows(&[header]).remove(0);

        let all = cli.run("instances").await.table();
        assert_eq!(
            all,
            [
                header.clone(),
                row(0, ["web", "v1", "http", "h1", "running", "8080", "2"]),
                row(1, ["web", "v1", "worker", "h2", "pending", "-", "0"]),
                row(2, ["web", "v2", "http", "-", "pending", "-", "0"]),
                row(3, ["api", "v1", "http", "h1", "failed", "-", "0"]),
            ],
            "absent host and port show as -"
        );
        let filtered = cli.run("instances --host h1 --app api").await.table();
        assert_eq!(filtered, [header.clone(), all[4].clone()]);
        assert_eq!(cli.run("instances --rev v9").await.table(), [header]);
    })
    .await;
}

#[tokio::test]
async fn hosts_in_json_and_as_tables() {
    common::within(LIMIT, "etcd start, a host lease or visor hosts hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let header: &[&str] = &["NAME", "ADDR", "CAPACITY", "STACKS", "LABELS"];
        assert_eq!(cli.json("hosts").await.json(), json!([]));
        assert_eq!(cli.run("hosts").await.table(), rows(&[header]));

        // Registrations stay alive (their leases renewed) while the CLI runs.
        let h2 = register_host(&t, "h2", host_spec("10.0.0.2:7000", 4, &["base"], &[])).await;
        let h1_spec = host_spec(
            "10.0.0.1:7000",
            16,
            &["base", "jvm"],
            &[("zone", "a"), ("disk", "ssd")],
        );
        let h1 = register_host(&t, "h1", h1_spec).await;

        let mut hosts = cli.json("hosts").await.json();
        let listed = hosts.as_array_mut().expect("array");
        assert_eq!(listed.len(), 2, "{listed:?}");
        for (row, registration) in listed.iter_mut().zip([&h1, &h2]) {
            assert_fields(
                row,
                &["name", "addr", "capacity", "stacks", "labels", "registered_at"],
            );
            let registered_at = take_time(row, "registered_at");
            assert_eq!(registered_at, registration.host().value.registered_at);
        }
        assert_eq!(
            hosts,
            json!([
                {"name": "h1", "addr": "10.0.0.1:7000", "capacity": 16, "stacks": ["base", "jvm"],
                 "labels": {"disk": "ssd", "zone": "a"}},
                {"name": "h2", "addr": "10.0.0.2:7000", "capacity": 4, "stacks": ["base"],
                 "labels": {}},
            ]),
            "live hosts in name order"
        );

        let table = cli.run("hosts").await.table();
        assert_eq!(
            table,
            rows(&[
                header,
                &["h1", "10.0.0.1:7000", "16", "base,jvm", "disk=ssd,zone=a"],
                &["h2", "10.0.0.2:7000", "4", "base", "-"],
            ])
        );

        h1.deregister().await.expect("deregister h1");
        let hosts = cli.json("hosts").await.json();
        assert_eq!(column(&hosts, "name"), ["h2"], "a deregistered host is gone");
        h2.deregister().await.expect("deregister h2");
    })
    .await;
}

#[tokio::test]
async fn tickets_in_json_and_as_tables() {
    common::within(LIMIT, "etcd start or visor tickets hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let header: &[&str] = &[
            "HOST",
            "ID",
            "OP",
            "INSTANCE",
            "APP",
            "REV",
            "PROC",
            "CLAIMED BY",
        ];
        assert_eq!(cli.json("tickets").await.json(), json!([]));
        assert_eq!(cli.run("tickets").await.table(), rows(&[header]));

        let ids = seed_instances(&t).await;
        // h2's ticket first: the listing follows creation, not host names.
        let specs = [
            (
                "h2",
                ticket_spec(TicketOp::Start, &ids[1], "web", "v1", "worker"),
            ),
            (
                "h1",
                ticket_spec(TicketOp::Start, &ids[0], "web", "v1", "http"),
            ),
            (
                "h1",
                ticket_spec(TicketOp::Stop, &ids[3], "api", "v1", "http"),
            ),
        ];
        let mut tickets = Vec::new();
        for (host, spec) in specs {
            let ticket = t
                .visor
                .create_ticket(host, spec)
                .await
                .expect("create ticket");
            tickets.push(ticket);
        }
        let tid: Vec<&str> = tickets.iter().map(|ticket| ticket.name()).collect();
        t.visor
            .claim_ticket("h1", tid[1], "h1")
            .await
            .expect("claim");

        let mut all = cli.json("tickets").await.json();
        let listed = all.as_array_mut().expect("array");
        assert_eq!(listed.len(), 3, "{listed:?}");
        for (row, ticket) in listed.iter_mut().zip(&tickets) {
            assert_fields(
                row,
                &[
                    "host",
                    "id",
                    "op",
                    "instance",
                    "app",
                    "rev",
                    "proc",
                    "claimed_by",
                    "created_at",
                    "create_revision",
                ],
            );
            assert_eq!(take_time(row, "created_at"), ticket.value.created_at);
        }
        let created = |i: usize| tickets[i].create_revision;
        let expected = json!([
            {"host": "h2", "id": tid[0], "op": "start", "instance": ids[1], "app": "web",
             "rev": "v1", "proc": "worker", "claimed_by": null, "create_revision": created(0)},
            {"host": "h1", "id": tid[1], "op": "start", "instance": ids[0], "app": "web",
             "rev": "v1", "proc": "http", "claimed_by": "h1", "create_revision": created(1)},
            {"host": "h1", "id": tid[2], "op": "stop", "instance": ids[3], "app": "api",
             "rev": "v1", "proc": "http", "claimed_by": null, "create_revision": created(2)},
        ]);
        assert_eq!(all, expected, "every ticket, in registry (creation) order");

        let mut h1 = cli.json("tickets --host h1").await.json();
        for row in h1.as_array_mut().expect("array") {
            take_time(row, "created_at");
        }
        assert_eq!(h1, json!([expected[1], expected[2]]));
        assert_eq!(cli.json("tickets --host h9").await.json(), json!([]));

        let table = cli.run("tickets").await.table();
        let (i0, i1, i3) = (ids[0].as_str(), ids[1].as_str(), ids[3].as_str());
        assert_eq!(
            table,
            rows(&[
                header,
                &["h2", tid[0], "start", i1, "web", "v1", "worker", "-"],
                &["h1", tid[1], "start", i0, "web", "v1", "http", "h1"],
                &["h1", tid[2], "stop", i3, "api", "v1", "http", "-"],
            ])
        );
        let h2 = cli.run("tickets --host h2").await.table();
        assert_eq!(h2, [table[0].clone(), table[1].clone()]);

        let before = registry_revision(&t).await;
        let message = cli.run("tickets --host 'Bad Host'").await.error(1);
        assert!(
            message.contains("invalid host name \"Bad Host\""),
            "{message}"
        );
        assert_eq!(registry_revision(&t).await, before);
    })
    .await;
}

// ---------------------------------------------------------------------------
// watch
// ---------------------------------------------------------------------------

/// History for `watch`: an unrelated earlier write, then one event of every
/// family, then a later write. Returns the expected events as JSON (the first
/// one's revision is where to watch from) and the host registration to keep.
async fn seed_events(t: &TestRegistry) -> (Vec<Value>, HostRegistration) {
    register_app(t, "early").await;

    let web = t
        .visor
        .register_app("web", app_spec("https://git.example/web"))
        .await
        .expect("web");
    let env = t.visor.set_env("web", "PORT", "80").await.expect("env");
    let proc = t
        .visor
        .register_proc("web", "http", proc_spec("bin/http"))
        .await
        .expect("proc");
    let rev = t
        .visor
        .register_rev("web", "v1", rev_spec("v1"))
        .await
        .expect("rev");
    let scale = t
        .visor
        .set_scale("web", "v1", "http", 2)
        .await
        .expect("scale");
    let unset = t.visor.unset_env("web", "PORT").await.expect("unset");
    let instance = t
        .visor
        .create_instance(instance_spec("web", "v1", "http", Some("h1")))
        .await
        .expect("instance");
    let id = instance.name().to_owned();
    let host = register_host(t, "h1", host_spec("10.0.0.1:7000", 8, &["base"], &[])).await;
    let ticket = t
        .visor
        .create_ticket("h1", ticket_spec(TicketOp::Start, &id, "web", "v1", "http"))
        .await
        .expect("ticket");
    let tid = ticket.name().to_owned();
    let claimed = t
        .visor
        .claim_instance(&id, "h1")
        .await
        .expect("claim instance");
    let taken = t
        .visor
        .claim_ticket("h1", &tid, "h1")
        .await
        .expect("claim ticket");
    let removed = t
        .visor
        .unregister_rev("web", "v1")
        .await
        .expect("unregister rev");

    let events = vec![
        json!({"revision": web.mod_revision, "index": 0, "type": "app-registered", "app": "web"}),
        json!({"revision": env.mod_revision, "index": 0, "type": "env-set",
               "app": "web", "key": "PORT"}),
        json!({"revision": proc.mod_revision, "index": 0, "type": "proc-registered",
               "app": "web", "proc": "http"}),
        json!({"revision": rev.mod_revision, "index": 0, "type": "rev-registered",
               "app": "web", "rev": "v1"}),
        json!({"revision": scale.mod_revision, "index": 0, "type": "scale-changed",
               "app": "web", "rev": "v1", "proc": "http", "replicas": 2}),
        json!({"revision": unset, "index": 0, "type": "env-unset", "app": "web", "key": "PORT"}),
        json!({"revision": instance.mod_revision, "index": 0, "type": "instance-registered",
               "id": id, "app": "web", "rev": "v1", "proc": "http", "host": "h1"}),
        json!({"revision": host.host().mod_revision, "index": 0, "type": "host-up", "host": "h1"}),
        json!({"revision": ticket.mod_revision, "index": 0, "type": "ticket-created",
               "host": "h1", "ticket": tid, "op": "start", "instance": id}),
        json!({"revision": claimed.mod_revision, "index": 0, "type": "instance-claimed",
               "id": id, "host": "h1"}),
        json!({"revision": taken.mod_revision, "index": 0, "type": "ticket-claimed",
               "host": "h1", "ticket": tid, "by": "h1"}),
        // One transaction removes the revision and its scale factor.
        json!({"revision": removed, "index": 0, "type": "rev-unregistered",
               "app": "web", "rev": "v1"}),
        json!({"revision": removed, "index": 1, "type": "scale-changed",
               "app": "web", "rev": "v1", "proc": "http", "replicas": null}),
    ];
    // History after the expected events: --count must stop before it.
    register_app(t, "late").await;
    (events, host)
}

#[tokio::test]
async fn watch_replays_events_from_a_revision_in_json() {
    let what = "etcd start or visor watch (waiting for more events than exist) hangs";
    common::within(LIMIT, what, async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let (expected, _host) = seed_events(&t).await;

        let from = &expected[0]["revision"];
        let run = cli
            .json(&format!("watch --from {from} --count {}", expected.len()))
            .await;
        let events = run.json_lines();
        for event in &events {
            let object = event.as_object().expect("an object per line");
            for field in ["revision", "index", "type"] {
                assert!(
                    object.contains_key(field),
                    "every event has {field:?}: {event}"
                );
            }
        }
        assert_eq!(events, expected, "{}", run.context());

        // Starting mid-history skips what came before.
        let from = &expected[5]["revision"];
        let tail = cli
            .json(&format!("watch --from {from} --count 2"))
            .await
            .json_lines();
        assert_eq!(tail, expected[5..7]);
    })
    .await;
}

#[tokio::test]
async fn watch_replays_events_from_a_revision_as_lines() {
    let what = "etcd start or visor watch (waiting for more events than exist) hangs";
    common::within(LIMIT, what, async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let (expected, _host) = seed_events(&t).await;
        let rev = |i: usize| expected[i]["revision"].as_i64().expect("revision");
        let id = expected[6]["id"].as_str().expect("id");
        let tid = expected[8]["ticket"].as_str().expect("ticket");

        let run = cli
            .run(&format!(
                "watch --from {} --count {}",
                rev(0),
                expected.len()
            ))
            .await;
        let lines: Vec<&str> = run.ok().lines().collect();
        let want = [
            format!("{}  app-registered app=web", rev(0)),
            format!("{}  env-set app=web key=PORT", rev(1)),
            format!("{}  proc-registered app=web proc=http", rev(2)),
            format!("{}  rev-registered app=web rev=v1", rev(3)),
            format!(
                "{}  scale-changed app=web proc=http replicas=2 rev=v1",
                rev(4)
            ),
            format!("{}  env-unset app=web key=PORT", rev(5)),
            format!(
                "{}  instance-registered app=web host=h1 id={id} proc=http rev=v1",
                rev(6)
            ),
            format!("{}  host-up host=h1", rev(7)),
            format!(
                "{}  ticket-created host=h1 instance={id} op=start ticket={tid}",
                rev(8)
            ),
            format!("{}  instance-claimed host=h1 id={id}", rev(9)),
            format!("{}  ticket-claimed by=h1 host=h1 ticket={tid}", rev(10)),
            format!("{}  rev-unregistered app=web rev=v1", rev(11)),
            format!("{}  scale-changed app=web proc=http rev=v1", rev(12)),
        ];
        assert_eq!(
            lines, want,
            "one line per event, no header, null fields left out"
        );
    })
    .await;
}

#[tokio::test]
async fn watch_without_from_streams_new_events_only() {
    common::within(LIMIT, "etcd start, or visor watch never seeing a new event", async {
        let t = TestRegistry::start().await;
        register_app(&t, "web").await;
        let before = registry_revision(&t).await;

        let endpoint = t.etcd.endpoint();
        let args = ["--endpoints", &endpoint, "-o", "json", "watch", "--count", "1"];
        let mut command = tokio::process::Command::new(assert_cmd::cargo::cargo_bin("visor"));
        for var in INHERITED_VARS {
            command.env_remove(var);
        }
        let mut child = command
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn visor watch");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();

        // The CLI cannot tell when its watch is in place: write until it reports a write.
        let mut written = Vec::new();
        let read = loop {
            let key = format!("K{}", written.len());
            let set = t.visor.set_env("web", &key, "1").await.expect("set env");
            written.push((key, set.mod_revision));
            // `next_line` is cancel safe: a read that times out loses nothing.
            let next = tokio::time::timeout(Duration::from_millis(200), lines.next_line());
            if let Ok(read) = next.await {
                break read.expect("read visor's stdout");
            }
        };
        let Some(line) = read else {
            let output = child.wait_with_output().await.expect("wait for visor watch");
            panic!("visor watch exited before printing an event: {output:?}");
        };
        let event: Value = serde_json::from_str(&line).expect("a JSON event");
        let revision = event["revision"].as_i64().expect("revision");
        assert!(revision > before, "history before the watch is not replayed: {event}");
        let (key, _) = written
            .iter()
            .find(|(_, r)| *r == revision)
            .unwrap_or_else(|| panic!("{event} is none of the writes {written:?}"));
        assert_eq!(
            event,
            json!({"revision": revision, "index": 0, "type": "env-set", "app": "web", "key": key})
        );

        let status = child.wait().await.expect("wait for visor watch");
        assert!(status.success(), "watch --count 1 exits 0 after one event: {status}");
        let rest = lines.next_line().await.expect("read stdout");
        assert_eq!(rest, None, "exactly one line");
    })
    .await;
}

#[tokio::test]
async fn watch_errors_exit_with_their_codes() {
    common::within(
        LIMIT,
        "etcd start, compaction or visor watch hangs",
        async {
            let t = TestRegistry::start().await;
            let cli = Cli::new(&t);
            for app in ["a", "b", "c"] {
                register_app(&t, app).await;
            }
            let now = registry_revision(&t).await;
            t.raw().compact(now, None).await.expect("compact");

            let message = cli.json("watch --from 2 --count 1").await.error(1);
            assert!(
                message.contains("compacted") && message.contains(&now.to_string()),
                "the error names the compaction: {message}"
            );
            let message = cli.run("watch --from 2 --count 1").await.error(1);
            assert!(message.contains("compacted"), "{message}");

            cli.run("watch --from abc").await.usage_error("abc");
            cli.run("watch --count -1").await.usage_error("-1");
            cli.run("watch --count many").await.usage_error("many");
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// connection and usage
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_unreachable_registry_exits_5_for_every_command() {
    common::within(
        LIMIT,
        "visor against a closed port does not give up",
        async {
            let commands = [
                "app list",
                "app register web --repo-url u --stack base",
                "app show web",
                "app unregister web",
                "env set web A=1",
                "env unset web A",
                "env list web",
                "proc register web http --command c",
                "proc unregister web http",
                "proc list web",
                "rev register web v1 --archive-url u",
                "rev unregister web v1",
                "rev list web",
                "scale web v1 http=1",
                "scale web v1",
                "instances --app web",
                "hosts",
                "tickets --host h1",
                "watch --from 1 --count 1",
            ];
            for command in commands {
                for format in ["table", "json"] {
                    let line = format!(
                        "--endpoints {CLOSED_PORT} --connect-timeout 1s -o {format} {command}"
                    );
                    let message = visor(&line).await.error(5);
                    assert!(
                        message.starts_with("registry unavailable")
                            && message.contains(CLOSED_PORT),
                        "the error names the endpoint: {message}"
                    );
                }
            }
        },
    )
    .await;
}

#[tokio::test]
async fn endpoints_and_root_come_from_flags_or_the_environment() {
    common::within(LIMIT, "etcd start or visor app list hangs", async {
        let t = TestRegistry::start().await;
        register_app(&t, "web").await;
        let endpoint = t.etcd.endpoint();

        let run =
            visor_with_env(words("-o json app list"), &[("VISOR_ENDPOINTS", &endpoint)]).await;
        assert_eq!(
            column(&run.json(), "name"),
            ["web"],
            "VISOR_ENDPOINTS names the registry"
        );

        // Another root is another registry: nothing of /visor shows there.
        let other = format!("--endpoints {endpoint} --root /other -o json");
        visor(&format!(
            "{other} app register api --repo-url u --stack base"
        ))
        .await
        .json();
        let list = visor(&format!("{other} app list")).await.json();
        assert_eq!(column(&list, "name"), ["api"]);
        let env = [
            ("VISOR_ENDPOINTS", endpoint.as_str()),
            ("VISOR_ROOT", "/other"),
        ];
        let run = visor_with_env(words("-o json app list"), &env).await;
        assert_eq!(
            column(&run.json(), "name"),
            ["api"],
            "VISOR_ROOT selects the root"
        );
        let apps = t.visor.apps().await.expect("apps");
        assert_eq!(apps.items.len(), 1, "the default root is untouched");
        assert_eq!(apps.items[0].name(), "web");
    })
    .await;
}

#[tokio::test]
async fn usage_errors_exit_2() {
    common::within(LIMIT, "visor argument parsing hangs", async {
        visor("").await.usage_error("Usage");
        visor("frobnicate").await.usage_error("frobnicate");
        visor("-o yaml app list").await.usage_error("yaml");
        visor("--connect-timeout forever app list")
            .await
            .usage_error("forever");
        visor("app").await.usage_error("Usage");
        visor("instances --colour red")
            .await
            .usage_error("--colour");
        visor("hosts extra").await.usage_error("extra");
    })
    .await;
}
