//! The scale decision: which instances to start and stop so that every
//! (app, rev, proc) group has as many active instances as its scale factor.
//!
//! An instance is *active* while it is pending, claimed or running, on a live
//! host or on no host yet. Instances of dead hosts are not active: the liveness
//! loop marks them lost and this plan replaces them.
//!
//! An active instance on a draining host is *migrating*; the others are
//! *settled*. Only settled instances count toward the scale, so a migrating
//! one is replaced on another host, and it is stopped once the group has
//! enough running without it: the group never runs fewer instances than its
//! replicas because a host drains (Nomad's node drain).
//!
//! Invariants:
//! - a plan never leaves a group with more settled instances than its
//!   replicas, and accounts for every missing one: it is started, or counted
//!   as unplaceable until a host can take it, never dropped;
//! - a running migrating instance is stopped only when the running instances
//!   left would still be at least the replicas (or the group has too many
//!   settled ones), so running ones are given up one for one as replacements
//!   run; one not running yet is stopped at once;
//! - an excess instance placed on a host is stopped by a ticket to that host,
//!   one never placed is removed (no agent would act on a ticket for it);
//! - planning again on the state a plan produces (starts pending on their
//!   hosts, stops stopping, removals gone) yields no action, so a retry or a new
//!   leader working from that state never emits a second start for a slot.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::desired::{DesiredGroup, GroupKey};
use crate::model::{Instance, InstanceState};
use crate::name::Name;
use crate::placement::{HostView, Ledger};

/// An instance as planning counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    /// Its id, the last segment of its key.
    pub id: Name,
    /// The registry revision that created its key; higher is newer.
    pub create_revision: i64,
    /// The instance document, its state as planning counts it.
    pub instance: Instance,
}

impl InstanceView {
    /// The view of instance `id` as listed, with `stop_sent` telling whether
    /// a stop ticket for it is outstanding. Such an instance counts as
    /// stopping whatever state its document still shows: its stop was
    /// emitted, and its host will carry it out (a terminal state stays, as
    /// no ticket moves an instance out of one). Counting it as active would
    /// stop a second instance for the same excess slot.
    pub fn listed(id: Name, create_revision: i64, mut instance: Instance, stop_sent: bool) -> Self {
        if stop_sent && !instance.state.is_terminal() {
            instance.state = InstanceState::Stopping;
        }
        Self {
            id,
            create_revision,
            instance,
        }
    }
}

/// Everything a scale plan reads: desired groups, live hosts, instances and
/// the load of the hosts.
///
/// A full snapshot lists every instance. A snapshot for one group may list
/// only that group's instances and give the slots the others hold on each
/// host in `unlisted_load`, so planning a group costs what the group holds,
/// not what the registry holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScaleSnapshot {
    /// The desired groups, as joined by [`desired_groups`](crate::desired_groups).
    pub desired: BTreeMap<GroupKey, DesiredGroup>,
    /// The live hosts only; names are unique, as registry keys are.
    pub hosts: Vec<HostView>,
    /// The instances planned from, in every state: every instance, or every
    /// instance of the groups planned.
    pub instances: Vec<InstanceView>,
    /// Per host, the slots held by instances not in `instances` (see
    /// [`holds_slot`]).
    pub unlisted_load: BTreeMap<Name, u64>,
}

/// Create a pending instance of `group` on `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The group to grow.
    pub group: GroupKey,
    /// The host that was chosen for it.
    pub host: Name,
}

impl Start {
    /// The pending instance this start creates, as of `now`.
    pub fn instance(&self, now: DateTime<Utc>) -> Instance {
        Instance::pending(
            self.group.app.clone(),
            self.group.rev.clone(),
            self.group.proc.clone(),
            Some(self.host.clone()),
            now,
        )
    }
}

/// Stop an active instance placed on a host: a stop ticket to that host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// The group to shrink.
    pub group: GroupKey,
    /// The instance's id.
    pub instance: Name,
    /// The host that runs it, which the stop ticket is addressed to.
    pub host: Name,
}

/// Remove an active instance that was never placed: no host was assigned
/// it, so no agent would act on a stop ticket; unregistering it is its stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The group to shrink.
    pub group: GroupKey,
    /// The instance's id.
    pub instance: Name,
}

/// Instances of a group that no live host can take right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaceable {
    /// The group short of instances.
    pub group: GroupKey,
    /// How many instances it is short; never zero.
    pub count: u32,
}

/// The ordered actions that bring groups to their scale.
///
/// Everything is ordered by group; starts within a group in placement order,
/// stops and removals in the order they should be carried out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct ScalePlan {
    /// Instances to create.
    pub starts: Vec<Start>,
    /// Placed instances to stop, by a ticket to their host.
    pub stops: Vec<Stop>,
    /// Never-placed instances to unregister instead of stopping.
    pub removals: Vec<Removal>,
    /// Per group, the starts that found no host; they wait, not dropped.
    pub unplaceable: Vec<Unplaceable>,
}

impl ScalePlan {
    /// Whether the plan asks for any write; unplaceable work is not one.
    pub fn has_actions(&self) -> bool {
        !self.starts.is_empty() || !self.stops.is_empty() || !self.removals.is_empty()
    }
}

/// Plans every group that has a desired state or has instances.
///
/// Groups are planned in key order, and each sees the slots booked by the
/// groups before it, so no host is overcommitted by the plan as a whole.
pub fn plan_scale(snapshot: &ScaleSnapshot) -> ScalePlan {
    let mut ledger = ledger(snapshot);
    let mut members: BTreeMap<GroupKey, Vec<&InstanceView>> = BTreeMap::new();
    for view in &snapshot.instances {
        members
            .entry(GroupKey::of(&view.instance))
            .or_default()
            .push(view);
    }
    let groups: BTreeSet<&GroupKey> = snapshot.desired.keys().chain(members.keys()).collect();
    let mut plan = ScalePlan::default();
    for key in groups {
        let group_members = members.get(key).map_or(&[][..], Vec::as_slice);
        plan_into(
            key,
            snapshot.desired.get(key),
            group_members,
            &mut ledger,
            &mut plan,
        );
    }
    plan
}

/// Plans the one group `key`, as the per-key reconcile loop does.
///
/// Other groups' instances count toward host load; a group without a desired
/// state scales to zero.
pub fn plan_group(key: &GroupKey, snapshot: &ScaleSnapshot) -> ScalePlan {
    let mut ledger = ledger(snapshot);
    let members: Vec<&InstanceView> = snapshot
        .instances
        .iter()
        .filter(|view| in_group(&view.instance, key))
        .collect();
    let mut plan = ScalePlan::default();
    plan_into(
        key,
        snapshot.desired.get(key),
        &members,
        &mut ledger,
        &mut plan,
    );
    plan
}

/// How many of group `key`'s instances count toward its scale: pending,
/// claimed or running, on a live host or on none yet.
pub fn active_count(key: &GroupKey, snapshot: &ScaleSnapshot) -> u32 {
    let ledger = ledger(snapshot);
    let active = snapshot
        .instances
        .iter()
        .filter(|view| in_group(&view.instance, key) && is_active(&view.instance, &ledger))
        .count();
    u32::try_from(active).unwrap_or(u32::MAX)
}

/// How many of group `key`'s instances are in `state` on a live host: the
/// running ones a wait for its scale counts as there, the stopping ones it
/// waits to be gone.
pub fn count_in_state(key: &GroupKey, snapshot: &ScaleSnapshot, state: InstanceState) -> u32 {
    let ledger = ledger(snapshot);
    let live = |instance: &Instance| {
        instance
            .host
            .as_ref()
            .is_none_or(|host| ledger.is_live(host))
    };
    let count = snapshot
        .instances
        .iter()
        .filter(|view| {
            let instance = &view.instance;
            in_group(instance, key) && instance.state == state && live(instance)
        })
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Whether an instance in `state` counts toward its group's scale.
pub(crate) fn is_active_state(state: InstanceState) -> bool {
    matches!(
        state,
        InstanceState::Pending | InstanceState::Claimed | InstanceState::Running
    )
}

/// Whether an instance in `state` holds a slot on its host: stopping ones still
/// run until they have exited.
pub fn holds_slot(state: InstanceState) -> bool {
    is_active_state(state) || state == InstanceState::Stopping
}

fn in_group(instance: &Instance, key: &GroupKey) -> bool {
    instance.app == key.app && instance.rev == key.rev && instance.proc == key.proc
}

fn ledger(snapshot: &ScaleSnapshot) -> Ledger<'_> {
    let occupied = snapshot
        .instances
        .iter()
        .filter(|view| holds_slot(view.instance.state))
        .filter_map(|view| view.instance.host.as_ref());
    let mut ledger = Ledger::new(&snapshot.hosts, occupied);
    ledger.add_load(&snapshot.unlisted_load);
    ledger
}

fn is_active(instance: &Instance, ledger: &Ledger<'_>) -> bool {
    is_active_state(instance.state)
        && instance
            .host
            .as_ref()
            .is_none_or(|host| ledger.is_live(host))
}

/// The order instances are stopped in. The derived state order is the
/// life-cycle order, so pending goes before claimed before running: the
/// least work is thrown away first; then the newest.
fn stop_order(view: &InstanceView) -> (InstanceState, Reverse<i64>, Reverse<&Name>) {
    (
        view.instance.state,
        Reverse(view.create_revision),
        Reverse(&view.id),
    )
}

/// Appends the actions for group `key` to `plan`.
fn plan_into(
    key: &GroupKey,
    desired: Option<&DesiredGroup>,
    members: &[&InstanceView],
    ledger: &mut Ledger<'_>,
    plan: &mut ScalePlan,
) {
    let replicas = desired.map_or(0, |group| group.replicas);
    let (mut migrating, mut active): (Vec<&InstanceView>, Vec<&InstanceView>) = members
        .iter()
        .copied()
        .filter(|view| is_active(&view.instance, ledger))
        .partition(|view| {
            view.instance
                .host
                .as_ref()
                .is_some_and(|host| ledger.is_draining(host))
        });
    let active_count = u32::try_from(active.len()).unwrap_or(u32::MAX);

    // Migrating instances that do not run yet go at once (their host starts
    // nothing new); running ones as far as the running instances left still
    // cover the replicas; all of them when there are enough settled ones.
    let running = |views: &[&InstanceView]| {
        views
            .iter()
            .filter(|view| view.instance.state == InstanceState::Running)
            .count()
    };
    let migrating_running = running(&migrating);
    let covered = running(&active) + migrating_running;
    let leaving = match active_count > replicas {
        true => migrating.len(),
        false => {
            let not_running = migrating.len() - migrating_running;
            not_running
                + covered
                    .saturating_sub(replicas as usize)
                    .min(migrating_running)
        }
    };
    // Stop order puts the ones not running first.
    migrating.sort_by(|a, b| stop_order(a).cmp(&stop_order(b)));
    for view in &migrating[..leaving] {
        if let Some(host) = &view.instance.host {
            plan.stops.push(Stop {
                group: key.clone(),
                instance: view.id.clone(),
                host: host.clone(),
            });
        }
    }

    if active_count > replicas {
        active.sort_by(|a, b| stop_order(a).cmp(&stop_order(b)));
        let excess = active.len() - replicas as usize;
        for view in &active[..excess] {
            let (group, instance) = (key.clone(), view.id.clone());
            match &view.instance.host {
                Some(host) => plan.stops.push(Stop {
                    group,
                    instance,
                    host: host.clone(),
                }),
                None => plan.removals.push(Removal { group, instance }),
            }
        }
        return;
    }

    let Some(desired) = desired else { return };
    let missing = replicas - active_count;
    let mut group_counts: BTreeMap<Name, u64> = BTreeMap::new();
    for host in active.iter().filter_map(|view| view.instance.host.as_ref()) {
        *group_counts.entry(host.clone()).or_default() += 1;
    }
    let hosts = ledger.place_many(desired, &mut group_counts, missing as usize);
    let placed = u32::try_from(hosts.len()).unwrap_or(u32::MAX);
    plan.starts.extend(hosts.into_iter().map(|host| Start {
        group: key.clone(),
        host: host.clone(),
    }));
    if placed < missing {
        plan.unplaceable.push(Unplaceable {
            group: key.clone(),
            count: missing - placed,
        });
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
