use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use visor_controllers::{HookError, HookInfo, RelationState};

use super::{StateDir, StateDirError, StateDirs, UnitRecord};

fn root() -> TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn state(relation: &str, members: &[(&str, i64)], pending: Option<&str>) -> RelationState {
    RelationState {
        relation_id: relation.to_owned(),
        members: members.iter().map(|(u, v)| ((*u).to_owned(), *v)).collect(),
        changed_pending: pending.map(str::to_owned),
        broken: false,
    }
}

fn read_all(root: &Path) -> BTreeMap<String, RelationState> {
    StateDirs::new(root)
        .read_all()
        .expect("readable state")
        .into_iter()
        .map(|(id, dir)| (id, dir.state()))
        .collect()
}

fn read_one(root: &Path, relation: &str) -> RelationState {
    read_all(root)
        .remove(relation)
        .expect("the relation is on disk")
}

/// Every file under `root`, one level of directories deep, with its content:
/// what "nothing on disk changed" compares.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<String>> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(root).expect("listable root") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            files.insert(path.clone(), None);
            for inner in fs::read_dir(&path).expect("listable relation") {
                let inner = inner.expect("an entry").path();
                let text = fs::read_to_string(&inner).expect("readable file");
                files.insert(inner, Some(text));
            }
        } else {
            let text = fs::read_to_string(&path).expect("readable file");
            files.insert(path, Some(text));
        }
    }
    files
}

fn write_all(dir: &mut StateDir, hooks: &[HookInfo]) {
    for hook in hooks {
        dir.write(hook)
            .unwrap_or_else(|e| panic!("writing {hook}: {e}"));
    }
}

#[test]
fn a_relation_life_cycle_round_trips_through_read_all() {
    let root = root();
    let mut dir = StateDir::ensure(root.path(), "r1").expect("created");
    assert_eq!(read_one(root.path(), "r1"), state("r1", &[], None));

    let steps = [
        (
            HookInfo::joined("r1", "a", 1),
            state("r1", &[("a", 1)], Some("a")),
        ),
        (
            HookInfo::changed("r1", "a", 2),
            state("r1", &[("a", 2)], None),
        ),
        (
            HookInfo::joined("r1", "b", 3),
            state("r1", &[("a", 2), ("b", 3)], Some("b")),
        ),
        (
            HookInfo::changed("r1", "b", 3),
            state("r1", &[("a", 2), ("b", 3)], None),
        ),
        (
            HookInfo::changed("r1", "a", 5),
            state("r1", &[("a", 5), ("b", 3)], None),
        ),
        (
            HookInfo::departed("r1", "a", 5),
            state("r1", &[("b", 3)], None),
        ),
        (HookInfo::departed("r1", "b", 3), state("r1", &[], None)),
    ];
    for (hook, expected) in steps {
        dir.write(&hook)
            .unwrap_or_else(|e| panic!("writing {hook}: {e}"));
        assert_eq!(dir.state(), expected, "in memory after {hook}");
        assert_eq!(
            read_one(root.path(), "r1"),
            expected,
            "on disk after {hook}"
        );
    }

    dir.write(&HookInfo::broken("r1")).expect("broken");
    assert!(dir.state().broken);
    assert!(!root.path().join("r1").exists());
    assert!(read_all(root.path()).is_empty());
}

#[test]
fn writing_each_kind_again_after_it_took_effect_is_a_no_op() {
    let root = root();
    let mut dir = StateDir::ensure(root.path(), "r1").expect("created");
    let hooks = [
        HookInfo::joined("r1", "a", 1),
        HookInfo::changed("r1", "a", 2),
        HookInfo::departed("r1", "a", 2),
        HookInfo::broken("r1"),
    ];
    for hook in &hooks {
        dir.write(hook)
            .unwrap_or_else(|e| panic!("writing {hook}: {e}"));
        let (memory, disk) = (dir.state(), snapshot(root.path()));
        dir.write(hook)
            .unwrap_or_else(|e| panic!("writing {hook} again: {e}"));
        assert_eq!(
            dir.state(),
            memory,
            "{hook} written again changed the state"
        );
        assert_eq!(
            snapshot(root.path()),
            disk,
            "{hook} written again touched the disk"
        );
    }
}

#[test]
fn a_hook_written_before_a_crash_is_a_no_op_when_written_after_reading_back() {
    let cases = [
        (vec![], HookInfo::joined("r1", "a", 1)),
        (
            vec![HookInfo::joined("r1", "a", 1)],
            HookInfo::changed("r1", "a", 1),
        ),
        (
            vec![
                HookInfo::joined("r1", "a", 1),
                HookInfo::changed("r1", "a", 1),
            ],
            HookInfo::departed("r1", "a", 1),
        ),
    ];
    for (before, hook) in cases {
        let root = root();
        let mut dir = StateDir::ensure(root.path(), "r1").expect("created");
        write_all(&mut dir, &before);
        dir.write(&hook).expect("first write");
        drop(dir);
        // The agent restarts and is handed the same hook again.
        let mut dirs = StateDirs::new(root.path()).read_all().expect("readable");
        let mut dir = dirs.remove("r1").expect("the relation is on disk");
        let (memory, disk) = (dir.state(), snapshot(root.path()));
        dir.write(&hook)
            .unwrap_or_else(|e| panic!("{hook} after a restart: {e}"));
        assert_eq!(dir.state(), memory, "{hook}");
        assert_eq!(snapshot(root.path()), disk, "{hook}");
    }
}

#[test]
fn broken_is_refused_while_members_or_stray_files_remain_and_changes_nothing() {
    let root = root();
    let mut dir = StateDir::ensure(root.path(), "r1").expect("created");
    write_all(
        &mut dir,
        &[
            HookInfo::joined("r1", "a", 1),
            HookInfo::changed("r1", "a", 1),
        ],
    );
    let before = (dir.state(), snapshot(root.path()));
    let err = dir
        .write(&HookInfo::broken("r1"))
        .expect_err("a is a member");
    assert!(
        matches!(err, StateDirError::Hook(HookError::MembersLeft { .. })),
        "{err:?}"
    );
    assert_eq!((dir.state(), snapshot(root.path())), before);

    dir.write(&HookInfo::departed("r1", "a", 1))
        .expect("departed");
    fs::write(root.path().join("r1/README"), "not a unit").expect("stray written");
    let before = (dir.state(), snapshot(root.path()));
    let err = dir
        .write(&HookInfo::broken("r1"))
        .expect_err("a stray file is left");
    match &err {
        StateDirError::NotEmpty { path, entries } => {
            assert_eq!(path, &root.path().join("r1"));
            assert_eq!(entries, &["README"]);
        }
        other => panic!("expected NotEmpty, got {other:?}"),
    }
    assert!(err.to_string().contains("README"), "{err}");
    assert_eq!((dir.state(), snapshot(root.path())), before);
}

#[test]
fn broken_removes_a_temp_file_left_by_a_crash() {
    let root = root();
    let mut dir = StateDir::ensure(root.path(), "r1").expect("created");
    fs::write(root.path().join("r1/.a.tmp"), "{\"change_v").expect("temp written");
    dir.write(&HookInfo::broken("r1")).expect("broken");
    assert!(!root.path().join("r1").exists());
}

#[test]
fn read_all_skips_temp_files_stray_files_and_files_at_the_root() {
    let root = root();
    let mut dir = StateDir::ensure(root.path(), "r1").expect("created");
    write_all(
        &mut dir,
        &[
            HookInfo::joined("r1", "a", 1),
            HookInfo::changed("r1", "a", 4),
        ],
    );
    let r1 = root.path().join("r1");
    fs::write(r1.join(".b.tmp"), "{\"change_vers").expect("temp written");
    fs::write(r1.join("Notes.txt"), "not a unit").expect("stray written");
    fs::write(r1.join("under_score"), "not a unit").expect("stray written");
    fs::write(root.path().join("r2"), "a file, not a relation").expect("file at root");
    fs::create_dir(root.path().join("Not-A-Relation")).expect("stray directory");
    fs::write(root.path().join("Not-A-Relation/a"), "garbage").expect("file in it");

    let all = read_all(root.path());
    assert_eq!(
        all,
        BTreeMap::from([("r1".to_owned(), state("r1", &[("a", 4)], None))])
    );
}

#[test]
fn a_missing_root_reads_as_no_relations() {
    let root = root();
    assert!(read_all(&root.path().join("missing")).is_empty());
}

/// Reads a relation whose unit file `a` holds `text`, expecting it refused.
fn read_malformed_unit(text: &str) -> (PathBuf, String) {
    let root = root();
    StateDir::ensure(root.path(), "r1").expect("created");
    let path = root.path().join("r1/a");
    fs::write(&path, text).expect("unit file written");
    let err = StateDirs::new(root.path())
        .read_all()
        .expect_err("a malformed unit file");
    match &err {
        StateDirError::Malformed { path: named, .. } => assert_eq!(named, &path),
        other => panic!("expected Malformed, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    (path, message)
}

#[test]
fn read_all_reports_a_unit_file_that_is_not_json_naming_it() {
    let (_, message) = read_malformed_unit("change_version: 7");
    assert!(message.contains("not a unit state document"), "{message}");
}

#[test]
fn read_all_reports_a_unit_file_without_a_version_naming_it() {
    let (_, message) = read_malformed_unit(r#"{"changed_pending":true}"#);
    assert!(message.contains("change_version"), "{message}");
}

#[test]
fn read_all_reports_a_negative_version_naming_the_file() {
    let (_, message) = read_malformed_unit(r#"{"change_version":-3}"#);
    assert!(message.contains("-3 is negative"), "{message}");
}

#[test]
fn read_all_reports_two_pending_units_naming_the_directory() {
    let root = root();
    let r1 = root.path().join("r1");
    fs::create_dir(&r1).expect("created");
    let pending = r#"{"change_version":1,"changed_pending":true}"#;
    fs::write(r1.join("a"), pending).expect("written");
    fs::write(r1.join("b"), pending).expect("written");
    let err = StateDirs::new(root.path())
        .read_all()
        .expect_err("two pending");
    match &err {
        StateDirError::Malformed { path, reason } => {
            assert_eq!(path, &r1);
            assert!(reason.contains("a, b"), "{reason}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn read_all_reports_a_directory_named_like_a_unit() {
    let root = root();
    fs::create_dir_all(root.path().join("r1/a")).expect("created");
    let err = StateDirs::new(root.path())
        .read_all()
        .expect_err("a directory for a unit");
    assert!(matches!(err, StateDirError::Malformed { ref path, .. } if path.ends_with("r1/a")));
}

#[test]
fn a_hook_invalid_for_the_state_is_refused_and_nothing_on_disk_changes() {
    let root = root();
    let mut dir = StateDir::ensure(root.path(), "r1").expect("created");
    write_all(
        &mut dir,
        &[
            HookInfo::joined("r1", "a", 1),
            HookInfo::changed("r1", "a", 1),
            HookInfo::joined("r1", "b", 2),
        ],
    );
    let cases = [
        (HookInfo::changed("r1", "c", 3), "changed for a non-member"),
        (
            HookInfo::joined("r1", "c", 3),
            "joined while b's changed is owed",
        ),
        (
            HookInfo::departed("r1", "a", 1),
            "departed while b's changed is owed",
        ),
        (
            HookInfo::changed("r1", "a", 9),
            "changed of a while b's is owed",
        ),
        (HookInfo::broken("r1"), "broken with members"),
        (
            HookInfo::changed("r2", "b", 2),
            "a hook for another relation",
        ),
    ];
    let before = (dir.state(), snapshot(root.path()));
    for (hook, why) in cases {
        let err = dir.write(&hook).expect_err(why);
        assert!(matches!(err, StateDirError::Hook(_)), "{why}: {err:?}");
        assert_eq!((dir.state(), snapshot(root.path())), before, "{why}");
    }
    dir.write(&HookInfo::changed("r1", "b", 2))
        .expect("the owed changed");
    let err = dir
        .write(&HookInfo::joined("r1", "a", 1))
        .expect_err("a joined again, not its last hook");
    assert!(
        matches!(err, StateDirError::Hook(HookError::AlreadyJoined { .. })),
        "{err:?}"
    );
}

#[test]
fn unit_names_that_cannot_name_a_file_are_refused() {
    let root = root();
    let mut dir = StateDir::ensure(root.path(), "r1").expect("created");
    let before = snapshot(root.path());
    for unit in ["..", ".", ".a", "A", "a/b", "", "a.tmp/../x"] {
        let err = dir.write(&HookInfo::joined("r1", unit, 1)).expect_err(unit);
        assert!(
            matches!(err, StateDirError::InvalidName(_)),
            "{unit:?}: {err:?}"
        );
        let err = dir
            .write(&HookInfo::departed("r1", unit, 1))
            .expect_err(unit);
        assert!(
            matches!(err, StateDirError::InvalidName(_)),
            "{unit:?}: {err:?}"
        );
    }
    assert_eq!(snapshot(root.path()), before);
    for relation in ["..", ".", ".r1", "R1", "a/b"] {
        let err = StateDir::ensure(root.path(), relation).expect_err(relation);
        assert!(
            matches!(err, StateDirError::InvalidName(_)),
            "{relation:?}: {err:?}"
        );
    }
}

#[test]
fn a_negative_version_is_refused_on_write() {
    let root = root();
    let mut dir = StateDir::ensure(root.path(), "r1").expect("created");
    let err = dir
        .write(&HookInfo::joined("r1", "a", -1))
        .expect_err("negative");
    assert!(
        matches!(err, StateDirError::NegativeVersion { .. }),
        "{err:?}"
    );
    assert_eq!(dir.state(), state("r1", &[], None));
    assert!(snapshot(root.path()).keys().all(|p| !p.ends_with("a")));
}

#[test]
fn a_write_leaves_no_temp_file_behind() {
    let root = root();
    let mut dir = StateDir::ensure(root.path(), "r1").expect("created");
    write_all(
        &mut dir,
        &[
            HookInfo::joined("r1", "a.0", 1),
            HookInfo::changed("r1", "a.0", 2),
        ],
    );
    let names: Vec<_> = fs::read_dir(root.path().join("r1"))
        .expect("listable")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    assert_eq!(names, ["a.0"]);
}

#[test]
fn a_unit_file_is_the_documented_json() {
    let root = root();
    let mut dir = StateDir::ensure(root.path(), "r1").expect("created");
    dir.write(&HookInfo::joined("r1", "a", 7)).expect("joined");
    let text = fs::read_to_string(root.path().join("r1/a")).expect("readable");
    assert_eq!(text, "{\"change_version\":7,\"changed_pending\":true}\n");
    let record = UnitRecord {
        change_version: i64::MAX,
        changed_pending: false,
    };
    let read: UnitRecord = serde_json::from_str(&record.to_json()).expect("reads back");
    assert_eq!(read, record);
    let tolerant: UnitRecord =
        serde_json::from_str(r#"{"change_version":3,"later":"field"}"#).expect("tolerant");
    assert_eq!(
        tolerant,
        UnitRecord {
            change_version: 3,
            changed_pending: false
        }
    );
}

#[test]
fn ensure_is_idempotent_and_reads_the_existing_state() {
    let root = root();
    let mut dir = StateDirs::new(root.path()).ensure("r1").expect("created");
    dir.write(&HookInfo::joined("r1", "a", 1)).expect("joined");
    let again = StateDirs::new(root.path()).ensure("r1").expect("exists");
    assert_eq!(again.state(), state("r1", &[("a", 1)], Some("a")));
    assert_eq!(again.path(), root.path().join("r1"));
    assert_eq!(again.relation_id(), "r1");
}

#[test]
fn remove_refuses_a_directory_with_unit_files_and_removes_an_empty_one() {
    let root = root();
    let mut dir = StateDir::ensure(root.path(), "r1").expect("created");
    dir.write(&HookInfo::joined("r1", "a", 1)).expect("joined");
    let err = dir.clone().remove().expect_err("a's file is left");
    assert!(matches!(err, StateDirError::NotEmpty { ref entries, .. } if entries == &["a"]));
    assert!(root.path().join("r1/a").exists());

    let empty = StateDir::ensure(root.path(), "r2").expect("created");
    empty.remove().expect("empty");
    assert!(!root.path().join("r2").exists());
}

#[test]
fn replace_writes_the_registrys_state_over_a_directory_a_hook_behind() {
    let root = root();
    let mut dir = StateDir::ensure(root.path(), "r1").expect("created");
    write_all(
        &mut dir,
        &[
            HookInfo::joined("r1", "a", 1),
            HookInfo::changed("r1", "a", 2),
            HookInfo::joined("r1", "b", 3),
        ],
    );
    // The registry acknowledged b's changed, and c joined; a departed.
    let target = state("r1", &[("b", 4), ("c", 5)], Some("c"));
    dir.replace(&target).expect("replaced");
    assert_eq!(dir.state(), target);
    assert_eq!(read_one(root.path(), "r1"), target, "on disk");
    assert!(!root.path().join("r1/a").exists());

    let disk = snapshot(root.path());
    dir.replace(&target).expect("the same state again");
    assert_eq!(
        snapshot(root.path()),
        disk,
        "nothing differs: nothing written"
    );

    let mut broken = state("r1", &[], None);
    broken.broken = true;
    dir.replace(&state("r1", &[], None)).expect("emptied");
    dir.replace(&broken).expect("broken");
    assert!(!root.path().join("r1").exists());
}

#[test]
fn replace_refuses_states_that_cannot_be_written_and_changes_nothing() {
    let root = root();
    let mut dir = StateDir::ensure(root.path(), "r1").expect("created");
    dir.write(&HookInfo::joined("r1", "a", 1)).expect("joined");
    let disk = snapshot(root.path());
    let mut broken_with_members = state("r1", &[("a", 1)], None);
    broken_with_members.broken = true;
    let refused = [
        state("r2", &[], None),
        state("r1", &[("a", -1)], None),
        state("r1", &[("../x", 1)], None),
        state("r1", &[("a", 1)], Some("b")),
        broken_with_members,
    ];
    for target in refused {
        let error = dir.replace(&target).expect_err("refused");
        assert!(
            matches!(
                error,
                StateDirError::InvalidState { .. } | StateDirError::InvalidName(_)
            ),
            "{target:?}: {error}"
        );
        assert_eq!(snapshot(root.path()), disk, "{target:?} touched the disk");
    }
}

#[test]
fn endpoints_are_remembered_beside_the_relations_and_never_read_as_one() {
    let root = root();
    let dirs = StateDirs::new(root.path().join("unit-0"));
    assert_eq!(dirs.endpoint("r1").expect("readable"), None);
    dirs.remember_endpoint("r1", "db:sql").expect("remembered");
    dirs.remember_endpoint("r1", "db:sql").expect("again");
    assert_eq!(
        dirs.endpoint("r1").expect("readable").as_deref(),
        Some("db:sql")
    );
    dirs.ensure("r1").expect("the relation's directory");
    assert_eq!(
        dirs.read_all()
            .expect("readable")
            .into_keys()
            .collect::<Vec<_>>(),
        ["r1"]
    );
    dirs.forget_endpoint("r1").expect("forgotten");
    dirs.forget_endpoint("r1").expect("already gone");
    assert_eq!(dirs.endpoint("r1").expect("readable"), None);
    assert!(dirs.remember_endpoint("../x", "web").is_err());
}
