//! The embedded registry's core against etcd's rules, case by case, and
//! the MVCC index against a model of every revision.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use etcd_client::proto::{
    PbCompare, PbDeleteRequest, PbPutRequest, PbRangeRequest, PbTargetUnion, PbTxnOpRequest,
    PbTxnOpResponse, PbTxnRequest, PbTxnRequestOp,
};
use etcd_client::{CompareOp, SortOrder, SortTarget};
use proptest::prelude::*;

use super::error::RequestError;
use super::mvcc::{KeyRange, RevisionError, Store};
use super::state::State;

fn put_request(key: &str, value: &str) -> PbPutRequest {
    PbPutRequest {
        key: key.into(),
        value: value.into(),
        ..PbPutRequest::default()
    }
}

fn put(state: &mut State, key: &str, value: &str) -> i64 {
    state.put(&put_request(key, value)).expect("put").1.revision
}

fn get(state: &State, key: &str) -> Option<(String, i64, i64, i64)> {
    let response = state
        .range(&PbRangeRequest {
            key: key.into(),
            ..PbRangeRequest::default()
        })
        .expect("range");
    response.kvs.first().map(|kv| {
        (
            String::from_utf8_lossy(&kv.value).into_owned(),
            kv.create_revision,
            kv.mod_revision,
            kv.version,
        )
    })
}

fn prefix(state: &State, start: &str, end: &str) -> Vec<String> {
    let response = state
        .range(&PbRangeRequest {
            key: start.into(),
            range_end: end.into(),
            ..PbRangeRequest::default()
        })
        .expect("range");
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn op_put(key: &str, value: &str) -> PbTxnRequestOp {
    PbTxnRequestOp {
        request: Some(PbTxnOpRequest::RequestPut(put_request(key, value))),
    }
}

fn op_delete(key: &str, end: &str) -> PbTxnRequestOp {
    PbTxnRequestOp {
        request: Some(PbTxnOpRequest::RequestDeleteRange(PbDeleteRequest {
            key: key.into(),
            range_end: end.into(),
            ..PbDeleteRequest::default()
        })),
    }
}

fn op_get(key: &str) -> PbTxnRequestOp {
    PbTxnRequestOp {
        request: Some(PbTxnOpRequest::RequestRange(PbRangeRequest {
            key: key.into(),
            ..PbRangeRequest::default()
        })),
    }
}

fn compare(key: &str, result: CompareOp, target: PbTargetUnion) -> PbCompare {
    let target_code = match target {
        PbTargetUnion::Version(_) => 0,
        PbTargetUnion::CreateRevision(_) => 1,
        PbTargetUnion::ModRevision(_) => 2,
        PbTargetUnion::Value(_) => 3,
        PbTargetUnion::Lease(_) => 4,
    };
    PbCompare {
        result: result as i32,
        target: target_code,
        key: key.into(),
        range_end: Vec::new(),
        target_union: Some(target),
    }
}

#[test]
fn a_put_spends_a_revision_and_counts_versions() {
    let mut state = State::default();
    assert_eq!(
        state.store().revision(),
        1,
        "a new registry is at revision 1"
    );
    assert_eq!(put(&mut state, "a", "1"), 2);
    assert_eq!(put(&mut state, "a", "2"), 3);
    assert_eq!(get(&state, "a"), Some(("2".into(), 2, 3, 2)));
    let (response, changes) = state
        .delete(&PbDeleteRequest {
            key: "a".into(),
            prev_kv: true,
            ..PbDeleteRequest::default()
        })
        .expect("delete");
    assert_eq!((response.deleted, changes.revision), (1, 4));
    assert_eq!(response.prev_kvs[0].value, b"2");
    assert_eq!(put(&mut state, "a", "3"), 5);
    assert_eq!(
        get(&state, "a"),
        Some(("3".into(), 5, 5, 1)),
        "a key put after its deletion starts a new life"
    );
}

#[test]
fn deleting_nothing_spends_no_revision() {
    let mut state = State::default();
    put(&mut state, "a", "1");
    let (response, changes) = state
        .delete(&PbDeleteRequest {
            key: "b".into(),
            ..PbDeleteRequest::default()
        })
        .expect("delete");
    assert_eq!((response.deleted, changes.revision), (0, 2));
    assert!(changes.events.is_empty());
    assert_eq!(state.store().revision(), 2);
}

#[test]
fn ranges_follow_etcds_key_range_rules() {
    let mut state = State::default();
    for key in ["a", "a/1", "a/2", "b", "c"] {
        put(&mut state, key, "v");
    }
    assert_eq!(prefix(&state, "a/", "a0"), ["a/1", "a/2"]);
    assert_eq!(prefix(&state, "b", "\0"), ["b", "c"], "\\0 ends at no key");
    assert_eq!(prefix(&state, "\0", "\0"), ["a", "a/1", "a/2", "b", "c"]);
    assert!(
        prefix(&state, "c", "a").is_empty(),
        "an end before the start is empty"
    );
    let limited = state
        .range(&PbRangeRequest {
            key: "a".into(),
            range_end: "\0".into(),
            limit: 2,
            ..PbRangeRequest::default()
        })
        .expect("range");
    assert_eq!(
        (limited.kvs.len(), limited.more, limited.count),
        (2, true, 5)
    );
    let counted = state
        .range(&PbRangeRequest {
            key: "a".into(),
            range_end: "\0".into(),
            count_only: true,
            ..PbRangeRequest::default()
        })
        .expect("range");
    assert_eq!((counted.kvs.len(), counted.count), (0, 5));
    let sorted = state
        .range(&PbRangeRequest {
            key: "a".into(),
            range_end: "\0".into(),
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Key as i32,
            limit: 1,
            keys_only: true,
            ..PbRangeRequest::default()
        })
        .expect("range");
    assert_eq!(sorted.kvs[0].key, b"c");
    assert!(sorted.kvs[0].value.is_empty(), "keys only");
}

#[test]
fn a_read_at_an_old_revision_sees_that_revision() {
    let mut state = State::default();
    put(&mut state, "a", "1");
    put(&mut state, "a", "2");
    let at = |state: &State, revision| {
        state.range(&PbRangeRequest {
            key: "a".into(),
            revision,
            ..PbRangeRequest::default()
        })
    };
    assert_eq!(at(&state, 2).expect("range").kvs[0].value, b"1");
    assert_eq!(
        at(&state, 4),
        Err(RequestError::Revision(RevisionError::Future))
    );
    state.compact(3).expect("compact");
    assert_eq!(
        at(&state, 2),
        Err(RequestError::Revision(RevisionError::Compacted {
            compacted: 3
        }))
    );
    assert_eq!(at(&state, 3).expect("range").kvs[0].value, b"2");
    assert_eq!(
        state.compact(3).map(|_| ()),
        Err(RequestError::Revision(RevisionError::Compacted {
            compacted: 3
        }))
    );
}

#[test]
fn a_txn_takes_its_path_from_the_state_before_it() {
    let mut state = State::default();
    put(&mut state, "a", "1");
    let request = PbTxnRequest {
        compare: vec![compare(
            "a",
            CompareOp::Equal,
            PbTargetUnion::Value("1".into()),
        )],
        success: vec![
            op_put("b", "x"),
            op_get("b"),
            PbTxnRequestOp {
                request: Some(PbTxnOpRequest::RequestTxn(PbTxnRequest {
                    // Decided before "b" was put: b does not exist yet.
                    compare: vec![compare("b", CompareOp::Equal, PbTargetUnion::Version(0))],
                    success: vec![op_put("c", "nested")],
                    failure: vec![],
                })),
            },
        ],
        failure: vec![op_put("z", "no")],
    };
    let (response, changes) = state.txn(&request).expect("txn");
    assert!(response.succeeded);
    assert_eq!(changes.revision, 3, "one revision for the whole txn");
    let Some(PbTxnOpResponse::ResponseRange(read)) = &response.responses[1].response else {
        panic!("a range response second: {response:?}");
    };
    assert_eq!(read.kvs[0].value, b"x", "a txn reads its own writes");
    let Some(PbTxnOpResponse::ResponseTxn(nested)) = &response.responses[2].response else {
        panic!("a txn response third: {response:?}");
    };
    assert!(nested.succeeded);
    assert_eq!(get(&state, "c").map(|kv| kv.2), Some(3));
    assert_eq!(
        changes
            .records
            .iter()
            .map(|(_, record)| record.revision.sub)
            .collect::<Vec<_>>(),
        [0, 1]
    );
}

#[test]
fn compares_on_missing_keys_follow_etcd() {
    let mut state = State::default();
    let outcome = |state: &mut State, compare: PbCompare| {
        state
            .txn(&PbTxnRequest {
                compare: vec![compare],
                ..PbTxnRequest::default()
            })
            .expect("txn")
            .0
            .succeeded
    };
    assert!(!outcome(
        &mut state,
        compare("m", CompareOp::Equal, PbTargetUnion::Value(Vec::new()))
    ));
    assert!(!outcome(
        &mut state,
        compare("m", CompareOp::NotEqual, PbTargetUnion::Value("x".into()))
    ));
    assert!(outcome(
        &mut state,
        compare("m", CompareOp::Equal, PbTargetUnion::CreateRevision(0))
    ));
    assert!(outcome(
        &mut state,
        compare("m", CompareOp::Less, PbTargetUnion::Version(1))
    ));
}

#[test]
fn a_branch_may_not_write_a_key_twice() {
    let mut state = State::default();
    let refused = |success: Vec<PbTxnRequestOp>| PbTxnRequest {
        success,
        ..PbTxnRequest::default()
    };
    for success in [
        vec![op_put("a", "1"), op_put("a", "2")],
        vec![op_delete("a", "b"), op_put("a", "1")],
        vec![op_put("a/x", "1"), op_delete("a/", "a0")],
    ] {
        assert_eq!(
            state.txn(&refused(success)).map(|_| ()),
            Err(RequestError::DuplicateKey)
        );
    }
    let branches = PbTxnRequestOp {
        request: Some(PbTxnOpRequest::RequestTxn(PbTxnRequest {
            compare: vec![],
            success: vec![op_put("a", "then")],
            failure: vec![op_put("a", "else")],
        })),
    };
    assert!(
        state.txn(&refused(vec![branches])).is_ok(),
        "a nested txn's two branches may put one key"
    );
    assert_eq!(state.store().revision(), 2, "only the last txn wrote");
}

#[test]
fn a_refused_txn_changes_nothing() {
    let mut state = State::default();
    put(&mut state, "a", "1");
    let request = PbTxnRequest {
        success: vec![
            op_put("b", "1"),
            PbTxnRequestOp {
                request: Some(PbTxnOpRequest::RequestPut(PbPutRequest {
                    key: "b2".into(),
                    lease: 99,
                    ..PbPutRequest::default()
                })),
            },
        ],
        ..PbTxnRequest::default()
    };
    assert_eq!(
        state.txn(&request).map(|_| ()),
        Err(RequestError::LeaseNotFound)
    );
    assert_eq!(state.store().revision(), 2);
    assert_eq!(get(&state, "b"), None);
    assert_eq!(
        put(&mut state, "c", "1"),
        3,
        "the next write takes the next revision"
    );
}

#[test]
fn too_many_operations_are_refused() {
    let mut state = State::default();
    let request = PbTxnRequest {
        success: (0..129).map(|n| op_put(&format!("k{n}"), "v")).collect(),
        ..PbTxnRequest::default()
    };
    assert_eq!(
        state.txn(&request).map(|_| ()),
        Err(RequestError::TooManyOps)
    );
}

#[test]
fn puts_that_keep_the_value_or_lease_need_the_key() {
    let mut state = State::default();
    let keep_value = PbPutRequest {
        key: "a".into(),
        ignore_value: true,
        ..PbPutRequest::default()
    };
    assert_eq!(
        state.put(&keep_value).map(|_| ()),
        Err(RequestError::KeyNotFound)
    );
    put(&mut state, "a", "kept");
    state.put(&keep_value).expect("put keeping the value");
    assert_eq!(
        get(&state, "a").map(|kv| (kv.0, kv.3)),
        Some(("kept".into(), 2))
    );
    let both = PbPutRequest {
        value: "x".into(),
        ..keep_value
    };
    assert_eq!(
        state.put(&both).map(|_| ()),
        Err(RequestError::ValueProvided)
    );
}

#[test]
fn a_revoked_lease_deletes_its_keys_at_one_revision() {
    let mut state = State::default();
    let now = Instant::now();
    let (lease, ttl) = state.grant(0, 0, now).expect("grant");
    assert_eq!(ttl, 1, "the shortest TTL");
    for key in ["b", "a"] {
        state
            .put(&PbPutRequest {
                key: key.into(),
                lease,
                ..PbPutRequest::default()
            })
            .expect("put");
    }
    put(&mut state, "b", "no lease now");
    let changes = state.revoke(lease).expect("revoke");
    assert_eq!(changes.revision, 5);
    assert_eq!(
        changes.events.len(),
        1,
        "b left the lease when put without it"
    );
    assert_eq!(get(&state, "b").map(|kv| kv.0), Some("no lease now".into()));
    assert_eq!(
        state.revoke(lease).map(|_| ()),
        Err(RequestError::LeaseNotFound)
    );
}

#[test]
fn leases_expire_unless_kept_alive() {
    let mut state = State::default();
    let start = Instant::now();
    let (lease, _) = state.grant(7, 10, start).expect("grant");
    assert_eq!(
        state.grant(7, 10, start).map(|_| ()),
        Err(RequestError::LeaseExists)
    );
    assert!(state.expired(start + Duration::from_secs(9)).is_empty());
    assert_eq!(
        state.keep_alive(lease, start + Duration::from_secs(9)),
        Some(10)
    );
    assert!(state.expired(start + Duration::from_secs(18)).is_empty());
    assert_eq!(state.expired(start + Duration::from_secs(19)), [lease]);
    let (left, _) = state
        .time_to_live(lease, start + Duration::from_millis(13_500))
        .expect("lease");
    assert_eq!(left, 5, "etcd truncates the seconds left");
    assert_eq!(state.keep_alive(99, start), None);
}

#[test]
fn history_from_a_revision_lists_events_in_order() {
    let mut state = State::default();
    put(&mut state, "a", "1");
    put(&mut state, "b", "1");
    put(&mut state, "a", "2");
    let events = state
        .store()
        .history(KeyRange::new(b"a", b""), 3)
        .expect("history");
    assert_eq!(events.len(), 1);
    let prev = events[0].prev_kv.as_ref().expect("previous version");
    assert_eq!(prev.value, b"1");
    state.compact(4).expect("compact");
    assert!(matches!(
        state.store().history(KeyRange::new(b"a", b""), 3),
        Err(RevisionError::Compacted { compacted: 4 })
    ));
}

/// What the model applies: a put of a value, or a delete of a range of
/// the key space `k0`..`k4`.
#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8, u8),
    /// Compacts this many revisions back from the current one.
    Compact(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..5, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..5, 0u8..6).prop_map(|(a, b)| Op::Delete(a, b)),
        1 => (0u8..4).prop_map(Op::Compact),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

proptest! {
    /// Every revision at or after the compaction point reads as the model's
    /// snapshot of that revision, and history replays to the same state.
    #[test]
    fn the_index_reads_every_revision_as_it_was(ops in prop::collection::vec(op(), 1..60)) {
        let mut store = Store::new();
        let mut snapshots: BTreeMap<i64, BTreeMap<Vec<u8>, u8>> = BTreeMap::new();
        let mut model: BTreeMap<Vec<u8>, u8> = BTreeMap::new();
        snapshots.insert(1, model.clone());
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    let mut write = store.write();
                    write.put(&key(k), vec![v], 0);
                    write.commit();
                    model.insert(key(k), v);
                }
                Op::Delete(a, b) => {
                    let (start, end) = (key(a), key(b));
                    let mut write = store.write();
                    write.delete(KeyRange::new(&start, &end));
                    write.commit();
                    model.retain(|k, _| !(k >= &start && k < &end));
                }
                Op::Compact(back) => {
                    let at = store.revision() - i64::from(back);
                    if at > store.compacted() {
                        store.compact(at).expect("compact at the current revision");
                    }
                }
            }
            snapshots.insert(store.revision(), model.clone());
        }
        let everything = KeyRange::new(b"\0", b"\0");
        let mut expected = BTreeMap::new();
        for revision in 1..=store.revision() {
            if let Some(snapshot) = snapshots.get(&revision) {
                expected = snapshot.clone();
            }
            match store.readable(revision) {
                Ok(at) => {
                    let seen: BTreeMap<Vec<u8>, u8> = store
                        .range(everything, at)
                        .map(|kv| (kv.key.clone(), kv.value[0]))
                        .collect();
                    prop_assert_eq!(&seen, &expected, "at revision {}", revision);
                }
                Err(error) => prop_assert!(
                    revision < store.compacted(),
                    "revision {} unreadable: {:?}", revision, error
                ),
            }
        }
        // Replaying the history from the compaction point onto its snapshot
        // gives the current state.
        let from = store.compacted().max(1);
        let mut replayed: BTreeMap<Vec<u8>, u8> = store
            .range(everything, from)
            .map(|kv| (kv.key.clone(), kv.value[0]))
            .collect();
        for event in store.history(everything, from + 1).expect("history") {
            let kv = event.kv.expect("an event's key");
            if event.r#type == etcd_client::EventType::Put as i32 {
                replayed.insert(kv.key, kv.value[0]);
            } else {
                replayed.remove(&kv.key);
            }
        }
        prop_assert_eq!(replayed, model);
    }
}
