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
    App, GroupKey, HookInfo, Host, Instance, InstanceState, Name, ProcType, Relation,
    RelationState, Revision, Scale, ScaleSnapshot, ServiceDef, ServiceEndpoint, ServiceStatus,
    Ticket, TicketOp, TrackedEndpoint, UnitSettings, holds_slot,
};

use super::snapshot;
use crate::registry::{Codec, Keys, Kind, Registry, Versioned};
use crate::runtime::cache::{self, CacheMetrics, CacheReader, Index};

/// Instances by group, `app/rev/proc` (as [`GroupKey`] displays).
pub const INSTANCES_BY_GROUP: Index<Instance> =
    Index::new("group", |i| Some(GroupKey::of(&i.value).to_string()));
/// Instances holding a slot, by the host they hold it on.
pub const SLOTS_BY_HOST: Index<Instance> = Index::new("slot", |i| {
    let held = holds_slot(i.value.state);
    i.value.host.as_ref().filter(|_| held).map(Name::to_string)
});
/// Instances that can still change state, by their host.
pub const UNFINISHED_BY_HOST: Index<Instance> = Index::new("host", |i| {
    let unfinished = !i.value.state.is_terminal();
    i.value
        .host
        .as_ref()
        .filter(|_| unfinished)
        .map(Name::to_string)
});
/// Running instances, by app: the units that can be in a relation.
pub const RUNNING_BY_APP: Index<Instance> = Index::new("running", |i| {
    (i.value.state == InstanceState::Running).then(|| i.value.app.to_string())
});
/// Instances by state.
pub const INSTANCES_BY_STATE: Index<Instance> =
    Index::new("state", |i| Some(i.value.state.as_str().to_owned()));
/// Tickets by the host they are addressed to (the key's parent segment).
pub const TICKETS_BY_HOST: Index<Ticket> =
    Index::new("host", |t| t.key.rsplit('/').nth(1).map(str::to_owned));
/// The relation a `/settings/<rel>/<unit>` or `/relstate/<rel>/<unit>` key is of.
fn relation_segment<T>(object: &Versioned<T>) -> Option<String> {
    object.key.rsplit('/').nth(1).map(str::to_owned)
}
/// Settings by relation.
pub const SETTINGS_BY_RELATION: Index<UnitSettings> = Index::new("relation", relation_segment);
/// Relation states by relation.
pub const STATES_BY_RELATION: Index<RelationState> = Index::new("relation", relation_segment);
/// Relation states by unit.
pub const STATES_BY_UNIT: Index<RelationState> =
    Index::new("unit", |s| s.key.rsplit('/').next().map(str::to_owned));
/// Hooks by relation (`/hooks/<unit>/<rel>`).
pub const HOOKS_BY_RELATION: Index<HookInfo> =
    Index::new("relation", |h| h.key.rsplit('/').next().map(str::to_owned));
/// Stop tickets by the instance they stop.
pub const STOPS_BY_INSTANCE: Index<Ticket> = Index::new("stop", |t| {
    (t.value.op == TicketOp::Stop).then(|| t.value.instance.to_string())
});

fn start<T>(
    registry: &Registry,
    metrics: &CacheMetrics,
    shutdown: &CancellationToken,
    kind: Kind,
    indexes: &[Index<T>],
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

/// The group an [`INSTANCES_BY_GROUP`] value names.
fn parse_group(value: &str) -> Option<GroupKey> {
    let mut parts = value.split('/');
    let mut next = |field| Name::parse(field, parts.next()?).ok();
    Some(GroupKey::new(next("app")?, next("rev")?, next("proc")?))
}

/// Every cache the controller reads, started together.
#[derive(Debug, Clone)]
pub struct Caches {
    keys: Keys,
    pub apps: CacheReader<App>,
    pub procs: CacheReader<ProcType>,
    pub revs: CacheReader<Revision>,
    pub scales: CacheReader<Scale>,
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
        let instance_indexes = [
            INSTANCES_BY_GROUP,
            SLOTS_BY_HOST,
            UNFINISHED_BY_HOST,
            INSTANCES_BY_STATE,
            RUNNING_BY_APP,
        ];
        let ticket_indexes = [TICKETS_BY_HOST, STOPS_BY_INSTANCE];
        Self {
            keys: registry.keys().clone(),
            apps: start(registry, metrics, shutdown, Kind::App, &[]),
            procs: start(registry, metrics, shutdown, Kind::Proc, &[]),
            revs: start(registry, metrics, shutdown, Kind::Rev, &[]),
            scales: start(registry, metrics, shutdown, Kind::Scale, &[]),
            hosts: start(registry, metrics, shutdown, Kind::Host, &[]),
            instances: start(
                registry,
                metrics,
                shutdown,
                Kind::Instance,
                &instance_indexes,
            ),
            tickets: start(registry, metrics, shutdown, Kind::Ticket, &ticket_indexes),
            relations: start(registry, metrics, shutdown, Kind::Relation, &[]),
            settings: start(
                registry,
                metrics,
                shutdown,
                Kind::Settings,
                &[SETTINGS_BY_RELATION],
            ),
            states: start(
                registry,
                metrics,
                shutdown,
                Kind::RelationState,
                &[STATES_BY_RELATION, STATES_BY_UNIT],
            ),
            hooks: start(
                registry,
                metrics,
                shutdown,
                Kind::Hook,
                &[HOOKS_BY_RELATION],
            ),
            services: start(registry, metrics, shutdown, Kind::Service, &[]),
            endpoints: start(registry, metrics, shutdown, Kind::Endpoint, &[]),
            tracked: start(registry, metrics, shutdown, Kind::Tracked, &[]),
            statuses: start(registry, metrics, shutdown, Kind::ServiceStatus, &[]),
        }
    }

    /// The names of live hosts.
    pub fn live_hosts(&self) -> BTreeSet<Name> {
        snapshot::live_hosts(&self.hosts.list().1)
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
        groups.extend(
            self.instances
                .index_counts(&INSTANCES_BY_GROUP)
                .keys()
                .filter_map(|value| parse_group(value)),
        );
        groups
    }

    /// The instances of `group`, in every state.
    pub fn group_instances(&self, group: &GroupKey) -> Vec<Versioned<Instance>> {
        self.instances
            .indexed(&INSTANCES_BY_GROUP, &group.to_string())
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
        let instances: Vec<_> = self
            .group_instances(group)
            .into_iter()
            .filter_map(|listed| {
                let stop_sent = self.tickets.has_indexed(&STOPS_BY_INSTANCE, listed.name());
                snapshot::instance_view(listed, stop_sent)
            })
            .collect();
        // Every slot on each host, less those this group's instances hold.
        let mut unlisted_load: BTreeMap<Name, u64> = self
            .instances
            .index_counts(&SLOTS_BY_HOST)
            .into_iter()
            .filter_map(|(host, held)| Some((Name::parse("host", &host).ok()?, held as u64)))
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
            hosts: snapshot::host_views(&self.hosts.list().1),
            instances,
            unlisted_load,
        }
    }

    /// The unfinished instances assigned to hosts not in `live`.
    pub fn instances_of_hosts_gone(&self, live: &BTreeSet<Name>) -> Vec<Versioned<Instance>> {
        self.instances
            .index_counts(&UNFINISHED_BY_HOST)
            .into_keys()
            .filter(|host| !live.iter().any(|name| name.as_str() == host))
            .flat_map(|host| self.instances.indexed(&UNFINISHED_BY_HOST, &host))
            .collect()
    }

    /// The tickets addressed to hosts not in `live`.
    pub fn tickets_of_hosts_gone(&self, live: &BTreeSet<Name>) -> Vec<Versioned<Ticket>> {
        self.tickets
            .index_counts(&TICKETS_BY_HOST)
            .into_keys()
            .filter(|host| !live.iter().any(|name| name.as_str() == host))
            .flat_map(|host| self.tickets.indexed(&TICKETS_BY_HOST, &host))
            .collect()
    }

    /// The instances in a terminal state.
    pub fn terminal_instances(&self) -> Vec<Versioned<Instance>> {
        InstanceState::ALL
            .into_iter()
            .filter(|state| state.is_terminal())
            .flat_map(|state| self.instances.indexed(&INSTANCES_BY_STATE, state.as_str()))
            .collect()
    }

    /// How many instances are in each state.
    pub fn instance_counts(&self) -> BTreeMap<String, usize> {
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
