//! The project's example programs (`examples/`), as children of a test.
//!
//! A plain `cargo test` builds every example next to the test binaries; a
//! run of one test binary (`cargo test --test NAME`) does not, so a missing
//! example fails with the command that builds it.

use std::path::PathBuf;

/// `target/<profile>/examples/<name>`, next to the running test binary's
/// `target/<profile>/deps/<test>-<hash>`.
pub fn example(name: &str) -> PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    let profile = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let example = profile.join("examples").join(name);
    assert!(
        example.is_file(),
        "{} is missing: run the tests through a plain `cargo test`, which builds \
         the examples (`cargo test --test <binary>` does not: run \
         `cargo build --example {name}` before it)",
        example.display()
    );
    example
}
