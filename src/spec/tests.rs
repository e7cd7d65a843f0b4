use super::*;

const EXAMPLE: &str = "\
name: hello
repo_url: https://example.com/hello.git
stack: exec
env:
  GREETING: hello
procs:
  web:
    command: hello-web
    port: 8080
    readiness:
      check: http
      path: /health
revisions:
  v1:
    archive_url: file:///tmp/hello-v1.tar.gz
current: v1
scale:
  web: 2
";

fn text(source: &str, text: &str) -> SpecText {
    SpecText {
        source: source.into(),
        text: text.into(),
    }
}

fn error(yaml: &str) -> String {
    parse(&text("hello.yaml", yaml))
        .expect_err("a bad spec")
        .to_string()
}

#[test]
fn a_spec_reads_from_yaml_and_from_json_alike() {
    let from_yaml = parse(&text("hello.yaml", EXAMPLE)).expect("YAML");
    let json = serde_json::to_string_pretty(&from_yaml).expect("JSON");
    let from_json = parse(&text("hello.json", &json)).expect("JSON");
    assert_eq!(from_yaml, from_json);
    assert_eq!(from_yaml.scale["web"], 2);
}

#[test]
fn each_bad_spec_is_one_error_naming_file_line_and_field() {
    let cases = [
        (
            "an unknown field",
            EXAMPLE.replace("    port: 8080", "    prot: 8080"),
            "hello.yaml:9:",
            "procs.web.prot: unknown field `prot`, expected one of command, port",
        ),
        (
            "a bad name",
            EXAMPLE.replace("  web: 2", "  Web: 2"),
            "hello.yaml:18:",
            "scale.Web: invalid name \"Web\": may contain only lower-case letters",
        ),
        (
            "a negative scale",
            EXAMPLE.replace("  web: 2", "  web: -2"),
            "hello.yaml:18:",
            "scale.web: a number of instances cannot be negative (-2)",
        ),
        (
            "a proc without a command",
            EXAMPLE.replace("    command: hello-web\n", ""),
            "hello.yaml:",
            "procs.web: missing field `command`",
        ),
        (
            "a YAML syntax error",
            EXAMPLE.replace("  GREETING: hello", "  GREETING: [hello"),
            "hello.yaml:",
            "",
        ),
        (
            "a scale of a proc the spec lacks",
            EXAMPLE.replace("  web: 2", "  web: 2\n  worker: 1"),
            "hello.yaml:19: ",
            "scale.worker: names proc worker, which is not among the spec's procs",
        ),
        (
            "a current revision the spec lacks",
            EXAMPLE.replace("current: v1", "current: v2"),
            "hello.yaml:16: ",
            "current: names revision v2",
        ),
    ];
    for (what, yaml, at, message) in cases {
        let error = error(&yaml);
        assert!(error.starts_with(at), "{what}: {error}");
        assert!(error.contains(message), "{what}: {error}");
        assert_eq!(error.lines().count(), 1, "{what}: one line: {error}");
    }
}

#[test]
fn a_directory_gives_its_spec_files_in_name_order_and_refuses_an_app_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("b.yaml"), EXAMPLE).expect("write");
    std::fs::write(
        dir.path().join("a.yml"),
        EXAMPLE.replace("name: hello", "name: other"),
    )
    .expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a spec").expect("write");
    let texts = read(dir.path().to_str().expect("utf-8")).expect("read");
    let names: Vec<&str> = texts
        .iter()
        .map(|t| t.source.rsplit('/').next().unwrap_or_default())
        .collect();
    assert_eq!(names, ["a.yml", "b.yaml"]);
    assert_eq!(parse_all(&texts).expect("two apps").len(), 2);

    std::fs::write(dir.path().join("c.json"), EXAMPLE).expect("write");
    let texts = read(dir.path().to_str().expect("utf-8")).expect("read");
    let error = parse_all(&texts).expect_err("hello twice").to_string();
    assert!(error.contains("describes app hello again"), "{error}");

    let empty = tempfile::tempdir().expect("temp dir");
    let error = read(empty.path().to_str().expect("utf-8"))
        .expect_err("no spec")
        .to_string();
    assert!(error.contains("holds no spec"), "{error}");
}
