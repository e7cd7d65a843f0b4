//! The relation hook scenarios, one case or table each: live-source
//! coalescing and order, restart reconciliation, dying order, and every way
//! validation refuses a hook.

use super::*;

const REL: &str = "r1";

fn joined(unit: &str, version: i64) -> HookInfo {
    HookInfo::joined(REL, unit, version)
}

fn changed(unit: &str, version: i64) -> HookInfo {
    HookInfo::changed(REL, unit, version)
}

fn departed(unit: &str, version: i64) -> HookInfo {
    HookInfo::departed(REL, unit, version)
}

fn broken() -> HookInfo {
    HookInfo::broken(REL)
}

fn state(members: &[(&str, i64)], changed_pending: Option<&str>) -> State {
    State {
        relation_id: REL.to_owned(),
        members: members
            .iter()
            .map(|&(unit, version)| (unit.to_owned(), version))
            .collect(),
        changed_pending: changed_pending.map(str::to_owned),
        broken: false,
    }
}

fn broken_state() -> State {
    State {
        broken: true,
        ..State::new(REL)
    }
}

fn members(pairs: &[(&str, i64)]) -> MembershipChange {
    pairs
        .iter()
        .fold(MembershipChange::default(), |change, &(unit, version)| {
            change.change(unit, version)
        })
}

fn gone(unit: &str) -> MembershipChange {
    MembershipChange::default().depart(unit)
}

/// A live source continuing from `stored`, given its first change.
fn live(stored: State, first: MembershipChange) -> LiveSource {
    let mut source = LiveSource::new(stored);
    source.update(first);
    source
}

/// Delivers and acknowledges every hook due, checking each against `state`.
fn drain(source: &mut impl HookSource, state: &mut State) -> Vec<HookInfo> {
    let mut delivered = Vec::new();
    while let Some(hook) = source.next() {
        assert!(delivered.len() < 100, "a source that never drains");
        state
            .apply(&hook)
            .expect("every hook a source yields is valid");
        source.pop();
        delivered.push(hook);
    }
    delivered
}

/// `drain` for a live source, which tracks its acknowledged state itself.
fn drain_live(source: &mut LiveSource) -> Vec<HookInfo> {
    let mut shadow = source.state().clone();
    let delivered = drain(source, &mut shadow);
    assert_eq!(source.state(), &shadow);
    delivered
}

#[test]
fn a_new_unit_gets_joined_then_changed_on_first_sight() {
    let mut source = live(State::new(REL), members(&[("db-0", 5)]));
    assert_eq!(
        drain_live(&mut source),
        [joined("db-0", 5), changed("db-0", 5)]
    );
    assert_eq!(source.state(), &state(&[("db-0", 5)], None));
    assert!(source.is_empty());
}

#[test]
fn the_changed_after_a_joined_carries_the_latest_version_when_taken() {
    let mut source = live(State::new(REL), members(&[("db-0", 5)]));
    assert_eq!(source.next(), Some(joined("db-0", 5)));
    source.pop();
    source.update(members(&[("db-0", 7)]));
    source.update(members(&[("db-0", 9)]));
    assert_eq!(drain_live(&mut source), [changed("db-0", 9)]);
}

#[test]
fn a_unit_departing_before_its_joined_ran_yields_nothing() {
    let mut source = live(State::new(REL), members(&[("db-0", 5), ("db-1", 6)]));
    source.update(gone("db-0"));
    assert_eq!(
        drain_live(&mut source),
        [joined("db-1", 6), changed("db-1", 6)]
    );

    let in_one_change = members(&[("db-2", 7)]).depart("db-2");
    source.update(in_one_change);
    assert!(source.is_empty());
    assert_eq!(source.state(), &state(&[("db-1", 6)], None));
}

#[test]
fn a_changed_still_follows_a_joined_when_a_departed_is_known() {
    let mut source = live(State::new(REL), members(&[("db-0", 5)]));
    source.pop();
    source.update(members(&[("db-0", 6)]));
    source.update(gone("db-0"));
    // Gone from the membership, db-0 is known by what was acknowledged only.
    assert_eq!(
        drain_live(&mut source),
        [changed("db-0", 5), departed("db-0", 5)]
    );
    assert_eq!(source.state(), &State::new(REL));
}

#[test]
fn repeated_changes_coalesce_into_one_changed_with_the_latest_version() {
    let mut source = live(State::new(REL), members(&[("db-0", 5)]));
    drain_live(&mut source);
    for version in [6, 7, 8] {
        source.update(members(&[("db-0", version)]));
    }
    assert_eq!(drain_live(&mut source), [changed("db-0", 8)]);
}

#[test]
fn a_change_at_the_delivered_version_yields_nothing() {
    let mut source = live(State::new(REL), members(&[("db-0", 5)]));
    drain_live(&mut source);
    source.update(members(&[("db-0", 5)]));
    assert!(source.is_empty());
}

#[test]
fn a_departure_goes_ahead_of_older_changes_with_the_acknowledged_version() {
    let mut source = live(State::new(REL), members(&[("db-0", 1), ("db-1", 2)]));
    drain_live(&mut source);
    source.update(members(&[("db-1", 3)]));
    source.update(members(&[("db-0", 4)]));
    source.update(gone("db-0"));
    assert_eq!(
        drain_live(&mut source),
        [departed("db-0", 1), changed("db-1", 3)]
    );
}

#[test]
fn a_unit_back_before_its_departed_ran_gets_a_changed_instead() {
    let mut source = live(State::new(REL), members(&[("db-0", 1)]));
    drain_live(&mut source);
    source.update(gone("db-0"));
    source.update(members(&[("db-0", 3)]));
    assert_eq!(drain_live(&mut source), [changed("db-0", 3)]);
}

#[test]
fn joins_and_changes_line_up_oldest_version_first_then_by_name() {
    let first = members(&[("db-1", 1), ("db-0", 2), ("db-4", 0), ("db-3", 0)]);
    let mut source = live(State::new(REL), first);
    source.update(members(&[("db-2", 3)]));
    source.update(members(&[("db-0", 4)]));
    assert_eq!(
        drain_live(&mut source),
        [
            joined("db-3", 0),
            changed("db-3", 0),
            joined("db-4", 0),
            changed("db-4", 0),
            joined("db-1", 1),
            changed("db-1", 1),
            joined("db-2", 3),
            changed("db-2", 3),
            joined("db-0", 4),
            changed("db-0", 4),
        ]
    );
}

#[test]
fn a_unit_whose_hook_was_delivered_goes_to_the_back_of_the_line() {
    let mut source = live(State::new(REL), members(&[("db-0", 1), ("db-1", 2)]));
    drain_live(&mut source);
    source.update(members(&[("db-0", 3), ("db-1", 4)]));
    assert_eq!(source.next(), Some(changed("db-0", 3)));
    source.pop();
    source.update(members(&[("db-0", 5)]));
    assert_eq!(
        drain_live(&mut source),
        [changed("db-1", 4), changed("db-0", 5)]
    );
}

#[test]
fn nothing_is_due_before_the_first_change() {
    let mut source = LiveSource::new(state(&[("db-0", 1)], Some("db-0")));
    assert!(!source.is_started());
    assert_eq!(source.next(), None);
    source.pop();
    assert_eq!(source.state(), &state(&[("db-0", 1)], Some("db-0")));
}

#[test]
fn a_restart_delivers_a_stored_pending_changed_then_departs_missing_members() {
    let stored = state(&[("a", 1), ("b", 2), ("c", 3)], Some("c"));
    let mut source = live(stored, members(&[("a", 1), ("c", 5), ("d", 7)]));
    assert_eq!(
        drain_live(&mut source),
        [
            changed("c", 5),
            departed("b", 2),
            joined("d", 7),
            changed("d", 7),
        ]
    );
    assert_eq!(
        source.state(),
        &state(&[("a", 1), ("c", 5), ("d", 7)], None)
    );
}

#[test]
fn a_pending_changed_comes_first_then_departures_then_what_the_membership_brings() {
    #[rustfmt::skip]
    let rows: [(State, MembershipChange, Vec<HookInfo>); 3] = [
        // As Juju's live source orders it: a's departure stays ahead of b.
        (
            state(&[("a", 0)], Some("a")),
            members(&[("b", 0)]),
            vec![changed("a", 0), departed("a", 0), joined("b", 0), changed("b", 0)],
        ),
        // Departures by name, then joins and changes oldest version first.
        (
            state(&[("a", 1), ("b", 2), ("c", 3)], Some("c")),
            members(&[("c", 9), ("d", 8), ("e", 4)]),
            vec![
                changed("c", 9), departed("a", 1), departed("b", 2),
                joined("e", 4), changed("e", 4), joined("d", 8), changed("d", 8),
            ],
        ),
        // The pending unit left: its changed and departed carry what it joined at.
        (
            state(&[("a", 1), ("b", 2)], Some("b")),
            members(&[("a", 5), ("c", 7)]),
            vec![
                changed("b", 2), departed("b", 2),
                changed("a", 5), joined("c", 7), changed("c", 7),
            ],
        ),
    ];
    for (stored, first, expected) in rows {
        let mut source = live(stored.clone(), first.clone());
        assert_eq!(drain_live(&mut source), expected, "from {stored:?}");
        // A new leader rebuilding the source after any acknowledgement
        // continues exactly where the running source was.
        let mut acknowledged = stored.clone();
        for (delivered, hook) in expected.iter().enumerate() {
            let rebuilt = live(acknowledged.clone(), first.clone());
            assert_eq!(
                rebuilt.next().as_ref(),
                Some(hook),
                "rebuilt after {delivered} hooks from {stored:?}"
            );
            acknowledged.apply(hook).expect("valid");
        }
    }
}

#[test]
fn a_restart_delivers_changed_for_newer_versions_and_nothing_for_the_same() {
    let stored = state(&[("a", 1), ("b", 2)], None);
    let mut source = live(stored.clone(), members(&[("a", 1), ("b", 4)]));
    assert_eq!(drain_live(&mut source), [changed("b", 4)]);

    let mut unchanged = live(stored.clone(), members(&[("a", 1), ("b", 2)]));
    assert!(unchanged.is_empty());
    assert_eq!(drain_live(&mut unchanged), []);
    assert_eq!(unchanged.state(), &stored);
}

#[test]
fn the_first_change_is_the_whole_membership_even_with_departures_listed() {
    let stored = state(&[("a", 1), ("b", 2)], None);
    let mut source = live(stored, members(&[("c", 3)]).depart("a"));
    assert_eq!(
        drain_live(&mut source),
        [
            departed("a", 1),
            departed("b", 2),
            joined("c", 3),
            changed("c", 3),
        ]
    );
}

#[test]
fn changes_while_a_taken_hook_runs_stay_owed_after_it_is_acknowledged() {
    let mut source = live(State::new(REL), members(&[("db-0", 5)]));
    let taken = source.next().expect("joined is due");
    source.update(members(&[("db-0", 7)]));
    source.acknowledge(&taken).expect("joined was valid");
    assert_eq!(source.next(), Some(changed("db-0", 7)));

    let taken = changed("db-0", 7);
    source.update(members(&[("db-0", 9)]));
    source.acknowledge(&taken).expect("changed was valid");
    assert_eq!(source.next(), Some(changed("db-0", 9)));
    source.pop();

    source.update(gone("db-0"));
    let taken = source.next().expect("departed is due");
    assert_eq!(taken, departed("db-0", 9));
    source.update(members(&[("db-0", 11)]));
    source.acknowledge(&taken).expect("departed was valid");
    assert_eq!(
        drain_live(&mut source),
        [joined("db-0", 11), changed("db-0", 11)]
    );
}

#[test]
fn a_joined_acknowledged_after_its_unit_left_is_followed_by_changed_then_departed() {
    let mut source = live(State::new(REL), members(&[("db-0", 5)]));
    let taken = source.next().expect("joined is due");
    source.update(gone("db-0"));
    assert!(source.is_empty());
    source.acknowledge(&taken).expect("joined was valid");
    assert_eq!(
        drain_live(&mut source),
        [changed("db-0", 5), departed("db-0", 5)]
    );
}

#[test]
fn a_newcomer_that_changed_and_left_while_its_joined_ran_keeps_its_joined_version() {
    let mut source = live(State::new(REL), members(&[("db-0", 5)]));
    let taken = source.next().expect("joined is due");
    source.update(members(&[("db-0", 7)]));
    source.update(gone("db-0"));
    source.acknowledge(&taken).expect("joined was valid");
    // Version 7 is in no registry a new leader could read: both carry 5.
    assert_eq!(
        drain_live(&mut source),
        [changed("db-0", 5), departed("db-0", 5)]
    );
}

#[test]
fn acknowledging_a_refused_hook_changes_nothing() {
    let mut source = live(State::new(REL), members(&[("db-0", 5)]));
    let error = source
        .acknowledge(&departed("db-0", 5))
        .expect_err("refused");
    assert!(matches!(error, HookError::NotJoined { .. }));
    assert_eq!(source.state(), &State::new(REL));
    assert_eq!(source.next(), Some(joined("db-0", 5)));
}

#[test]
fn dying_delivers_the_pending_changed_then_departs_members_by_name_then_breaks() {
    let stored = state(&[("b", 2), ("a", 1), ("c", 3)], Some("c"));
    let mut acknowledged = stored.clone();
    let hooks = drain(&mut dying_source(&stored), &mut acknowledged);
    assert_eq!(
        hooks,
        [
            changed("c", 3),
            departed("a", 1),
            departed("b", 2),
            departed("c", 3),
            broken(),
        ]
    );
    assert_eq!(acknowledged, broken_state());
}

#[test]
fn dying_without_members_only_breaks_and_a_broken_relation_yields_nothing() {
    let mut acknowledged = State::new(REL);
    assert_eq!(
        drain(&mut dying_source(&acknowledged.clone()), &mut acknowledged),
        [broken()]
    );
    assert!(dying_source(&acknowledged).is_empty());
}

#[test]
fn a_list_source_yields_its_hooks_in_order_each_once() {
    let hooks = [joined("a", 1), changed("a", 1), departed("a", 1), broken()];
    let mut source = ListSource::new(hooks.clone());
    assert_eq!(source.remaining().len(), 4);
    assert_eq!(drain(&mut source, &mut State::new(REL)), hooks);
    source.pop();
    assert!(source.is_empty());
}

#[test]
fn a_state_follows_joined_changed_departed_then_broken() {
    let mut acknowledged = State::new(REL);
    for hook in [joined("a", 1), changed("a", 2), departed("a", 2), broken()] {
        acknowledged.apply(&hook).expect("a valid sequence");
    }
    assert_eq!(acknowledged, broken_state());
}

#[test]
fn every_refused_hook_is_named_by_kind_and_unit_in_its_error() {
    let other = HookInfo::changed("r2", "a", 1);
    let no_unit = HookInfo {
        remote_unit: None,
        ..departed("a", 1)
    };
    let broken_for_unit = HookInfo {
        remote_unit: Some("a".to_owned()),
        ..broken()
    };
    let member = state(&[("a", 1)], None);
    let pending = state(&[("a", 1), ("b", 2)], Some("a"));
    #[rustfmt::skip]
    let rows: [(State, HookInfo, &str, &[&str]); 11] = [
        (member.clone(), other, "changed for a is for relation r2, not r1", &["changed", "a"]),
        (broken_state(), joined("a", 1), "joined for a after relation r1 was broken", &["joined", "a"]),
        (broken_state(), broken(), "broken after relation r1 was broken", &["broken"]),
        (pending.clone(), broken(), "broken while changed for a must come next", &["broken", "a"]),
        (pending.clone(), changed("b", 3), "changed for b while changed for a must come next", &["changed", "b"]),
        (pending.clone(), departed("a", 1), "departed for a while changed for a must come next", &["departed", "a"]),
        (member.clone(), broken(), "broken of relation r1 while a not departed", &["broken", "a"]),
        (member.clone(), joined("a", 2), "joined for a, which has already joined", &["joined", "a"]),
        (member.clone(), departed("b", 2), "departed for b, which has not joined", &["departed", "b"]),
        (member.clone(), no_unit, "departed for no remote unit", &["departed"]),
        (State::new(REL), broken_for_unit, "broken for a, but broken names no remote unit", &["broken", "a"]),
    ];
    for (acknowledged, hook, message, named) in rows {
        let error = acknowledged.validate(&hook).expect_err("refused");
        assert_eq!(error.to_string(), message, "{hook}");
        for word in named {
            assert!(message.contains(word), "{message} names {word}");
        }
        let mut applied = acknowledged.clone();
        assert_eq!(applied.apply(&hook), Err(error));
        assert_eq!(applied, acknowledged, "a refused hook changes nothing");
    }
}

#[test]
fn changed_for_a_non_member_is_refused_as_not_joined() {
    let error = State::new(REL)
        .validate(&changed("db-1", 3))
        .expect_err("refused");
    assert_eq!(
        error,
        HookError::NotJoined {
            kind: HookKind::Changed,
            unit: "db-1".to_owned(),
        }
    );
    assert_eq!(error.to_string(), "changed for db-1, which has not joined");
}

#[test]
fn broken_with_members_left_names_every_member() {
    let error = state(&[("a", 1), ("b", 2)], None)
        .validate(&broken())
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        "broken of relation r1 while a, b not departed"
    );
}
