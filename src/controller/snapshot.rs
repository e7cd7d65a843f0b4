//! The registry state scale decisions are made from, assembled from listings
//! — the controller's caches or, for `visor status`, direct reads — so both
//! see exactly what the pure planner sees.

use std::collections::{BTreeMap, BTreeSet};

use visor_controllers::{
    App, DesiredGroup, GroupKey, Host, HostView, Instance, InstanceView, Name, ProcType, Revision,
    Scale, ScaleSnapshot, Ticket, TicketOp, desired_groups,
};

use crate::registry::{Keys, Versioned};

/// Listings of everything a scale decision reads.
#[derive(Debug, Clone, Default)]
pub struct Listings {
    pub apps: Vec<Versioned<App>>,
    pub procs: Vec<Versioned<ProcType>>,
    pub revs: Vec<Versioned<Revision>>,
    pub scales: Vec<Versioned<Scale>>,
    pub hosts: Vec<Versioned<Host>>,
    pub instances: Vec<Versioned<Instance>>,
    pub tickets: Vec<Versioned<Ticket>>,
}

/// The group a scale factor's key names; `None` for any other key.
pub fn scale_group(keys: &Keys, key: &str) -> Option<GroupKey> {
    keys.parse(key).group()
}

/// The scale factors by group.
pub fn scale_factors(keys: &Keys, scales: &[Versioned<Scale>]) -> BTreeMap<GroupKey, u32> {
    scales
        .iter()
        .filter_map(|scale| Some((scale_group(keys, &scale.key)?, scale.value.replicas)))
        .collect()
}

/// Every (app, rev, proc) with a scale factor or with instances.
pub fn groups(
    keys: &Keys,
    scales: &[Versioned<Scale>],
    instances: &[Versioned<Instance>],
) -> BTreeSet<GroupKey> {
    let mut groups: BTreeSet<GroupKey> = scale_factors(keys, scales).into_keys().collect();
    groups.extend(instances.iter().map(|i| GroupKey::of(&i.value)));
    groups
}

/// The names of the hosts listed (only live hosts have keys).
pub fn live_hosts(keys: &Keys, hosts: &[Versioned<Host>]) -> BTreeSet<Name> {
    hosts
        .iter()
        .filter_map(|h| keys.parse(&h.key).name().cloned())
        .collect()
}

/// The desired groups the scale factors, apps, revisions and proc types make.
pub fn desired(
    keys: &Keys,
    apps: Vec<Versioned<App>>,
    revs: &[Versioned<Revision>],
    procs: Vec<Versioned<ProcType>>,
    scales: &[Versioned<Scale>],
) -> BTreeMap<GroupKey, DesiredGroup> {
    let apps = apps
        .into_iter()
        .filter_map(|a| Some((keys.parse(&a.key).name()?.clone(), a.value)))
        .collect();
    let revs = revs
        .iter()
        .filter_map(|r| keys.parse(&r.key).app_child())
        .collect();
    let procs = procs
        .into_iter()
        .filter_map(|p| Some((keys.parse(&p.key).app_child()?, p.value)))
        .collect();
    desired_groups(&apps, &revs, &procs, &scale_factors(keys, scales))
}

/// The views of the live hosts listed.
pub fn host_views(keys: &Keys, hosts: &[Versioned<Host>]) -> Vec<HostView> {
    hosts
        .iter()
        .filter_map(|h| Some(HostView::new(keys.parse(&h.key).name()?.clone(), &h.value)))
        .collect()
}

/// The view of instance `id`, as listed, `stop_sent` telling whether a stop
/// ticket for it is outstanding (what that counts as is
/// [`InstanceView::listed`]'s to say).
pub fn instance_view(id: Name, listed: Versioned<Instance>, stop_sent: bool) -> InstanceView {
    InstanceView::listed(id, listed.create_revision, listed.value, stop_sent)
}

/// The full snapshot scale decisions are made from: every instance listed.
pub fn scale_snapshot(keys: &Keys, listings: Listings) -> ScaleSnapshot {
    let stopping: BTreeSet<Name> = listings
        .tickets
        .into_iter()
        .filter(|t| t.value.op == TicketOp::Stop)
        .map(|t| t.value.instance)
        .collect();
    let instances = listings
        .instances
        .into_iter()
        .filter_map(|i| {
            let id = keys.parse(&i.key).name()?.clone();
            let stop_sent = stopping.contains(&id);
            Some(instance_view(id, i, stop_sent))
        })
        .collect();
    ScaleSnapshot {
        desired: desired(
            keys,
            listings.apps,
            &listings.revs,
            listings.procs,
            &listings.scales,
        ),
        hosts: host_views(keys, &listings.hosts),
        instances,
        unlisted_load: BTreeMap::new(),
    }
}
