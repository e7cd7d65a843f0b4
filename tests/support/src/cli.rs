//! Running the built `visor` binary as the command line tests do: its exit,
//! stdout and stderr, its table output split into cells, and checks of its
//! JSON output and error exits.
//!
//! JSON field names are the CLI's contract for scripts, so JSON checks compare
//! whole objects, field names included. Error exits are checked for their code
//! (2 usage, invalid names included; 3 not found; 4 already exists; 5
//! unavailable; 1 other failures), for exactly one `error: ` line on stderr
//! (clap's usage errors too), and, by the tests, for having written nothing
//! to the registry ([`fixtures::raw_revision`](crate::fixtures::raw_revision)
//! unchanged).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::registry::TestRegistry;

/// Bound on one test, etcd start included.
pub const LIMIT: Duration = Duration::from_secs(90);
/// Bound on one `visor` run; it is killed after this.
pub const RUN_LIMIT: Duration = Duration::from_secs(30);
/// An endpoint where nothing listens.
pub const CLOSED_PORT: &str = "http://127.0.0.1:1";
/// Variables that would change how the binary behaves if inherited from the test's environment.
pub const INHERITED_VARS: &[&str] = &[
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
pub struct Run {
    /// The command line, for failure messages.
    command: String,
    /// The exit code; `None` if killed (it outlived [`RUN_LIMIT`]).
    pub code: Option<i32>,
    /// What it wrote on stdout.
    pub stdout: String,
    /// What it wrote on stderr.
    pub stderr: String,
}

impl Run {
    /// The command line, exit and output, for failure messages.
    pub fn context(&self) -> String {
        format!(
            "`{}` exited with {:?}\n--- stdout\n{}--- stderr\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts the run exited by itself (was not killed for outliving [`RUN_LIMIT`]).
    pub fn assert_exited(&self) {
        assert!(
            self.code.is_some(),
            "killed after {RUN_LIMIT:?} (the command hung): {}",
            self.context()
        );
    }

    /// Stdout of a successful run that printed nothing on stderr.
    pub fn ok(&self) -> &str {
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
    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.context()))
    }

    /// Stdout of a successful run parsed as one JSON document per line.
    pub fn json_lines(&self) -> Vec<Value> {
        self.ok()
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("line {line:?} is not JSON ({e}): {}", self.context())
                })
            })
            .collect()
    }

    /// Stdout of a successful run as table cells: header first, then rows,
    /// without the AGE column if there is one (it changes by the second):
    /// each of its cells is checked to be an age, then left out.
    pub fn table(&self) -> Vec<Vec<String>> {
        without_age(cells(self.ok()))
    }

    /// Asserts a failure with `code`, nothing on stdout and exactly one
    /// `error: ` line on stderr; returns the message after `error: `.
    pub fn error(&self, code: i32) -> String {
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

    /// Asserts a usage error (exit 2, one `error: ` line) whose message
    /// mentions `mention`; returns the message.
    pub fn usage_error(&self, mention: &str) -> String {
        let message = self.error(2);
        assert!(
            message.contains(mention),
            "the usage error should mention {mention:?}: {}",
            self.context()
        );
        message
    }
}

/// Splits table output into cells: columns are separated by at least two spaces.
pub fn cells(text: &str) -> Vec<Vec<String>> {
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

/// `table` (header first) without its AGE column, after checking that each
/// of its cells is an age as the CLI prints one (`45s`, `3m12s`, `5h4m`, `12d`).
pub fn without_age(mut table: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let Some(column) = table
        .first()
        .and_then(|header| header.iter().position(|h| h == "AGE"))
    else {
        return table;
    };
    for row in &mut table[1..] {
        assert!(row.len() > column, "row {row:?} has no AGE cell");
        let age = row.remove(column);
        assert!(is_age(&age), "{age:?} in {row:?} is not an age");
    }
    table[0].remove(column);
    table
}

/// Whether `text` is an age as the CLI prints one: one or two of
/// `<n>d`, `<n>h`, `<n>m`, `<n>s`, largest first.
pub fn is_age(text: &str) -> bool {
    let mut rest = text;
    let mut units = "dhms";
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Some(unit) = rest[digits..].chars().next() else {
            return false;
        };
        let Some(at) = units.find(unit) else {
            return false;
        };
        if digits == 0 {
            return false;
        }
        units = &units[at + 1..];
        rest = &rest[digits + 1..];
        parts += 1;
    }
    (1..=2).contains(&parts)
}

/// A time as the CLI's tables print it: RFC 3339 to the second, in UTC.
pub fn second(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An expected table: header, then rows.
pub fn rows(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| row.iter().map(|cell| (*cell).to_owned()).collect())
        .collect()
}

/// Splits a command line into arguments: whitespace separates, single quotes
/// group (`''` is an empty argument).
pub fn words(line: &str) -> Vec<String> {
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

/// The built `visor` binary.
pub fn visor_binary() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("visor")
}

/// Runs the built `visor` binary with `args` and extra environment `env`.
pub async fn visor_with_env(args: Vec<String>, env: &[(&str, &str)]) -> Run {
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
pub async fn visor(line: &str) -> Run {
    visor_with_env(words(line), &[]).await
}

/// The CLI pointed at one test registry.
pub struct Cli {
    endpoint: String,
}

impl Cli {
    /// The CLI pointed at `t`'s etcd.
    pub fn new(t: &TestRegistry) -> Self {
        Self {
            endpoint: t.server.endpoint(),
        }
    }

    /// `visor --endpoints <endpoint> <line>`: table output unless `line` says otherwise.
    pub async fn run(&self, line: &str) -> Run {
        visor(&format!("--endpoints {} {line}", self.endpoint)).await
    }

    /// `visor --endpoints <endpoint> -o json <line>`.
    pub async fn json(&self, line: &str) -> Run {
        self.run(&format!("-o json {line}")).await
    }
}

// ---------------------------------------------------------------------------
// JSON checks
// ---------------------------------------------------------------------------

/// Asserts `value` is an object with exactly the field names `fields`.
pub fn assert_fields(value: &Value, fields: &[&str]) {
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
pub fn take_time(value: &mut Value, field: &str) -> DateTime<Utc> {
    let raw = value
        .as_object_mut()
        .and_then(|o| o.remove(field))
        .unwrap_or_else(|| panic!("no {field:?} in {value}"));
    let text = raw
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string: {raw}"));
    parse_time(text)
}

/// `text` parsed as an RFC 3339 timestamp.
pub fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// `value` as a JSON array.
pub fn as_array(value: &Value) -> &Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {value}"))
}

/// The `field` of every element of the JSON array `value`.
pub fn column(value: &Value, field: &str) -> Vec<String> {
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

/// The JSON fields of an app.
pub const APP_FIELDS: &[&str] = &[
    "name",
    "repo_url",
    "stack",
    "deploy_type",
    "created_at",
    "mod_revision",
];
/// The JSON fields of a proc type.
pub const PROC_FIELDS: &[&str] = &[
    "app",
    "name",
    "command",
    "port",
    "limits",
    "host_labels",
    "kill_timeout_secs",
    "restart",
    "readiness",
    "service",
    "created_at",
];
/// The JSON fields of a revision.
pub const REV_FIELDS: &[&str] = &["app", "name", "archive_url", "created_at"];
/// The JSON fields of what an unregistration reports.
pub const REMOVED_FIELDS: &[&str] = &["removed", "revision"];
/// The table header of what an unregistration reports.
pub const REMOVED_HEADER: &[&str] = &["REMOVED", "REVISION"];

// ---------------------------------------------------------------------------
// Following: a long-running `visor` whose stdout is read line by line
// ---------------------------------------------------------------------------

/// Bound on waiting for one line of a [`Follower`], or for its exit.
pub const LINE_WAIT: Duration = Duration::from_secs(15);

/// A `visor` that follows the registry (`notifications --follow`,
/// `status -w`), as a child process whose stdout is read line by line;
/// killed if dropped.
pub struct Follower {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Follower {
    /// Starts `visor --endpoints <t> args...`.
    pub fn spawn(t: &TestRegistry, args: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let endpoint = t.server.endpoint();
        let mut command = tokio::process::Command::new(visor_binary());
        for var in INHERITED_VARS {
            command.env_remove(var);
        }
        let mut child = command
            .args(["--endpoints", &endpoint])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn visor {args:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        Self {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
        }
    }

    /// The next line it prints (`what`, for the failure message).
    pub async fn line(&mut self, what: &str) -> String {
        let read = crate::within(LINE_WAIT, what, self.lines.next_line()).await;
        read.expect("read visor's stdout")
            .unwrap_or_else(|| panic!("visor exited before printing {what}"))
    }

    /// Sends SIGTERM; asserts a clean exit, a quiet stderr, and nothing more printed.
    pub async fn terminate(mut self) {
        let pid = self.child.id().expect("still running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("send SIGTERM");
        assert!(sent.success(), "kill -TERM");
        let rest = crate::within(LINE_WAIT, "visor exits on SIGTERM", self.lines.next_line())
            .await
            .expect("read stdout");
        assert_eq!(rest, None, "nothing printed after the last line read");
        let output = crate::within(
            LINE_WAIT,
            "visor exits on SIGTERM",
            self.child.wait_with_output(),
        )
        .await
        .expect("wait for visor");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "exits 0 on SIGTERM: {:?} {stderr}",
            output.status
        );
        assert_eq!(stderr, "", "a quiet stderr");
    }
}
