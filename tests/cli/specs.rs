//! `visor apply -f`, `visor diff -f` and `visor get app` end to end, as the
//! built binary against a real registry: an app applied from a file into an
//! empty registry, a diff against it showing nothing, an edit of env and
//! scale showing exactly those fields, `get` round-tripping through `apply`,
//! a change made between the read and the write refused as a conflict that
//! writes nothing, `--prune` and `--dry-run`, and bad specs refused with the
//! file, the line and the field before anything connects.

use std::path::Path;

use serde_json::json;
use visor::registry::Error;
use visor_testkit::cli::Cli;
use visor_testkit::{TestRegistry, within};

use visor_testkit::cli::LIMIT;

const HELLO: &str = "\
name: hello
repo_url: https://example.com/hello.git
stack: exec
env:
  GREETING: hello
  MODE: prod
procs:
  web:
    command: hello-web
    port: 8080
    readiness:
      check: http
      path: /health
  worker:
    command: hello-worker
revisions:
  v1:
    archive_url: file:///tmp/hello-v1.tar.gz
current: v1
scale:
  web: 2
  worker: 1
services:
  hello-api:
    proc: web
";

/// The registry's current revision.
async fn revision(t: &TestRegistry) -> i64 {
    let mut client = t.visor.registry().etcd();
    let response = client.get("/", None).await.expect("read the revision");
    response.header().map_or(0, |h| h.revision())
}

fn write(dir: &Path, file: &str, text: &str) -> String {
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write a spec");
    path.display().to_string()
}

#[tokio::test]
async fn an_app_applied_from_a_file_diffs_as_nothing_and_an_edit_as_exactly_its_fields() {
    within(LIMIT, "apply and diff", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let dir = tempfile::tempdir().expect("temp dir");
        let file = write(dir.path(), "hello.yaml", HELLO);

        let before = cli.run(&format!("diff -f {file}")).await;
        assert_eq!(before.code, Some(1), "{}", before.context());
        let created: Vec<&str> = before.stdout.lines().collect();
        assert_eq!(created.len(), 8, "{}", before.context());
        assert!(created.iter().all(|line| line.starts_with("+ hello: ")));

        let applied = cli.run(&format!("apply -f {file}")).await;
        assert!(
            applied
                .ok()
                .ends_with("app hello: 8 change(s) applied at revision 3\n"),
            "{}",
            applied.context()
        );
        assert_eq!(
            t.visor.env("hello", "MODE").await.expect("env").value,
            "prod"
        );
        let deployment = t.visor.app_state("hello").await.expect("state");
        let spec = deployment.spec.expect("the app exists");
        assert_eq!(spec.current.as_ref().map(|r| r.as_str()), Some("v1"));

        assert_eq!(cli.run(&format!("diff -f {file}")).await.ok(), "");
        let at = revision(&t).await;
        assert_eq!(
            cli.run(&format!("apply -f {file}")).await.ok(),
            "app hello: unchanged\n"
        );
        assert_eq!(revision(&t).await, at, "re-applying writes nothing");

        // get → apply round-trips.
        let got = cli.run("get app hello").await.ok().to_owned();
        let got_file = write(dir.path(), "got.yaml", &got);
        assert_eq!(cli.run(&format!("diff -f {got_file}")).await.ok(), "");
        let as_json = cli.json("get app hello").await.json();
        assert_eq!(as_json["scale"], json!({ "web": 2, "worker": 1 }));
        // Any listing prints as YAML too, with the JSON's fields.
        let listed_yaml: serde_json::Value =
            serde_saphyr::from_str(cli.run("-o yaml app list").await.ok()).expect("YAML");
        assert_eq!(listed_yaml, cli.json("app list").await.json());

        let edited = HELLO
            .replace("MODE: prod", "MODE: staging")
            .replace("  web: 2", "  web: 3");
        let file = write(dir.path(), "hello.yaml", &edited);
        let diff = cli.run(&format!("diff -f {file}")).await;
        assert_eq!(diff.code, Some(1), "{}", diff.context());
        assert_eq!(
            diff.stdout,
            "~ hello: env MODE: \"prod\" → \"staging\"\n~ hello: deployment scale.web: 2 → 3\n"
        );
        let rows = cli.json(&format!("diff -f {file}")).await;
        assert_eq!(rows.code, Some(1), "{}", rows.context());
        let first: serde_json::Value =
            serde_json::from_str(rows.stdout.lines().next().expect("a row")).expect("JSON");
        assert_eq!(
            first,
            json!({ "app": "hello", "object": "env MODE", "action": "update",
                    "fields": [{ "path": "", "before": "prod", "after": "staging" }] })
        );
        cli.run(&format!("apply -f {file}")).await.ok();
        assert_eq!(cli.run(&format!("diff -f {file}")).await.ok(), "");
    })
    .await;
}

#[tokio::test]
async fn a_change_between_the_read_and_the_write_is_a_conflict_that_writes_nothing() {
    within(LIMIT, "a conflicting apply", async {
        let t = TestRegistry::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let texts = visor::spec::read(&write(dir.path(), "hello.yaml", HELLO)).expect("read");
        let spec = visor::spec::parse_all(&texts).expect("parse").remove(0);
        let state = t.visor.app_state("hello").await.expect("state");
        t.visor
            .apply_spec(&spec, &state, false)
            .await
            .expect("apply");

        let mut edited = spec.clone();
        edited
            .scale
            .insert(visor::model::Name::parse("proc", "web").expect("name"), 5);
        let read = t.visor.app_state("hello").await.expect("state");
        // Someone else changes an env var the spec also names...
        t.visor
            .set_env("hello", "MODE", "changed")
            .await
            .expect("a concurrent change");
        let at = revision(&t).await;
        let refused = t.visor.apply_spec(&edited, &read, false).await;
        assert!(
            matches!(refused, Err(Error::Conflict { .. })),
            "a conflict: {refused:?}"
        );
        assert_eq!(revision(&t).await, at, "the refused apply wrote nothing");

        // ...and a new env var appears under the app: a conflict for a prune.
        let read = t.visor.app_state("hello").await.expect("state");
        t.visor
            .set_env("hello", "NEW", "1")
            .await
            .expect("a concurrent creation");
        let at = revision(&t).await;
        let refused = t.visor.apply_spec(&edited, &read, true).await;
        assert!(
            matches!(refused, Err(Error::Conflict { .. })),
            "{refused:?}"
        );
        assert_eq!(revision(&t).await, at);

        // ...and a service of the app goes: its definition is no key of the
        // app's own, and its removal a conflict too.
        let read = t.visor.app_state("hello").await.expect("state");
        t.visor
            .unregister_service("hello-api")
            .await
            .expect("a concurrent removal");
        let at = revision(&t).await;
        let refused = t.visor.apply_spec(&edited, &read, false).await;
        assert!(
            matches!(refused, Err(Error::Conflict { .. })),
            "{refused:?}"
        );
        assert_eq!(revision(&t).await, at);

        // Read again, the same apply goes through.
        let read = t.visor.app_state("hello").await.expect("state");
        let applied = t
            .visor
            .apply_spec(&edited, &read, false)
            .await
            .expect("apply");
        assert!(applied.revision.is_some());
    })
    .await;
}

#[tokio::test]
async fn prune_removes_what_the_spec_no_longer_names_and_dry_run_writes_nothing() {
    within(LIMIT, "prune and dry run", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let dir = tempfile::tempdir().expect("temp dir");
        let file = write(dir.path(), "hello.yaml", HELLO);
        cli.run(&format!("apply -f {file}")).await.ok();
        t.visor
            .set_scale("hello", "v1", "worker", 1)
            .await
            .expect("a scale factor of the worker");

        let smaller = HELLO
            .replace("  MODE: prod\n", "")
            .replace("  worker:\n    command: hello-worker\n", "")
            .replace("  worker: 1\n", "");
        let file = write(dir.path(), "hello.yaml", &smaller);
        let at = revision(&t).await;
        let dry = cli.run(&format!("apply --dry-run --prune -f {file}")).await;
        assert_eq!(
            dry.ok(),
            "- hello: env MODE \"prod\"\n\
             - hello: proc worker {\"command\":\"hello-worker\"}\n\
             ~ hello: deployment scale.worker: 1 → (none)\n"
        );
        assert_eq!(revision(&t).await, at, "a dry run writes nothing");

        let kept = cli.run(&format!("apply -f {file}")).await;
        assert!(
            kept.ok().contains("1 change(s) applied"),
            "{}",
            kept.context()
        );
        assert!(
            t.visor.proc("hello", "worker").await.is_ok(),
            "kept without --prune"
        );

        cli.run(&format!("apply --prune -f {file}")).await.ok();
        assert!(matches!(
            t.visor.proc("hello", "worker").await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            t.visor.env("hello", "MODE").await,
            Err(Error::NotFound(_))
        ));
        assert!(
            matches!(
                t.visor.scale("hello", "v1", "worker").await,
                Err(Error::NotFound(_))
            ),
            "the removed proc's scale factors go with it"
        );
        assert_eq!(cli.run(&format!("diff --prune -f {file}")).await.ok(), "");
    })
    .await;
}

#[tokio::test]
async fn bad_specs_are_refused_naming_file_line_and_field_before_anything_is_written() {
    within(LIMIT, "bad specs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let dir = tempfile::tempdir().expect("temp dir");
        let at = revision(&t).await;
        let cases = [
            (
                "unknown.yaml",
                HELLO.replace("    port: 8080", "    prot: 8080"),
                ":10:5: procs.web.prot: unknown field `prot`",
            ),
            (
                "name.yaml",
                HELLO.replace("  web: 2", "  Web: 2"),
                ":21:3: scale.Web: invalid name \"Web\"",
            ),
            (
                "negative.yaml",
                HELLO.replace("  web: 2", "  web: -2"),
                ":21:8: scale.web: a number of instances cannot be negative (-2)",
            ),
            (
                "command.yaml",
                HELLO.replace("    command: hello-worker\n", "    port: 9000\n"),
                "procs.worker: missing field `command`",
            ),
            (
                "syntax.yaml",
                HELLO.replace("stack: exec", "stack: [exec"),
                ":",
            ),
            (
                "scale.yaml",
                HELLO.replace("  worker: 1", "  worker: 1\n  clock: 1"),
                ":23: scale.clock: names proc clock, which is not among the spec's procs",
            ),
        ];
        for (name, text, expected) in cases {
            let file = write(dir.path(), name, &text);
            let message = cli.run(&format!("apply -f {file}")).await.error(2);
            assert!(message.starts_with(&file), "{name}: {message}");
            assert!(message.contains(expected), "{name}: {message}");
        }
        let missing = cli.run("apply -f /nonexistent/spec.yaml").await.error(2);
        assert!(
            missing.contains("cannot read /nonexistent/spec.yaml"),
            "{missing}"
        );
        assert_eq!(
            revision(&t).await,
            at,
            "nothing was written, not even the schema"
        );
    })
    .await;
}
