//! The lock file carries no crate version with an advisory the project has
//! met. `cargo audit` needs its advisory database from the network, which a
//! build machine may not reach; this table keeps what has been fixed fixed.

use std::fs;

/// (crate, first version without the advisory, advisory); `None`: the crate
/// must not be in the lock file at all.
const ADVISORIES: &[(&str, Option<&str>, &str)] = &[
    // Stack exhaustion parsing RFC 2822 input; fixed in 0.3.47.
    ("time", Some("0.3.47"), "RUSTSEC-2026-0009"),
    // Unmaintained; backon replaces it.
    ("backoff", None, "RUSTSEC-2025-0012"),
];

fn numeric(version: &str) -> Vec<u64> {
    version
        .split(['.', '-', '+'])
        .map_while(|part| part.parse().ok())
        .collect()
}

/// Every (name, version) of the lock file.
fn locked_packages() -> Vec<(String, String)> {
    let lock = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .expect("read Cargo.lock");
    let mut packages = Vec::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(value) = line.strip_prefix("name = ") {
            name = Some(value.trim_matches('"').to_owned());
        } else if let Some(value) = line.strip_prefix("version = ")
            && let Some(name) = name.take()
        {
            packages.push((name, value.trim_matches('"').to_owned()));
        }
    }
    packages
}

#[test]
fn lock_file_has_no_version_with_a_known_advisory() {
    let packages = locked_packages();
    assert!(
        packages.iter().any(|(name, _)| name == "tokio"),
        "Cargo.lock parsed to nothing useful: {packages:?}"
    );
    let mut found = Vec::new();
    for (name, version) in &packages {
        for (advised, fixed, id) in ADVISORIES {
            let affected = match fixed {
                Some(fixed) => numeric(version) < numeric(fixed),
                None => true,
            };
            if name == advised && affected {
                found.push(format!("{name} {version} ({id})"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "update in Cargo.lock: {}",
        found.join(", ")
    );
}

#[test]
fn versions_compare_numerically() {
    assert!(numeric("0.3.45") < numeric("0.3.47"));
    assert!(numeric("0.3.100") > numeric("0.3.47"));
    assert!(numeric("1.0.0-rc.1") >= numeric("1.0.0"));
}
