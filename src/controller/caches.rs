//! The controller's view of the registry: one cache per prefix it reads, and
//! the snapshots its decisions are made from.
//!
//! Instances and tickets are indexed (by group, by host, by state), so a
//! reconcile reads what it is about rather than every cached object: planning
//! one group costs that group plus the hosts, a liveness pass the instances of
//! hosts that are gone, a collection the terminal instances.
//!
//! Invariant: a decision is only made from caches that have caught up with
//! this controller's own last write (read-your-writes), so a reconcile never
//! re-decides work it already emitted.

use std::collections::{BTreeMap, BTreeSet};

use tokio_util::sync::CancellationToken;
use visor_controllers::{
    App, Deployment, GroupKey, HookInfo, Host, Instance, InstanceState, Name, ProcType, Relation,
    RelationState, Revision, RolloutStatus, Scale, ScaleSnapshot, ServiceDef, ServiceEndpoint,
    ServiceStatus, Ticket, TicketOp, TrackedEndpoint, UnitSettings, holds_slot,
};

use super::snapshot;
use crate::registry::{Codec, KeyPath, Keys, Kind, Registry, Versioned};
use crate::runtime::cache::{self, CacheMetrics, CacheReader, Index, Indexes};

/// Instances by group.
pub const INSTANCES_BY_GROUP: Index<Instance, GroupKey> =
    Index::new("group", |_, i| Some(GroupKey::of(&i.value)));
/// Instances holding a slot, by the host they hold it on.
pub const SLOTS_BY_HOST: Index<Instance, Name> = Index::new("slot", |_, i| {
    let held = holds_slot(i.value.state);
    i.value.host.clone().filter(|_| held)
});
/// Instances that can still change state, by their host.
pub const UNFINISHED_BY_HOST: Index<Instance, Name> = Index::new("host", |_, i| {
    let unfinished = !i.value.state.is_terminal();
    i.value.host.clone().filter(|_| unfinished)
});
/// Running instances, by app: the units that can be in a relation.
pub const RUNNING_BY_APP: Index<Instance, Name> = Index::new("running", |_, i| {
    (i.value.state == InstanceState::Running).then(|| i.value.app.clone())
});
/// Instances by state.
pub const INSTANCES_BY_STATE: Index<Instance, InstanceState> =
    Index::new("state", |_, i| Some(i.value.state));
/// Tickets by the host they are addressed to.
pub const TICKETS_BY_HOST: Index<Ticket, Name> =
    Index::new("host", |path, _| path.addressee().cloned());
/// The relation a settings, relation state or hook key is of.
fn relation_of<T>(path: &KeyPath, _: &Versioned<T>) -> Option<Name> {
    path.relation().cloned()
}
/// Settings by relation.
pub const SETTINGS_BY_RELATION: Index<UnitSettings, Name> = Index::new("relation", relation_of);
/// Relation states by relation.
pub const STATES_BY_RELATION: Index<RelationState, Name> = Index::new("relation", relation_of);
/// Relation states by unit.
pub const STATES_BY_UNIT: Index<RelationState, Name> =
    Index::new("unit", |path, _| path.unit().cloned());
/// Hooks by relation.
pub const HOOKS_BY_RELATION: Index<HookInfo, Name> = Index::new("relation", relation_of);
/// Stop tickets by the instance they stop.
pub const STOPS_BY_INSTANCE: Index<Ticket, Name> = Index::new("stop", |_, t| {
    (t.value.op == TicketOp::Stop).then(|| t.value.instance.clone())
});

fn start<T>(
    registry: &Registry,
    metrics: &CacheMetrics,
    shutdown: &CancellationToken,
    kind: Kind,
    indexes: Indexes<T>,
) -> CacheReader<T>
where
    T: Codec + Clone + Send + Sync + 'static,
{
    let prefix = registry.keys().kind_prefix(kind);
    // Each loop subscribes to the changes it watches itself.
    let (reader, _changes) = cache::spawn(
        registry.clone(),
        kind,
        prefix,
        indexes,
        metrics.clone(),
        shutdown.clone(),
    );
    reader
}

/// Every cache the controller reads, started together.
#[derive(Debug, Clone)]
pub struct Caches {
    keys: Keys,
    pub apps: CacheReader<App>,
    pub procs: CacheReader<ProcType>,
    pub revs: CacheReader<Revision>,
    pub scales: CacheReader<Scale>,
    pub deployments: CacheReader<Deployment>,
    pub rollouts: CacheReader<RolloutStatus>,
    pub hosts: CacheReader<Host>,
    pub instances: CacheReader<Instance>,
    pub tickets: CacheReader<Ticket>,
    pub relations: CacheReader<Relation>,
    pub settings: CacheReader<UnitSettings>,
    pub states: CacheReader<RelationState>,
    pub hooks: CacheReader<HookInfo>,
    pub services: CacheReader<ServiceDef>,
    pub endpoints: CacheReader<ServiceEndpoint>,
    pub tracked: CacheReader<TrackedEndpoint>,
    pub statuses: CacheReader<ServiceStatus>,
}

impl Caches {
    /// Starts every cache; they stop when `shutdown` is cancelled.
    pub fn spawn(
        registry: &Registry,
        metrics: &CacheMetrics,
        shutdown: &CancellationToken,
    ) -> Self {
        Self {
            keys: registry.keys().clone(),
            apps: start(registry, metrics, shutdown, Kind::App, Indexes::new()),
            procs: start(registry, metrics, shutdown, Kind::Proc, Indexes::new()),
            revs: start(registry, metrics, shutdown, Kind::Rev, Indexes::new()),
            scales: start(registry, metrics, shutdown, Kind::Scale, Indexes::new()),
            deployments: start(
                registry,
                metrics,
                shutdown,
                Kind::Deployment,
                Indexes::new(),
            ),
            rollouts: start(registry, metrics, shutdown, Kind::Rollout, Indexes::new()),
            hosts: start(registry, metrics, shutdown, Kind::Host, Indexes::new()),
            instances: start(
                registry,
                metrics,
                shutdown,
                Kind::Instance,
                Indexes::new()
                    .with(INSTANCES_BY_GROUP)
                    .with(SLOTS_BY_HOST)
                    .with(UNFINISHED_BY_HOST)
                    .with(INSTANCES_BY_STATE)
                    .with(RUNNING_BY_APP),
            ),
            tickets: start(
                registry,
                metrics,
                shutdown,
                Kind::Ticket,
                Indexes::new().with(TICKETS_BY_HOST).with(STOPS_BY_INSTANCE),
            ),
            relations: start(registry, metrics, shutdown, Kind::Relation, Indexes::new()),
            settings: start(
                registry,
                metrics,
                shutdown,
                Kind::Settings,
                Indexes::new().with(SETTINGS_BY_RELATION),
            ),
            states: start(
                registry,
                metrics,
                shutdown,
                Kind::RelationState,
                Indexes::new().with(STATES_BY_RELATION).with(STATES_BY_UNIT),
            ),
            hooks: start(
                registry,
                metrics,
                shutdown,
                Kind::Hook,
                Indexes::new().with(HOOKS_BY_RELATION),
            ),
            services: start(registry, metrics, shutdown, Kind::Service, Indexes::new()),
            endpoints: start(registry, metrics, shutdown, Kind::Endpoint, Indexes::new()),
            tracked: start(registry, metrics, shutdown, Kind::Tracked, Indexes::new()),
            statuses: start(
                registry,
                metrics,
                shutdown,
                Kind::ServiceStatus,
                Indexes::new(),
            ),
        }
    }

    /// The names of live hosts.
    pub fn live_hosts(&self) -> BTreeSet<Name> {
        self.hosts
            .list_map(|path, _| path.name().cloned())
            .into_iter()
            .collect()
    }

    /// The apps with a deployment.
    pub fn deployed_apps(&self) -> BTreeSet<Name> {
        self.deployments
            .list_map(|path, _| path.name().cloned())
            .into_iter()
            .collect()
    }

    /// The group a scale factor's key names.
    pub fn group_of_scale(&self, key: &str) -> Option<GroupKey> {
        snapshot::scale_group(&self.keys, key)
    }

    /// The registry layout the caches hold.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Whether `host` is registered.
    pub fn is_live(&self, host: &Name) -> bool {
        self.hosts.get(&self.keys.host(host)).is_some()
    }

    /// Every (app, rev, proc) with a scale factor or with instances.
    pub fn groups(&self) -> BTreeSet<GroupKey> {
        let mut groups: BTreeSet<GroupKey> =
            snapshot::scale_factors(&self.keys, &self.scales.list().1)
                .into_keys()
                .collect();
        groups.extend(self.instances.index_counts(&INSTANCES_BY_GROUP).into_keys());
        groups
    }

    /// The snapshot one group's scale decision is made from: its own
    /// instances, and the slots every other group holds on each host.
    pub fn group_snapshot(&self, group: &GroupKey) -> ScaleSnapshot {
        let mut desired = snapshot::desired(
            &self.keys,
            self.apps.list().1,
            &self.revs.list().1,
            self.procs.list().1,
            &self.scales.list().1,
        );
        desired.retain(|key, _| key == group);
        let instances: Vec<_> =
            self.instances
                .indexed_map(&INSTANCES_BY_GROUP, group, |path, listed| {
                    let id = path.name()?;
                    let stop_sent = self.tickets.has_indexed(&STOPS_BY_INSTANCE, id);
                    Some(snapshot::instance_view(
                        id.clone(),
                        Versioned::clone(listed),
                        stop_sent,
                    ))
                });
        // Every slot on each host, less those this group's instances hold.
        let mut unlisted_load: BTreeMap<Name, u64> = self
            .instances
            .index_counts(&SLOTS_BY_HOST)
            .into_iter()
            .map(|(host, held)| (host, held as u64))
            .collect();
        for view in &instances {
            if let (Some(host), true) = (&view.instance.host, holds_slot(view.instance.state))
                && let Some(held) = unlisted_load.get_mut(host)
            {
                *held = held.saturating_sub(1);
            }
        }
        ScaleSnapshot {
            desired,
            hosts: snapshot::host_views(&self.keys, &self.hosts.list().1),
            instances,
            unlisted_load,
        }
    }

    /// The unfinished instances assigned to hosts not in `live`.
    pub fn instances_of_hosts_gone(&self, live: &BTreeSet<Name>) -> Vec<Versioned<Instance>> {
        self.instances
            .index_counts(&UNFINISHED_BY_HOST)
            .into_keys()
            .filter(|host| !live.contains(host))
            .flat_map(|host| self.instances.indexed(&UNFINISHED_BY_HOST, &host))
            .collect()
    }

    /// The tickets addressed to hosts not in `live`.
    pub fn tickets_of_hosts_gone(&self, live: &BTreeSet<Name>) -> Vec<Versioned<Ticket>> {
        self.tickets
            .index_counts(&TICKETS_BY_HOST)
            .into_keys()
            .filter(|host| !live.contains(host))
            .flat_map(|host| self.tickets.indexed(&TICKETS_BY_HOST, &host))
            .collect()
    }

    /// The instances in a terminal state.
    pub fn terminal_instances(&self) -> Vec<Versioned<Instance>> {
        InstanceState::ALL
            .into_iter()
            .filter(|state| state.is_terminal())
            .flat_map(|state| self.instances.indexed(&INSTANCES_BY_STATE, &state))
            .collect()
    }

    /// How many instances are in each state.
    pub fn instance_counts(&self) -> BTreeMap<InstanceState, usize> {
        self.instances.index_counts(&INSTANCES_BY_STATE)
    }
}

/// Resolves once every cache has completed its first listing.
pub async fn wait_synced(caches: &Caches) {
    let mut caches = caches.clone();
    caches.apps.wait_synced().await;
    caches.procs.wait_synced().await;
    caches.revs.wait_synced().await;
    caches.scales.wait_synced().await;
    caches.deployments.wait_synced().await;
    caches.rollouts.wait_synced().await;
    caches.hosts.wait_synced().await;
    caches.instances.wait_synced().await;
    caches.tickets.wait_synced().await;
    caches.relations.wait_synced().await;
    caches.settings.wait_synced().await;
    caches.states.wait_synced().await;
    caches.hooks.wait_synced().await;
    caches.services.wait_synced().await;
    caches.endpoints.wait_synced().await;
    caches.tracked.wait_synced().await;
    caches.statuses.wait_synced().await;
}
