//! The registry state scale decisions are made from, assembled from listings
//! — the controller's caches or, for `visor status`, direct reads — so both
//! see exactly what the pure planner sees.

use std::collections::{BTreeMap, BTreeSet};

use visor_controllers::{
    App, GroupKey, Host, HostView, Instance, InstanceState, InstanceView, Name, ProcType, Revision,
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

/// The scale factors by group.
pub fn scale_factors(keys: &Keys, scales: &[Versioned<Scale>]) -> BTreeMap<GroupKey, u32> {
    scales
        .iter()
        .filter_map(|scale| match keys.parse(&scale.key) {
            KeyPath::Scale { app, rev, proc } => {
                let name = |field, value: &str| Name::parse(field, value).ok();
                let group =
                    GroupKey::new(name("app", &app)?, name("rev", &rev)?, name("proc", &proc)?);
                Some((group, scale.value.replicas))
            }
            _ => None,
        })
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

/// The snapshot scale decisions are made from. Instances with an outstanding
/// stop ticket already count as stopping: their stop was emitted.
pub fn scale_snapshot(keys: &Keys, listings: Listings) -> ScaleSnapshot {
    let apps = listings
        .apps
        .into_iter()
        .filter_map(|a| Some((Name::parse("app", a.name()).ok()?, a.value)))
        .collect();
    let revs = listings
        .revs
        .iter()
        .filter_map(|r| app_child(&r.key))
        .collect();
    let procs = listings
        .procs
        .into_iter()
        .filter_map(|p| Some((app_child(&p.key)?, p.value)))
        .collect();
    let desired = desired_groups(&apps, &revs, &procs, &scale_factors(keys, &listings.scales));
    let stopping: BTreeSet<Name> = listings
        .tickets
        .into_iter()
        .filter(|t| t.value.op == TicketOp::Stop)
        .map(|t| t.value.instance)
        .collect();
    let hosts = listings
        .hosts
        .iter()
        .filter_map(|h| Some(HostView::new(Name::parse("host", h.name()).ok()?, &h.value)))
        .collect();
    let instances = listings
        .instances
        .into_iter()
        .filter_map(|i| {
            let id = Name::parse("instance", i.name()).ok()?;
            let mut instance = i.value;
            if stopping.contains(&id) && !instance.state.is_terminal() {
                instance.state = InstanceState::Stopping;
            }
            Some(InstanceView {
                id,
                create_revision: i.create_revision,
                instance,
            })
        })
        .collect();
    ScaleSnapshot {
        desired,
        hosts,
        instances,
    }
}
