//! `visor completions` and `visor man`, run as the built binary: the bash
//! script is sourced by a real bash without error and completes subcommands
//! and flags; zsh and fish scripts are printed; the man pages are one per
//! command, each a roff page of its own.

use std::process::Command;

use visor_testkit::cli::{LIMIT, visor};
use visor_testkit::within;

/// What bash completes for the words `line` (the last one being completed),
/// with the script `visor completions bash` printed sourced first.
fn bash_completes(script: &std::path::Path, line: &[&str]) -> Vec<String> {
    let words = line
        .iter()
        .map(|w| format!("{w:?}"))
        .collect::<Vec<_>>()
        .join(" ");
    let program = format!(
        "set -e; source {script}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE={joined:?}; COMP_POINT=${{#COMP_LINE}}; _visor visor {cur:?} {prev:?}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script = script.display(),
        cword = line.len() - 1,
        cur = line[line.len() - 1],
        prev = line[line.len() - 2],
        joined = line.join(" "),
    );
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("run bash");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "bash failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn bash_sources_the_completions_and_completes_subcommands_and_flags() {
    within(LIMIT, "completions", async {
        let script = visor("completions bash").await.ok().to_owned();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("visor.bash");
        std::fs::write(&path, &script).expect("write the script");

        let commands = bash_completes(&path, &["visor", "ap"]);
        assert_eq!(commands, ["app", "apply"]);
        let rollout = bash_completes(&path, &["visor", "rollout", ""]);
        assert!(rollout.contains(&"status".to_owned()), "{rollout:?}");
        // apply's own flag, and the global ones that match.
        let flags = bash_completes(&path, &["visor", "apply", "--p"]);
        assert!(flags.contains(&"--prune".to_owned()), "{flags:?}");
        assert!(flags.iter().all(|f| f.starts_with("--p")), "{flags:?}");

        for shell in ["zsh", "fish"] {
            let printed = visor(&format!("completions {shell}")).await;
            assert!(printed.ok().contains("apply"), "{shell}");
        }
        let refused = visor("completions tcsh").await.usage_error("tcsh");
        assert!(refused.contains("bash, zsh, fish"), "{refused}");
    })
    .await;
}

#[tokio::test]
async fn man_pages_are_one_per_command() {
    within(LIMIT, "man pages", async {
        let page = visor("man").await.ok().to_owned();
        assert!(page.contains(".TH visor 1"), "{page}");
        let dir = tempfile::tempdir().expect("temp dir");
        visor(&format!("man --dir {}", dir.path().display()))
            .await
            .ok();
        for name in [
            "visor",
            "visor-apply",
            "visor-diff",
            "visor-rollout-status",
            "visor-app-register",
        ] {
            let page = std::fs::read_to_string(dir.path().join(format!("{name}.1")))
                .unwrap_or_else(|e| panic!("{name}.1: {e}"));
            assert!(page.contains(&format!(".TH {name} 1")), "{name}: {page}");
        }
        assert!(
            !dir.path().join("visor-shim.1").exists(),
            "hidden commands get no page"
        );
    })
    .await;
}
