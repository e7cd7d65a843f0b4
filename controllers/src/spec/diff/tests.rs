use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::spec::{AppSpec, ProcSpec, RevisionSpec};

fn name(value: &str) -> Name {
    Name::parse("test", value).expect("a valid name")
}

fn proc(command: &str) -> ProcSpec {
    serde_json::from_value(json!({ "command": command })).expect("a proc")
}

fn example() -> AppSpec {
    serde_json::from_value(json!({
        "name": "web",
        "repo_url": "https://example.com/web.git",
        "stack": "rust",
        "env": { "PORT": "8080", "MODE": "prod" },
        "procs": {
            "web": { "command": "serve", "port": 8080, "readiness": { "check": "http", "path": "/health" } },
            "worker": { "command": "work", "limits": { "memory_mb": 256 } }
        },
        "revisions": { "v1": { "archive_url": "file:///v1.tar" } },
        "current": "v1",
        "scale": { "web": 2, "worker": 1 },
    }))
    .expect("the example spec")
}

#[test]
fn a_spec_differs_from_itself_in_nothing() {
    let spec = example();
    assert!(diff(&spec.objects(), &spec.objects(), true).is_empty());
}

#[test]
fn an_edit_of_env_and_scale_shows_exactly_those_fields() {
    let before = example();
    let mut after = before.clone();
    after
        .env
        .insert(EnvKey::parse("MODE").expect("key"), "staging".into());
    after.scale.insert(name("web"), 3);
    let changes = diff(&before.objects(), &after.objects(), false);
    assert_eq!(
        changes,
        vec![
            Change::Update(
                ObjectId::Env(EnvKey::parse("MODE").expect("key")),
                vec![FieldChange {
                    path: String::new(),
                    before: Some(json!("prod")),
                    after: Some(json!("staging")),
                }]
            ),
            Change::Update(
                ObjectId::Deployment,
                vec![FieldChange {
                    path: "scale.web".into(),
                    before: Some(json!(2)),
                    after: Some(json!(3)),
                }]
            ),
        ]
    );
}

#[test]
fn nested_fields_that_appear_or_go_are_listed_one_by_one() {
    let before = example();
    let mut after = before.clone();
    let worker = after.procs.get_mut(&name("worker")).expect("worker");
    worker.limits.memory_mb = None;
    worker.limits.cpu_shares = Some(2);
    worker.port = Some(9000);
    let changes = diff(&before.objects(), &after.objects(), false);
    let [Change::Update(ObjectId::Proc(proc), fields)] = changes.as_slice() else {
        panic!("one proc changed: {changes:?}");
    };
    assert_eq!(proc.as_str(), "worker");
    let paths: Vec<(&str, Option<&Value>, Option<&Value>)> = fields
        .iter()
        .map(|f| (f.path.as_str(), f.before.as_ref(), f.after.as_ref()))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("limits.cpu_shares", None, Some(&json!(2))),
            ("limits.memory_mb", Some(&json!(256)), None),
            ("port", None, Some(&json!(9000))),
        ]
    );
}

#[test]
fn objects_the_spec_no_longer_names_are_removed_only_when_pruning() {
    let before = example();
    let mut after = before.clone();
    after.procs.remove(&name("worker"));
    after.scale.remove(&name("worker"));
    after.env.clear();
    let kept = diff(&before.objects(), &after.objects(), false);
    assert_eq!(
        kept.iter().map(Change::object).collect::<Vec<_>>(),
        vec![&ObjectId::Deployment],
        "without pruning only the deployment's scale changes"
    );
    let pruned = diff(&before.objects(), &after.objects(), true);
    let removed: Vec<String> = pruned
        .iter()
        .filter(|c| matches!(c, Change::Remove(..)))
        .map(|c| c.object().to_string())
        .collect();
    assert_eq!(removed, ["env MODE", "env PORT", "proc worker"]);
}

#[test]
fn a_new_object_is_created_whole() {
    let before = example();
    let mut after = before.clone();
    after.revisions.insert(
        name("v2"),
        RevisionSpec {
            archive_url: "file:///v2.tar".into(),
        },
    );
    assert_eq!(
        diff(&before.objects(), &after.objects(), true),
        vec![Change::Create(
            ObjectId::Revision(name("v2")),
            json!({ "archive_url": "file:///v2.tar" })
        )]
    );
}

/// `objects` with `changes` applied, field by field.
fn applied(
    mut objects: BTreeMap<ObjectId, Value>,
    changes: &[Change],
) -> BTreeMap<ObjectId, Value> {
    for change in changes {
        match change {
            Change::Create(id, value) => {
                objects.insert(id.clone(), value.clone());
            }
            Change::Remove(id, _) => {
                objects.remove(id);
            }
            Change::Update(id, fields) => {
                let object = objects.get_mut(id).expect("an updated object exists");
                for field in fields {
                    set_path(object, &field.path, field.after.clone());
                }
            }
        }
    }
    objects
}

fn set_path(value: &mut Value, path: &str, to: Option<Value>) {
    if path.is_empty() {
        *value = to.expect("a whole value is replaced, not removed");
        return;
    }
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    let fields = value.as_object_mut().expect("a path goes through objects");
    if rest.is_empty() {
        match to {
            Some(to) => fields.insert(head.to_owned(), to),
            None => fields.remove(head),
        };
        return;
    }
    let inner = fields.entry(head).or_insert_with(|| json!({}));
    set_path(inner, rest, to);
    if inner.as_object().is_some_and(|o| o.is_empty()) {
        fields.remove(head);
    }
}

fn spec_strategy() -> impl Strategy<Value = AppSpec> {
    let keys = prop::collection::btree_map(
        prop::sample::select(vec!["A", "B", "C"]),
        prop::sample::select(vec!["1", "2"]),
        0..3,
    );
    let procs = prop::collection::btree_map(
        prop::sample::select(vec!["web", "worker", "clock"]),
        (
            prop::sample::select(vec!["run", "serve"]),
            prop::option::of(prop::sample::select(vec![80u16, 8080])),
            prop::option::of(prop::sample::select(vec![64u64, 128])),
        ),
        0..3,
    );
    let revisions = prop::collection::btree_set(prop::sample::select(vec!["v1", "v2"]), 0..3);
    (keys, procs, revisions, any::<u8>(), 0u32..4).prop_map(
        |(env, procs, revisions, pick, replicas)| {
            let mut spec = example();
            spec.env = env
                .into_iter()
                .map(|(k, v)| (EnvKey::parse(k).expect("key"), v.to_owned()))
                .collect();
            spec.procs = procs
                .into_iter()
                .map(|(n, (command, port, memory))| {
                    let mut p = proc(command);
                    p.port = port;
                    p.limits.memory_mb = memory;
                    (name(n), p)
                })
                .collect();
            spec.revisions = revisions
                .into_iter()
                .map(|r| {
                    (
                        name(r),
                        RevisionSpec {
                            archive_url: format!("file:///{r}"),
                        },
                    )
                })
                .collect();
            let revs: Vec<&Name> = spec.revisions.keys().collect();
            spec.current = (!revs.is_empty()).then(|| revs[pick as usize % revs.len()].clone());
            spec.scale = match spec.current {
                Some(_) => spec.procs.keys().map(|p| (p.clone(), replicas)).collect(),
                None => BTreeMap::new(),
            };
            spec
        },
    )
}

proptest! {
    #[test]
    fn applying_the_diff_gives_the_desired_objects(current in spec_strategy(), desired in spec_strategy()) {
        let changes = diff(&current.objects(), &desired.objects(), true);
        prop_assert_eq!(applied(current.objects(), &changes), desired.objects());
        prop_assert!(diff(&desired.objects(), &desired.objects(), true).is_empty());
    }
}
