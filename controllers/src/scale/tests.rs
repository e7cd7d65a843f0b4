//! The scale loop's acceptance scenarios, one table or case each.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::desired::desired_groups;
use crate::testing::{app, apply, at, desired, group, host, name, proc_type, view};
use InstanceState::*;

fn web() -> GroupKey {
    group("web", "v1", "http")
}

fn snapshot(
    desired: &[(GroupKey, DesiredGroup)],
    hosts: Vec<HostView>,
    instances: Vec<InstanceView>,
) -> ScaleSnapshot {
    ScaleSnapshot {
        desired: desired.iter().cloned().collect(),
        hosts,
        instances,
        unlisted_load: BTreeMap::new(),
    }
}

fn hosts_of(plan: &ScalePlan) -> Vec<&str> {
    plan.starts
        .iter()
        .map(|start| start.host.as_str())
        .collect()
}

fn stopped(plan: &ScalePlan) -> Vec<&str> {
    plan.stops
        .iter()
        .map(|stop| stop.instance.as_str())
        .collect()
}

fn unregistered(plan: &ScalePlan) -> Vec<&str> {
    plan.removals
        .iter()
        .map(|removal| removal.instance.as_str())
        .collect()
}

fn three_hosts() -> Vec<HostView> {
    vec![
        host("h1", 10, &["s1"], &[]),
        host("h2", 10, &["s1"], &[]),
        host("h3", 10, &["s1"], &[]),
    ]
}

#[test]
fn scaling_zero_to_five_on_three_hosts_spreads_two_two_one() {
    let state = snapshot(&[(web(), desired(5, "s1", &[]))], three_hosts(), vec![]);
    let plan = plan_scale(&state);
    assert_eq!(hosts_of(&plan), ["h1", "h2", "h3", "h1", "h2"]);
    assert!(plan.stops.is_empty() && plan.unplaceable.is_empty());
    assert!(plan.starts.iter().all(|start| start.group == web()));
    assert_eq!(plan_group(&web(), &state), plan);
    assert!(!plan_scale(&apply(&state, &plan)).has_actions());
}

#[test]
fn scaling_five_to_two_stops_pending_before_running_newest_first() {
    let instances = vec![
        view("run-old", 1, &web(), Running, Some("h1")),
        view("run-mid", 2, &web(), Running, Some("h2")),
        view("pend-old", 3, &web(), Pending, Some("h3")),
        view("pend-new", 4, &web(), Pending, Some("h1")),
        view("run-new", 5, &web(), Running, Some("h2")),
    ];
    let state = snapshot(&[(web(), desired(2, "s1", &[]))], three_hosts(), instances);
    let plan = plan_scale(&state);
    assert_eq!(stopped(&plan), ["pend-new", "pend-old", "run-new"]);
    assert_eq!(plan.stops[0].host, name("h1"));
    assert!(plan.starts.is_empty() && plan.unplaceable.is_empty());
    assert!(!plan_scale(&apply(&state, &plan)).has_actions());
}

#[test]
fn claimed_instances_stop_after_pending_and_before_running() {
    let instances = vec![
        view("claimed", 1, &web(), Claimed, Some("h1")),
        view("running", 2, &web(), Running, Some("h1")),
        view("pending", 3, &web(), Pending, Some("h1")),
    ];
    let state = snapshot(&[(web(), desired(0, "s1", &[]))], three_hosts(), instances);
    assert_eq!(
        stopped(&plan_scale(&state)),
        ["pending", "claimed", "running"]
    );
}

#[test]
fn without_a_host_offering_the_stack_all_wait_until_one_appears() {
    let wanted = [(web(), desired(3, "s1", &[]))];
    let mut state = snapshot(&wanted, vec![host("h1", 10, &["s2"], &[])], vec![]);
    let plan = plan_scale(&state);
    assert!(plan.starts.is_empty());
    assert_eq!(
        plan.unplaceable,
        [Unplaceable {
            group: web(),
            count: 3
        }]
    );

    state.hosts.push(host("h2", 10, &["s2", "s1"], &[]));
    let plan = plan_scale(&state);
    assert_eq!(hosts_of(&plan), ["h2", "h2", "h2"]);
    assert!(plan.unplaceable.is_empty());
}

#[test]
fn required_labels_are_honoured() {
    let wanted = [(web(), desired(3, "s1", &[("zone", "a")]))];
    let hosts = vec![
        host("h1", 10, &["s1"], &[]),
        host("h2", 10, &["s1"], &[("zone", "b")]),
        host("h3", 10, &["s1"], &[("zone", "a"), ("disk", "ssd")]),
    ];
    let plan = plan_scale(&snapshot(&wanted, hosts, vec![]));
    assert_eq!(hosts_of(&plan), ["h3", "h3", "h3"]);
}

#[test]
fn capacity_is_honoured_counting_every_group_and_stopping_instances() {
    let other = group("api", "v1", "worker");
    let wanted = [(web(), desired(5, "s1", &[]))];
    let hosts = vec![
        host("h1", 2, &["s1"], &[]),
        host("h2", 3, &["s1"], &[]),
        host("over", 1, &["s1"], &[]),
    ];
    let instances = vec![
        view("other-1", 1, &other, Running, Some("h1")),
        view("other-2", 2, &other, Stopping, Some("h2")),
        view("done", 3, &other, Exited, Some("h2")),
        view("over-1", 4, &other, Running, Some("over")),
        view("over-2", 5, &other, Running, Some("over")),
    ];
    let plan = plan_scale(&snapshot(&wanted, hosts, instances));
    assert_eq!(hosts_of(&plan), ["h1", "h2", "h2"]);
    assert_eq!(
        plan.unplaceable,
        [Unplaceable {
            group: web(),
            count: 2
        }]
    );
}

#[test]
fn a_removed_app_rev_or_proc_stops_everything_active() {
    let registry_apps = BTreeMap::from([(name("web"), app("s1"))]);
    let registry_revs = BTreeSet::from([(name("web"), name("v1"))]);
    let registry_procs = BTreeMap::from([((name("web"), name("http")), proc_type(&[]))]);
    let factors = BTreeMap::from([(web(), 3)]);
    let instances = vec![
        view("a", 1, &web(), Running, Some("h1")),
        view("b", 2, &web(), Claimed, Some("h2")),
        view("c", 3, &web(), Pending, None),
        view("d", 4, &web(), Stopping, Some("h1")),
        view("e", 5, &web(), Failed, Some("h1")),
    ];
    for removed in ["app", "rev", "proc"] {
        let (mut apps, mut revs, mut procs) = (
            registry_apps.clone(),
            registry_revs.clone(),
            registry_procs.clone(),
        );
        match removed {
            "app" => apps.clear(),
            "rev" => revs.clear(),
            _ => procs.clear(),
        }
        let state = ScaleSnapshot {
            desired: desired_groups(&apps, &revs, &procs, &factors),
            hosts: three_hosts(),
            instances: instances.clone(),
            unlisted_load: BTreeMap::new(),
        };
        let plan = plan_scale(&state);
        assert_eq!(unregistered(&plan), ["c"], "never placed, so no host");
        assert_eq!(stopped(&plan), ["b", "a"], "removed {removed}");
        assert!(plan.starts.is_empty(), "removed {removed}");
        assert_eq!(plan_group(&web(), &state), plan, "removed {removed}");
    }
}

#[test]
fn instances_on_a_dead_host_are_replaced_not_stopped() {
    let instances = vec![
        view("lost-1", 1, &web(), Running, Some("gone")),
        view("lost-2", 2, &web(), Pending, Some("gone")),
        view("alive", 3, &web(), Running, Some("h1")),
    ];
    let state = snapshot(&[(web(), desired(3, "s1", &[]))], three_hosts(), instances);
    let plan = plan_scale(&state);
    assert_eq!(hosts_of(&plan), ["h2", "h3"]);
    assert!(plan.stops.is_empty());
}

#[test]
fn an_unassigned_pending_instance_counts_as_active() {
    let instances = vec![view("waiting", 1, &web(), Pending, None)];
    let state = snapshot(&[(web(), desired(2, "s1", &[]))], three_hosts(), instances);
    assert_eq!(hosts_of(&plan_scale(&state)), ["h1"]);
}

#[test]
fn groups_are_planned_in_key_order_and_share_host_capacity() {
    let api = group("api", "v1", "worker");
    let wanted = [
        (web(), desired(2, "s1", &[])),
        (api.clone(), desired(2, "s1", &[])),
    ];
    let state = snapshot(&wanted, vec![host("h1", 3, &["s1"], &[])], vec![]);
    let plan = plan_scale(&state);
    let groups: Vec<&GroupKey> = plan.starts.iter().map(|start| &start.group).collect();
    assert_eq!(groups, [&api, &api, &web()]);
    assert_eq!(
        plan.unplaceable,
        [Unplaceable {
            group: web(),
            count: 1
        }]
    );
    assert_eq!(plan_group(&web(), &state).starts.len(), 2, "alone, it fits");
}

#[test]
fn a_group_without_desired_state_scales_to_zero() {
    let instances = vec![view("a", 1, &web(), Running, Some("h1"))];
    let state = snapshot(&[], three_hosts(), instances);
    assert_eq!(stopped(&plan_group(&web(), &state)), ["a"]);
    assert_eq!(stopped(&plan_scale(&state)), ["a"]);
}

#[test]
fn an_exact_scale_plans_nothing() {
    let instances = vec![
        view("a", 1, &web(), Running, Some("h1")),
        view("b", 2, &web(), Exited, Some("h1")),
    ];
    let state = snapshot(&[(web(), desired(1, "s1", &[]))], three_hosts(), instances);
    assert_eq!(plan_scale(&state), ScalePlan::default());
}

#[test]
fn a_start_creates_a_pending_instance_on_its_host() {
    let start = Start {
        group: web(),
        host: name("h1"),
    };
    let instance = start.instance(at(7));
    assert_eq!(instance.state, Pending);
    assert_eq!(instance.host, Some(name("h1")));
    assert_eq!(GroupKey::of(&instance), web());
    assert_eq!(instance.created_at, at(7));
}

#[test]
fn an_outstanding_stop_ticket_counts_as_stopping_until_the_instance_is_finished() {
    let table = [
        (Pending, Pending, Stopping),
        (Claimed, Claimed, Stopping),
        (Running, Running, Stopping),
        (Stopping, Stopping, Stopping),
        (Exited, Exited, Exited),
        (Failed, Failed, Failed),
        (Lost, Lost, Lost),
    ];
    assert_eq!(table.len(), InstanceState::ALL.len(), "every state");
    for (listed, without_ticket, with_ticket) in table {
        let document = crate::testing::instance(&web(), listed, Some("h1"));
        for (stop_sent, expected) in [(false, without_ticket), (true, with_ticket)] {
            let view = InstanceView::listed(name("i"), 7, document.clone(), stop_sent);
            assert_eq!(
                view.instance.state, expected,
                "{listed:?}, stop sent: {stop_sent}"
            );
            assert_eq!((view.id.as_str(), view.create_revision), ("i", 7));
        }
    }
}

#[test]
fn an_instance_whose_stop_was_sent_is_not_stopped_again() {
    let running = |id, revision| view(id, revision, &web(), Running, Some("h1"));
    let listed = |id: &str, revision, stop_sent| {
        let document = crate::testing::instance(&web(), Running, Some("h1"));
        InstanceView::listed(name(id), revision, document, stop_sent)
    };
    let wanted = [(web(), desired(1, "s1", &[]))];
    let state = snapshot(
        &wanted,
        three_hosts(),
        vec![running("a", 1), running("b", 2)],
    );
    assert_eq!(stopped(&plan_group(&web(), &state)), ["b"]);
    let sent = snapshot(
        &wanted,
        three_hosts(),
        vec![listed("a", 1, false), listed("b", 2, true)],
    );
    assert!(!plan_group(&web(), &sent).has_actions());
}

#[test]
fn active_instances_are_pending_claimed_or_running_on_a_live_host_or_none() {
    let api = group("api", "v1", "worker");
    let instances = vec![
        view("pending", 1, &web(), Pending, Some("h1")),
        view("claimed", 2, &web(), Claimed, Some("h2")),
        view("running", 3, &web(), Running, Some("h3")),
        view("unplaced", 4, &web(), Pending, None),
        view("on-dead-host", 5, &web(), Running, Some("gone")),
        view("stopping", 6, &web(), Stopping, Some("h1")),
        view("exited", 7, &web(), Exited, Some("h1")),
        view("failed", 8, &web(), Failed, Some("h1")),
        view("lost", 9, &web(), Lost, Some("h1")),
        view("other-group", 10, &api, Running, Some("h1")),
    ];
    let wanted = [(web(), desired(4, "s1", &[]))];
    let state = snapshot(&wanted, three_hosts(), instances);
    assert_eq!(
        active_count(&web(), &state),
        4,
        "pending, claimed and running count, on a live host or none"
    );
    assert_eq!(active_count(&api, &state), 1);
    assert!(
        !plan_group(&web(), &state).has_actions(),
        "the planner counts the same four as the desired four"
    );
}

fn draining(mut view: HostView) -> HostView {
    view.draining = true;
    view
}

/// A drain, step by step: h1 leaves while it runs all three of web's
/// instances, and h2 takes them over.
#[test]
fn a_draining_host_hands_its_instances_over_one_for_one_as_replacements_run() {
    let hosts = || {
        vec![
            draining(host("h1", 10, &["s1"], &[])),
            host("h2", 10, &["s1"], &[]),
        ]
    };
    let old = |id, revision| view(id, revision, &web(), Running, Some("h1"));
    let desired = [(web(), desired(3, "s1", &[]))];
    // (instances on h2, what is stopped on h1, starts on h2)
    let steps: [(Vec<InstanceState>, Vec<&str>, usize); 4] = [
        (vec![], vec![], 3),
        (vec![Pending, Claimed, Running], vec!["old-3"], 0),
        (vec![Running, Running, Pending], vec!["old-3", "old-2"], 0),
        (
            vec![Running, Running, Running],
            vec!["old-3", "old-2", "old-1"],
            0,
        ),
    ];
    for (on_h2, stops, starts) in steps {
        let mut instances = vec![old("old-1", 1), old("old-2", 2), old("old-3", 3)];
        for (revision, state) in (10..).zip(&on_h2) {
            let id = format!("new-{revision}");
            instances.push(view(&id, revision, &web(), *state, Some("h2")));
        }
        let state = snapshot(&desired, hosts(), instances);
        let plan = plan_scale(&state);
        assert_eq!(stopped(&plan), stops, "with {on_h2:?} on h2");
        assert!(plan.stops.iter().all(|stop| stop.host == name("h1")));
        assert_eq!(hosts_of(&plan), vec!["h2"; starts], "with {on_h2:?} on h2");
        assert!(!plan_scale(&apply(&state, &plan)).has_actions());
    }
}

#[test]
fn a_draining_host_takes_nothing_new_and_what_it_has_not_started_goes_at_once() {
    let hosts = vec![
        draining(host("h1", 10, &["s1"], &[])),
        host("h2", 1, &["s1"], &[]),
    ];
    let instances = vec![view("waiting", 1, &web(), Pending, Some("h1"))];
    let state = snapshot(&[(web(), desired(3, "s1", &[]))], hosts, instances);
    let plan = plan_scale(&state);
    assert_eq!(stopped(&plan), ["waiting"]);
    assert_eq!(hosts_of(&plan), ["h2"]);
    assert_eq!(
        plan.unplaceable,
        [Unplaceable {
            group: web(),
            count: 2
        }]
    );
}

#[test]
fn a_drain_with_nowhere_to_go_keeps_the_instances_running() {
    let hosts = vec![draining(host("h1", 10, &["s1"], &[]))];
    let instances = vec![
        view("a", 1, &web(), Running, Some("h1")),
        view("b", 2, &web(), Running, Some("h1")),
    ];
    let state = snapshot(&[(web(), desired(2, "s1", &[]))], hosts, instances);
    let plan = plan_scale(&state);
    assert!(plan.stops.is_empty() && plan.starts.is_empty());
    assert_eq!(plan.unplaceable[0].count, 2);
}
