//! The app spec's JSON Schema published for editors (`docs/app-spec.schema.json`)
//! is the one the spec types make, and the example spec in the docs parses.
//! `VISOR_WRITE_SCHEMA=1 cargo test --test repo schema` writes it afresh.

use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_published_schema_is_the_one_the_spec_types_make() {
    let path = repo("docs/app-spec.schema.json");
    let made = format!(
        "{}\n",
        serde_json::to_string_pretty(&visor::model::json_schema()).expect("a schema")
    );
    if std::env::var_os("VISOR_WRITE_SCHEMA").is_some() {
        std::fs::write(&path, &made).expect("write the schema");
    }
    let published = std::fs::read_to_string(&path).expect("docs/app-spec.schema.json");
    assert!(
        published == made,
        "docs/app-spec.schema.json is out of date: VISOR_WRITE_SCHEMA=1 cargo test --test repo schema"
    );
}

#[test]
fn the_example_spec_parses_and_checks() {
    let texts = visor::spec::read(repo("examples/hello/hello.yaml").to_str().expect("utf-8"))
        .expect("read the example spec");
    let specs = visor::spec::parse_all(&texts).expect("the example spec is valid");
    assert_eq!(specs[0].name.as_str(), "hello");
}
