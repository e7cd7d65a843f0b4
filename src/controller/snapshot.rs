//! The registry state scale decisions are made from, assembled from listings
//! — the controller's caches or, for `visor status`, direct reads — so both
//! see exactly what the pure planner sees.

use std::collections::{BTreeMap, BTreeSet};

use visor_controllers::{
    App, DesiredGroup, GroupKey, Host, HostView, Instance, InstanceView, Name, ProcType, Revision,
    Scale, ScaleSnapshot, Ticket, TicketOp, desired_groups,
};

use crate::registry::{KeyPath, Keys, Versioned};

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

/// The (app, child) names of a `<type>/<app>/<child>` key.
fn app_child(key: &str) -> Option<(Name, Name)> {
    let mut parts = key.rsplit('/');
    let child = Name::parse("name", parts.next()?).ok()?;
    let app = Name::parse("app", parts.next()?).ok()?;
    Some((app, child))
}

/// The group a scale factor's key names; `None` for any other key.
pub fn scale_group(keys: &Keys, key: &str) -> Option<GroupKey> {
    match keys.parse(key) {
        KeyPath::Scale { app, rev, proc } => {
            let name = |field, value: &str| Name::parse(field, value).ok();
            Some(GroupKey::new(
                name("app", &app)?,
                name("rev", &rev)?,
                name("proc", &proc)?,
            ))
        }
        _ => None,
    }
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
pub fn live_hosts(hosts: &[Versioned<Host>]) -> BTreeSet<Name> {
    hosts
        .iter()
        .filter_map(|h| Name::parse("host", h.name()).ok())
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
        .filter_map(|a| Some((Name::parse("app", a.name()).ok()?, a.value)))
        .collect();
    let revs = revs.iter().filter_map(|r| app_child(&r.key)).collect();
    let procs = procs
        .into_iter()
        .filter_map(|p| Some((app_child(&p.key)?, p.value)))
        .collect();
    desired_groups(&apps, &revs, &procs, &scale_factors(keys, scales))
}

/// The views of the live hosts listed.
pub fn host_views(hosts: &[Versioned<Host>]) -> Vec<HostView> {
    hosts
        .iter()
        .filter_map(|h| Some(HostView::new(Name::parse("host", h.name()).ok()?, &h.value)))
        .collect()
}

/// The view of a listed instance, `stop_sent` telling whether a stop ticket
/// for it is outstanding (what that counts as is
/// [`InstanceView::listed`]'s to say); `None` if its key is not a valid id.
pub fn instance_view(listed: Versioned<Instance>, stop_sent: bool) -> Option<InstanceView> {
    let id = Name::parse("instance", listed.name()).ok()?;
    Some(InstanceView::listed(
        id,
        listed.create_revision,
        listed.value,
        stop_sent,
    ))
}

/// The full snapshot scale decisions are made from: every instance listed.
pub fn scale_snapshot(keys: &Keys, listings: Listings) -> ScaleSnapshot {
    let stopping: BTreeSet<String> = listings
        .tickets
        .into_iter()
        .filter(|t| t.value.op == TicketOp::Stop)
        .map(|t| t.value.instance.to_string())
        .collect();
    let instances = listings
        .instances
        .into_iter()
        .filter_map(|i| {
            let stop_sent = stopping.contains(i.name());
            instance_view(i, stop_sent)
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
        hosts: host_views(&listings.hosts),
        instances,
        unlisted_load: BTreeMap::new(),
    }
}
