use serde_json::{Value, json};

use super::*;

fn base() -> Value {
    json!({
        "name": "web",
        "repo_url": "https://example.com/web.git",
        "stack": "rust",
        "procs": { "web": { "command": "serve", "port": 8080 } },
        "revisions": { "v1": { "archive_url": "file:///v1.tar" } },
        "current": "v1",
        "scale": { "web": 2 },
    })
}

fn with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut spec = base();
    edit(&mut spec);
    spec
}

fn parse(value: Value) -> Result<AppSpec, String> {
    serde_json::from_value(value).map_err(|error| error.to_string())
}

#[test]
fn the_fields_of_a_spec_are_read_with_their_defaults() {
    let spec = parse(base()).expect("a valid spec");
    assert_eq!(spec.rollout, RolloutSpec::default());
    assert_eq!(spec.rollout.max_surge, 1);
    assert_eq!(spec.procs["web"].restart, RestartPolicy::Always);
    spec.check().expect("consistent");
}

#[test]
fn what_serde_refuses_is_named() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "an unknown field",
            with(|s| s["procs"]["web"]["comand"] = json!("x")),
            "unknown field `comand`",
        ),
        (
            "a bad name",
            with(|s| s["procs"]["Web!"] = json!({ "command": "x" })),
            "invalid name \"Web!\"",
        ),
        (
            "a negative scale",
            with(|s| s["scale"]["web"] = json!(-1)),
            "invalid value: integer `-1`",
        ),
        (
            "a proc without a command",
            with(|s| s["procs"]["web"] = json!({ "port": 80 })),
            "missing field `command`",
        ),
        (
            "a bad env key",
            with(|s| s["env"] = json!({ "1X": "y" })),
            "invalid env name \"1X\"",
        ),
        (
            "an unknown restart policy",
            with(|s| s["procs"]["web"]["restart"] = json!("never")),
            "unknown variant `never`",
        ),
    ];
    for (what, spec, expected) in cases {
        let error = parse(spec).expect_err(what);
        assert!(error.contains(expected), "{what}: {error}");
    }
}

#[test]
fn fields_that_disagree_are_named_by_their_path() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "a current revision not in the spec",
            with(|s| s["current"] = json!("v9")),
            "current: names revision v9",
        ),
        (
            "a scale of an unknown proc",
            with(|s| s["scale"]["worker"] = json!(1)),
            "scale.worker: names proc worker",
        ),
        (
            "a scale without a current revision",
            with(|s| {
                s.as_object_mut().expect("object").remove("current");
            }),
            "scale: scales the current revision",
        ),
        (
            "an empty command",
            with(|s| s["procs"]["web"]["command"] = json!("  ")),
            "procs.web.command: must not be empty",
        ),
        (
            "an http check without a path",
            with(|s| s["procs"]["web"]["readiness"] = json!({ "check": "http" })),
            "procs.web.readiness: an http check needs a `path`",
        ),
        (
            "a readiness check without a port",
            with(|s| {
                s["procs"]["web"] = json!({ "command": "x", "readiness": { "check": "tcp" } });
            }),
            "procs.web.readiness: a readiness check needs the proc's port",
        ),
        (
            "a service of an unknown proc",
            with(|s| s["services"] = json!({ "api": { "proc": "worker" } })),
            "services.api.proc: names proc worker",
        ),
        (
            "a relation of three endpoints",
            with(|s| s["relations"] = json!({ "db": ["web", "a", "b"] })),
            "relations.db: a relation has one endpoint (a peer relation) or two, not 3",
        ),
        (
            "a relation with a bad endpoint",
            with(|s| s["relations"] = json!({ "db": ["web", "Pg"] })),
            "relations.db[1]: invalid app name \"Pg\"",
        ),
        (
            "a relation of other apps only",
            with(|s| s["relations"] = json!({ "db": ["pg", "api"] })),
            "relations.db: has no endpoint of app web",
        ),
    ];
    for (what, spec, expected) in cases {
        let spec = parse(spec).expect(what);
        let error = spec.check().expect_err(what).to_string();
        assert!(error.starts_with(expected), "{what}: {error}");
    }
}

#[test]
fn a_spec_written_out_reads_back_the_same() {
    let spec = parse(with(|s| {
        s["env"] = json!({ "A": "1" });
        s["procs"]["web"]["readiness"] = json!({ "check": "http", "path": "/health" });
        s["rollout"] = json!({ "max_surge": 2, "on_failure": "pause" });
        s["services"] = json!({ "api": { "proc": "web", "critical": true } });
        s["relations"] = json!({ "db": ["web", "pg:main"] });
    }))
    .expect("a valid spec");
    let written = serde_json::to_value(&spec).expect("serializes");
    assert_eq!(parse(written).expect("reads back"), spec);
}

#[test]
fn the_schema_refuses_unknown_fields_and_names_the_required_ones() {
    let schema = json_schema();
    assert_eq!(schema["additionalProperties"], json!(false));
    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required fields")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, ["name", "repo_url", "stack"]);
}
