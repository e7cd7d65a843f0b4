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
            "a number of instances cannot be negative (-1)",
        ),
        (
            "a fractional scale",
            with(|s| s["scale"]["web"] = json!(2.5)),
            "invalid type: floating point `2.5`, expected a number of instances",
        ),
        (
            "a scale in words",
            with(|s| s["scale"]["web"] = json!("three")),
            "invalid type: string \"three\", expected a number of instances",
        ),
        (
            "a scale beyond 32 bits",
            with(|s| s["scale"]["web"] = json!(4_294_967_296_u64)),
            "4294967296 instances is more than 4294967295",
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
            "a rollout that cannot move",
            with(|s| s["rollout"] = json!({ "max_surge": 0, "max_unavailable": 0 })),
            "rollout: max_surge and max_unavailable are both 0",
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

/// The objects `spec` writes, as the registry would hold them.
fn parts_of(spec: &AppSpec) -> AppParts {
    let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    AppParts {
        app: spec.app(at),
        env: spec.env.clone(),
        procs: spec
            .procs
            .iter()
            .map(|(name, proc)| (name.clone(), proc.to_model(at)))
            .collect(),
        revisions: spec
            .revisions
            .iter()
            .map(|(name, rev)| (name.clone(), rev.to_model(at)))
            .collect(),
        deployment: spec.deployment(at),
        services: spec
            .services
            .iter()
            .map(|(name, service)| (name.clone(), service.to_model(&spec.name, at)))
            .collect(),
        relations: spec
            .relations
            .keys()
            .map(|id| spec.relation(id, at).expect("named").expect("valid"))
            .collect(),
    }
}

#[test]
fn what_a_spec_writes_reads_back_as_the_spec_with_its_defaults_explicit() {
    let spec = parse(with(|s| {
        s["env"] = json!({ "A": "1" });
        s["procs"]["web"]["readiness"] = json!({ "check": "http", "path": "/health" });
        s["procs"]["web"]["service"] = json!({ "name": "api" });
        s["procs"]["worker"] =
            json!({ "command": "work", "restart": "on-failure", "labels": { "disk": "ssd" } });
        s["rollout"] = json!({ "max_unavailable": 1 });
        s["services"] = json!({ "api": { "proc": "web" } });
        s["relations"] = json!({ "db": ["web:web", "pg"] });
    }))
    .expect("a valid spec");
    spec.check().expect("consistent");
    let read_back = AppSpec::from_parts(spec.name.clone(), &parts_of(&spec));
    assert_eq!(read_back, spec.normalized());
    assert_eq!(
        read_back.normalized(),
        read_back,
        "normalizing twice changes nothing"
    );
    let web = &read_back.procs["web"];
    assert_eq!(
        web.readiness.as_ref().and_then(|r| r.timeout_secs),
        Some(30)
    );
    assert_eq!(
        web.service.as_ref().and_then(|s| s.schemes.clone()),
        Some(vec!["http".to_owned()])
    );
    assert_eq!(read_back.services["api"].min_endpoints, Some(1));
    assert!(
        diff(&read_back.objects(), &spec.normalized().objects(), true).is_empty(),
        "re-applying what was written changes nothing"
    );
}
