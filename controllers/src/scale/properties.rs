//! Properties of scale plans over random registries: a few apps, revisions and
//! proc types, up to six live hosts with random capacities, stacks and labels,
//! some of them draining, and instances in every state on live, dead or no
//! hosts.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::desired::desired_groups;
use crate::model::{App, ProcType};
use crate::testing::{app, apply, group, host, instance, name, proc_type};

const APPS: [&str; 2] = ["a", "b"];
const REVS: [&str; 2] = ["v1", "v2"];
const PROCS: [&str; 2] = ["p", "q"];
const STACKS: [&str; 2] = ["s1", "s2"];
const ZONES: [&str; 2] = ["z1", "z2"];
/// Six names live hosts may take, then two that are never live.
const HOST_NAMES: [&str; 8] = ["h0", "h1", "h2", "h3", "h4", "h5", "dead0", "dead1"];
const STATES: [InstanceState; 7] = InstanceState::ALL;

/// Group `index` of the eight (app, rev, proc) combinations.
fn group_at(index: usize) -> GroupKey {
    group(APPS[index / 4], REVS[(index / 2) % 2], PROCS[index % 2])
}

type HostSpec = (u32, bool, bool, Option<usize>, bool);
type InstanceSpec = (usize, usize, usize, i64);

fn arb_snapshot() -> impl Strategy<Value = ScaleSnapshot> {
    (
        prop::collection::vec(prop::option::weighted(0.85, 0..STACKS.len()), APPS.len()),
        prop::collection::vec(prop::bool::weighted(0.85), APPS.len() * REVS.len()),
        prop::collection::vec(
            prop::option::weighted(0.85, prop::option::weighted(0.3, 0..ZONES.len())),
            APPS.len() * PROCS.len(),
        ),
        prop::collection::vec(prop::option::weighted(0.7, 0..6u32), 8),
        prop::collection::vec(
            prop::option::weighted(
                0.7,
                (
                    0..5u32,
                    prop::bool::weighted(0.8),
                    any::<bool>(),
                    prop::option::of(0..ZONES.len()),
                    prop::bool::weighted(0.25),
                ),
            ),
            6,
        ),
        prop::collection::vec(
            (0..8usize, 0..STATES.len(), 0..=HOST_NAMES.len(), 1..30i64),
            0..16,
        ),
    )
        .prop_map(|(apps, revs, procs, factors, hosts, instances)| {
            build(&apps, &revs, &procs, &factors, &hosts, &instances)
        })
}

fn build(
    app_stacks: &[Option<usize>],
    revs_present: &[bool],
    proc_zones: &[Option<Option<usize>>],
    factors: &[Option<u32>],
    hosts: &[Option<HostSpec>],
    instances: &[InstanceSpec],
) -> ScaleSnapshot {
    let apps: BTreeMap<Name, App> = APPS
        .iter()
        .zip(app_stacks)
        .filter_map(|(&a, stack)| stack.map(|s| (name(a), app(STACKS[s]))))
        .collect();
    let revs: BTreeSet<(Name, Name)> = (0..revs_present.len())
        .filter(|&i| revs_present[i])
        .map(|i| (name(APPS[i / 2]), name(REVS[i % 2])))
        .collect();
    let procs: BTreeMap<(Name, Name), ProcType> = (0..proc_zones.len())
        .filter_map(|i| {
            let zone = proc_zones[i]?;
            let labels: Vec<(&str, &str)> = zone.map(|z| ("zone", ZONES[z])).into_iter().collect();
            Some(((name(APPS[i / 2]), name(PROCS[i % 2])), proc_type(&labels)))
        })
        .collect();
    let factors: BTreeMap<GroupKey, u32> = (0..factors.len())
        .filter_map(|i| factors[i].map(|replicas| (group_at(i), replicas)))
        .collect();
    let hosts = (0..hosts.len())
        .filter_map(|i| {
            let (capacity, s1, s2, zone, draining) = hosts[i]?;
            let stacks: Vec<&str> = [(s1, STACKS[0]), (s2, STACKS[1])]
                .into_iter()
                .filter_map(|(offered, stack)| offered.then_some(stack))
                .collect();
            let labels: Vec<(&str, &str)> = zone.map(|z| ("zone", ZONES[z])).into_iter().collect();
            let mut view = host(HOST_NAMES[i], capacity, &stacks, &labels);
            view.draining = draining;
            Some(view)
        })
        .collect();
    let instances = (0..instances.len())
        .map(|i| {
            let (group_index, state, host_index, create_revision) = instances[i];
            InstanceView {
                id: name(&format!("i{i}")),
                create_revision,
                instance: instance(
                    &group_at(group_index),
                    STATES[state],
                    HOST_NAMES.get(host_index).copied(),
                ),
            }
        })
        .collect();
    ScaleSnapshot {
        desired: desired_groups(&apps, &revs, &procs, &factors),
        hosts,
        instances,
        unlisted_load: BTreeMap::new(),
    }
}

fn is_live(state: &ScaleSnapshot, host: &Name) -> bool {
    state.hosts.iter().any(|view| &view.name == host)
}

fn active_in<'s>(state: &'s ScaleSnapshot, key: &GroupKey) -> Vec<&'s InstanceView> {
    state
        .instances
        .iter()
        .filter(|view| GroupKey::of(&view.instance) == *key)
        .filter(|view| is_active_state(view.instance.state))
        .filter(|view| {
            view.instance
                .host
                .as_ref()
                .is_none_or(|h| is_live(state, h))
        })
        .collect()
}

fn is_draining(state: &ScaleSnapshot, host: &Name) -> bool {
    state
        .hosts
        .iter()
        .any(|view| &view.name == host && view.draining)
}

/// Whether an active instance is migrating: on a draining host.
fn is_migrating(state: &ScaleSnapshot, view: &InstanceView) -> bool {
    view.instance
        .host
        .as_ref()
        .is_some_and(|h| is_draining(state, h))
}

fn running(views: &[&InstanceView]) -> usize {
    views
        .iter()
        .filter(|view| view.instance.state == InstanceState::Running)
        .count()
}

fn load(state: &ScaleSnapshot, host: &Name) -> u64 {
    let holding = state.instances.iter().filter(|view| {
        holds_slot(view.instance.state) && view.instance.host.as_ref() == Some(host)
    });
    holding.count() as u64
}

fn count_on(active: &[&InstanceView], host: &Name) -> u64 {
    let on_host = active
        .iter()
        .filter(|view| view.instance.host.as_ref() == Some(host));
    on_host.count() as u64
}

fn stop_priority(view: &InstanceView) -> (InstanceState, Reverse<i64>, Reverse<&Name>) {
    (
        view.instance.state,
        Reverse(view.create_revision),
        Reverse(&view.id),
    )
}

fn groups(state: &ScaleSnapshot) -> BTreeSet<GroupKey> {
    let with_instances = state
        .instances
        .iter()
        .map(|view| GroupKey::of(&view.instance));
    state
        .desired
        .keys()
        .cloned()
        .chain(with_instances)
        .collect()
}

fn check_group(
    state: &ScaleSnapshot,
    plan: &ScalePlan,
    applied: &ScaleSnapshot,
    key: &GroupKey,
) -> Result<(), TestCaseError> {
    let desired = state.desired.get(key);
    let replicas = desired.map_or(0, |group| group.replicas as usize);
    let before = active_in(state, key);
    let after = active_in(applied, key);
    let (migrating, settled): (Vec<&InstanceView>, Vec<&InstanceView>) =
        before.iter().partition(|view| is_migrating(state, view));
    let settled_after: Vec<&InstanceView> = after
        .iter()
        .copied()
        .filter(|view| !is_migrating(applied, view))
        .collect();
    let starts: Vec<&Start> = plan.starts.iter().filter(|s| s.group == *key).collect();
    let stops: Vec<&Stop> = plan.stops.iter().filter(|s| s.group == *key).collect();
    let removals: Vec<&Removal> = plan.removals.iter().filter(|r| r.group == *key).collect();
    let unplaceable = plan
        .unplaceable
        .iter()
        .filter(|u| u.group == *key)
        .map(|u| u.count as usize)
        .sum::<usize>();

    prop_assert_eq!(
        starts.len() + unplaceable,
        replicas.saturating_sub(settled.len())
    );
    // Migrating instances leave: those not running at once, running ones as
    // far as the running instances left cover the replicas, all of them
    // when there are more settled instances than replicas.
    let migrating_running = running(&migrating);
    let leaving = match settled.len() > replicas {
        true => migrating.len(),
        false => {
            let covered = running(&settled) + migrating_running;
            migrating.len() - migrating_running
                + covered.saturating_sub(replicas).min(migrating_running)
        }
    };
    prop_assert_eq!(
        stops.len() + removals.len(),
        settled.len().saturating_sub(replicas) + leaving
    );
    prop_assert!(
        settled_after.len() <= replicas,
        "{key}: {} settled > {replicas}",
        settled_after.len()
    );
    prop_assert_eq!(
        settled_after.len(),
        replicas.min(settled.len() + starts.len())
    );
    // A drain never takes running instances below the replicas.
    if settled.len() <= replicas {
        prop_assert!(
            running(&after) >= running(&before).min(replicas),
            "{key}: {} running after, {} before, {replicas} wanted",
            running(&after),
            running(&before)
        );
    }

    // What capacity allows: short only while every host able to run the group is full.
    let eligible: Vec<&HostView> = match desired {
        Some(group) => state.hosts.iter().filter(|h| h.can_run(group)).collect(),
        None => vec![],
    };
    if unplaceable > 0 {
        for host in &eligible {
            prop_assert!(
                load(applied, &host.name) >= u64::from(host.capacity),
                "{key}: {} had room",
                host.name
            );
        }
    }

    for start in &starts {
        prop_assert!(
            eligible.iter().any(|h| h.name == start.host),
            "{key}: {} not eligible",
            start.host
        );
    }

    // Stops and removals are distinct active instances of the group, each
    // list in stop order, a stop addressed to the instance's host and a
    // removal only of an instance with none; every one of them goes before
    // every active instance that is kept.
    let active_view = |instance: &Name| -> Result<&InstanceView, TestCaseError> {
        before
            .iter()
            .copied()
            .find(|view| view.id == *instance)
            .ok_or_else(|| TestCaseError::fail(format!("{key}: stop of {instance}, not active")))
    };
    let mut sent: Vec<&InstanceView> = Vec::new();
    let mut migrated: Vec<&InstanceView> = Vec::new();
    for stop in &stops {
        let view = active_view(&stop.instance)?;
        prop_assert_eq!(Some(&stop.host), view.instance.host.as_ref());
        match is_migrating(state, view) {
            true => migrated.push(view),
            false => sent.push(view),
        }
    }
    let mut unregistered: Vec<&InstanceView> = Vec::new();
    for removal in &removals {
        let view = active_view(&removal.instance)?;
        prop_assert_eq!(view.instance.host.as_ref(), None);
        unregistered.push(view);
    }
    for list in [&sent, &unregistered, &migrated] {
        prop_assert!(
            list.windows(2)
                .all(|w| stop_priority(w[0]) < stop_priority(w[1]))
        );
    }
    let stopped: Vec<&InstanceView> = sent.iter().chain(&unregistered).copied().collect();
    let distinct: BTreeSet<&Name> = stopped.iter().map(|view| &view.id).collect();
    prop_assert_eq!(distinct.len(), stopped.len());
    for kept in settled.iter().filter(|view| !distinct.contains(&view.id)) {
        for gone in &stopped {
            prop_assert!(
                stop_priority(gone) < stop_priority(kept),
                "{key}: kept {} over {}",
                kept.id,
                gone.id
            );
        }
    }

    // Spread: a host that received a start runs at most one more instance of
    // the group than any eligible host that still has room.
    let receivers: BTreeSet<&Name> = starts.iter().map(|start| &start.host).collect();
    for receiver in receivers {
        for roomy in eligible
            .iter()
            .filter(|h| load(applied, &h.name) < u64::from(h.capacity))
        {
            prop_assert!(
                count_on(&after, receiver) <= count_on(&after, &roomy.name) + 1,
                "{key}: {receiver} got a start with {} while {} has {} and room",
                count_on(&after, receiver),
                roomy.name,
                count_on(&after, &roomy.name)
            );
        }
    }

    // Planning the group alone decides the same stops and the same shortfall.
    let alone = plan_group(key, state);
    prop_assert_eq!(alone.stops.iter().collect::<Vec<_>>(), stops);
    prop_assert_eq!(alone.removals.iter().collect::<Vec<_>>(), removals);
    let alone_unplaceable: usize = alone.unplaceable.iter().map(|u| u.count as usize).sum();
    prop_assert_eq!(
        alone.starts.len() + alone_unplaceable,
        starts.len() + unplaceable
    );

    // Listing only the group, with the others' slots as unlisted load, plans
    // exactly what the full snapshot plans for it.
    let mut narrowed = state.clone();
    narrowed
        .instances
        .retain(|view| GroupKey::of(&view.instance) == *key);
    for view in state
        .instances
        .iter()
        .filter(|v| GroupKey::of(&v.instance) != *key)
    {
        if let (Some(host), true) = (&view.instance.host, holds_slot(view.instance.state)) {
            *narrowed.unlisted_load.entry(host.clone()).or_default() += 1;
        }
    }
    prop_assert_eq!(plan_group(key, &narrowed), alone);
    Ok(())
}

fn check_plan(state: &ScaleSnapshot) -> Result<(), TestCaseError> {
    let plan = plan_scale(state);
    let applied = apply(state, &plan);
    for key in groups(state) {
        check_group(state, &plan, &applied, &key)?;
    }

    for host in &state.hosts {
        let capacity = u64::from(host.capacity);
        if load(state, &host.name) >= capacity {
            prop_assert!(plan.starts.iter().all(|start| start.host != host.name));
        } else {
            prop_assert!(
                load(&applied, &host.name) <= capacity,
                "{} overcommitted",
                host.name
            );
        }
    }

    prop_assert!(plan.starts.windows(2).all(|w| w[0].group <= w[1].group));
    prop_assert!(plan.stops.windows(2).all(|w| w[0].group <= w[1].group));
    prop_assert!(plan.removals.windows(2).all(|w| w[0].group <= w[1].group));
    prop_assert!(plan.unplaceable.windows(2).all(|w| w[0].group < w[1].group));
    prop_assert!(plan.unplaceable.iter().all(|u| u.count > 0));

    // What the shell lists once the plan is carried out: the documents of
    // stopped instances unchanged, a stop ticket outstanding for each. A
    // stop ticket counts exactly as the stop it asks for.
    let stop_sent: BTreeSet<&Name> = plan.stops.iter().map(|stop| &stop.instance).collect();
    let mut listed = applied.clone();
    for view in &mut listed.instances {
        if let Some(original) = state.instances.iter().find(|o| o.id == view.id) {
            *view = InstanceView::listed(
                view.id.clone(),
                view.create_revision,
                original.instance.clone(),
                stop_sent.contains(&view.id),
            );
        }
    }
    prop_assert_eq!(&listed, &applied);

    let again = plan_scale(&applied);
    prop_assert!(!again.has_actions(), "second plan acted: {again:?}");
    prop_assert_eq!(&again.unplaceable, &plan.unplaceable);

    let mut shuffled = state.clone();
    shuffled.hosts.reverse();
    shuffled.instances.reverse();
    shuffled.instances.rotate_left(state.instances.len() / 3);
    prop_assert_eq!(plan_scale(&shuffled), plan);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn plans_converge_within_capacity_spread_and_are_idempotent(state in arb_snapshot()) {
        check_plan(&state)?;
    }
}
