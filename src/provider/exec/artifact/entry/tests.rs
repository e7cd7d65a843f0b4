use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::{EntryKind, Refusal, Tree, relative_path};

fn file() -> EntryKind {
    EntryKind::File
}

fn dir() -> EntryKind {
    EntryKind::Dir
}

fn symlink(target: &str) -> EntryKind {
    EntryKind::Symlink {
        target: target.into(),
    }
}

fn hardlink(target: &str) -> EntryKind {
    EntryKind::Hardlink {
        target: target.into(),
    }
}

/// A table row: what it shows, the entries in order, and the first entry
/// refused with why (or none).
type Case = (
    &'static str,
    Vec<(&'static str, EntryKind)>,
    Option<(&'static str, Refusal)>,
);

/// Admits `entries` in order; the first refusal, with the entry it was for.
fn admit_all(entries: &[(&str, EntryKind)]) -> Result<Tree, (String, Refusal)> {
    let mut tree = Tree::default();
    for (path, kind) in entries {
        tree.admit(Path::new(path), kind)
            .map_err(|refusal| ((*path).to_owned(), refusal))?;
    }
    Ok(tree)
}

#[test]
fn relative_paths_are_cleaned_or_refused() {
    let cases: &[(&str, Result<&str, Refusal>)] = &[
        ("hooks/install", Ok("hooks/install")),
        ("./hooks//install", Ok("hooks/install")),
        ("a/./b/", Ok("a/b")),
        (".", Ok("")),
        ("", Ok("")),
        ("/etc/passwd", Err(Refusal::Absolute)),
        ("../x", Err(Refusal::ParentDir)),
        ("a/../b", Err(Refusal::ParentDir)),
        ("a/..", Err(Refusal::ParentDir)),
    ];
    for (path, expected) in cases {
        let got = relative_path(Path::new(path));
        let expected = expected.clone().map(PathBuf::from);
        assert_eq!(got, expected, "{path:?}");
    }
}

#[test]
fn entries_are_admitted_or_refused_as_each_rule_says() {
    let cases: Vec<Case> = vec![
        (
            "an ordinary tree",
            vec![
                ("./", dir()),
                ("./bin/", dir()),
                ("./bin/web", file()),
                ("hooks/db-relation-joined", file()),
                ("hooks/db-relation-changed", symlink("db-relation-joined")),
                ("lib/current", symlink("../bin")),
                ("bin/web-copy", hardlink("./bin/web")),
                ("bin", dir()),
            ],
            None,
        ),
        (
            "an absolute path",
            vec![("/etc/cron.d/x", file())],
            Some(("/etc/cron.d/x", Refusal::Absolute)),
        ),
        (
            "a parent component",
            vec![("app/../../x", file())],
            Some(("app/../../x", Refusal::ParentDir)),
        ),
        (
            "a file at the top",
            vec![("./", file())],
            Some(("./", Refusal::Empty)),
        ),
        (
            "a fifo",
            vec![("run/pipe", EntryKind::Special("fifo"))],
            Some(("run/pipe", Refusal::Special("fifo"))),
        ),
        (
            "an absolute symlink",
            vec![("python", symlink("/usr/bin/python3"))],
            Some(("python", Refusal::LinkEscapes("/usr/bin/python3".into()))),
        ),
        (
            "a symlink climbing out",
            vec![("a/up", symlink("../../x"))],
            Some(("a/up", Refusal::LinkEscapes("../../x".into()))),
        ),
        (
            "an empty symlink",
            vec![("nothing", symlink(""))],
            Some(("nothing", Refusal::EmptyTarget)),
        ),
        (
            "a write through a symlink",
            vec![("data", symlink("store")), ("data/x", file())],
            Some(("data/x", Refusal::ThroughSymlink("data".into()))),
        ),
        (
            "a file under a file",
            vec![("data", file()), ("data/x", file())],
            Some(("data/x", Refusal::ParentNotDir("data".into()))),
        ),
        (
            "a symlink replaced by a file",
            vec![("x", symlink("y")), ("x", file())],
            Some(("x", Refusal::Duplicate)),
        ),
        (
            "a directory replaced by a symlink",
            vec![("a/b", file()), ("a", symlink("."))],
            Some(("a", Refusal::Duplicate)),
        ),
        (
            "a hard link to nothing",
            vec![("x", hardlink("y"))],
            Some(("x", Refusal::HardlinkTarget("y".into()))),
        ),
        (
            "a hard link out",
            vec![("x", hardlink("../../etc/shadow"))],
            Some(("x", Refusal::HardlinkTarget("../../etc/shadow".into()))),
        ),
        (
            "a hard link to a symlink",
            vec![("s", symlink(".")), ("x", hardlink("s"))],
            Some(("x", Refusal::HardlinkTarget("s".into()))),
        ),
    ];
    for (what, entries, expected) in cases {
        let got = admit_all(&entries).err();
        let expected = expected.map(|(path, refusal)| (path.to_owned(), refusal));
        assert_eq!(got, expected, "{what}");
    }
}

#[test]
fn links_are_resolved_through_each_other() {
    let cases: Vec<Case> = vec![
        (
            "links inside",
            vec![
                ("a/b/f", file()),
                ("up", symlink("a/b/../b")),
                ("a/c", symlink("b/f")),
                ("chain", symlink("up/f")),
                ("dangling", symlink("a/missing/../b")),
            ],
            None,
        ),
        (
            "a link to the top, then out through it",
            vec![("s", symlink(".")), ("t", symlink("s/../etc"))],
            Some(("t", Refusal::LinkEscapes("s/../etc".into()))),
        ),
        (
            "the same, in the other order",
            vec![("t", symlink("s/../etc")), ("s", symlink("."))],
            Some(("t", Refusal::LinkEscapes("s/../etc".into()))),
        ),
        (
            "a link from a subdirectory up to the top, then out through it",
            vec![
                ("a/f", file()),
                ("a/up", symlink("..")),
                ("out", symlink("a/up/../etc")),
            ],
            Some(("out", Refusal::LinkEscapes("a/up/../etc".into()))),
        ),
        (
            "a cycle",
            vec![("x", symlink("y")), ("y", symlink("x"))],
            Some(("x", Refusal::TooManyLinks)),
        ),
    ];
    for (what, entries, expected) in cases {
        let tree = admit_all(&entries).expect("each entry alone is admitted");
        let got = tree
            .check_links()
            .err()
            .map(|(path, refusal)| (path.display().to_string(), refusal));
        let expected = expected.map(|(path, refusal)| (path.to_owned(), refusal));
        assert_eq!(got, expected, "{what}");
    }
}

#[test]
fn refusals_name_what_is_wrong() {
    assert_eq!(
        Refusal::ThroughSymlink("data".into()).to_string(),
        "passes through the symlink data"
    );
    assert_eq!(
        Refusal::LinkEscapes("../etc".into()).to_string(),
        "links to ../etc, outside the directory"
    );
}

/// Paths over a three-name alphabet, with `.`, `..` and a leading `/` now
/// and then: every shape the rules tell apart.
fn path() -> impl Strategy<Value = String> {
    let component = prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "c"]),
        1 => Just("."),
        1 => Just(".."),
    ];
    (
        prop::bool::weighted(0.1),
        prop::collection::vec(component, 1..4),
    )
        .prop_map(|(absolute, parts)| {
            format!("{}{}", if absolute { "/" } else { "" }, parts.join("/"))
        })
}

/// Link targets: relative mostly, climbing often, the top (`.`) now and then.
fn target() -> impl Strategy<Value = String> {
    let component = prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "c"]),
        1 => Just("."),
        2 => Just(".."),
    ];
    (
        prop::bool::weighted(0.05),
        prop::collection::vec(component, 1..5),
    )
        .prop_map(|(absolute, parts)| {
            format!("{}{}", if absolute { "/" } else { "" }, parts.join("/"))
        })
}

fn kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        2 => Just(EntryKind::File),
        2 => Just(EntryKind::Dir),
        5 => target().prop_map(|target| EntryKind::Symlink { target: target.into() }),
        1 => path().prop_map(|target| EntryKind::Hardlink { target: target.into() }),
    ]
}

/// A decoy of every name the alphabet can spell, two deep, in `dir`: a
/// resolution that leaves the tree lands on something that exists, so
/// `canonicalize` shows where it went.
fn decoy(dir: &Path) {
    for a in ["a", "b", "c"] {
        for b in ["a", "b", "c"] {
            fs::create_dir_all(dir.join(a).join(b)).expect("decoy");
        }
    }
}

/// Builds the admitted entries on disk, as unpacking does (a hard link to
/// its target as named); `false` when the kernel refuses a hard link (a
/// target such as `c/.` names a file as a directory), which makes unpacking
/// refuse the whole archive, so nothing of it is on disk to escape.
fn materialize(top: &Path, admitted: &[(PathBuf, EntryKind)]) -> bool {
    for (path, kind) in admitted {
        let at = top.join(path);
        if let Some(parent) = at.parent() {
            fs::create_dir_all(parent).expect("parent directories");
        }
        match kind {
            EntryKind::File => fs::write(&at, b"x").expect("file"),
            EntryKind::Dir => fs::create_dir_all(&at).expect("directory"),
            EntryKind::Symlink { target } => {
                std::os::unix::fs::symlink(target, &at).expect("symlink")
            }
            EntryKind::Hardlink { target } => {
                if fs::hard_link(top.join(target), &at).is_err() {
                    return false;
                }
            }
            EntryKind::Special(_) => unreachable!("never admitted"),
        }
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Soundness against the real kernel: whatever a tree admits and checks
    /// resolves inside it, on disk, beside decoys that catch any escape. A
    /// refused entry changes nothing, so the entries admitted around it are
    /// a tree of their own, and are checked as one.
    #[test]
    fn an_admitted_tree_resolves_inside_its_directory(
        entries in prop::collection::vec((path(), kind()), 1..10),
    ) {
        let mut tree = Tree::default();
        let mut admitted = Vec::new();
        for (path, kind) in &entries {
            if let Ok(Some(clean)) = tree.admit(Path::new(path), kind) {
                admitted.push((clean, kind.clone()));
            }
        }
        let links = admitted.iter().any(|(_, kind)| matches!(kind, EntryKind::Symlink { .. }));
        if !links || tree.check_links().is_err() {
            // Without a symlink, admitted paths are inside by construction.
            return Ok(());
        }
        let root = tempfile::tempdir().expect("temporary directory");
        let top = root.path().join("up/tree");
        for level in [root.path().to_path_buf(), root.path().join("up")] {
            decoy(&level);
        }
        fs::create_dir_all(&top).expect("top");
        if !materialize(&top, &admitted) {
            return Ok(());
        }
        let top = top.canonicalize().expect("canonical top");
        for (path, _) in &admitted {
            if let Ok(resolved) = top.join(path).canonicalize() {
                prop_assert!(
                    resolved.starts_with(&top),
                    "{} resolves to {} (entries {:?})", path.display(), resolved.display(), entries
                );
            }
        }
    }
}
