//! The controller's view of the registry: one cache per prefix it reads, and
//! the snapshots its decisions are made from.
//!
//! Invariant: a decision is only made from caches that have caught up with
//! this controller's own last write (read-your-writes), so a reconcile never
//! re-decides work it already emitted.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use visor_controllers::{
    App, GroupKey, Host, Instance, Name, ProcType, Revision, Scale, ScaleSnapshot, Ticket,
};

use super::snapshot::{self, Listings};
use crate::registry::{Codec, Keys, Kind, Registry};
use crate::runtime::cache::{self, CacheMetrics, CacheReader, Change};

/// How long a reconcile waits for the caches to show its own last write.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

fn start<T>(
    registry: &Registry,
    metrics: &CacheMetrics,
    shutdown: &CancellationToken,
    kind: Kind,
) -> (CacheReader<T>, UnboundedReceiver<Change>)
where
    T: Codec + Clone + Send + Sync + 'static,
{
    let prefix = registry.keys().kind_prefix(kind);
    cache::spawn(
        registry.clone(),
        kind,
        prefix,
        metrics.clone(),
        shutdown.clone(),
    )
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
}

/// The change streams of every cache, to turn into work.
pub struct ChangeStreams {
    pub desired: Vec<UnboundedReceiver<Change>>,
    pub hosts: UnboundedReceiver<Change>,
    pub instances: UnboundedReceiver<Change>,
    pub tickets: UnboundedReceiver<Change>,
}

impl Caches {
    /// Starts every cache; they stop when `shutdown` is cancelled.
    pub fn spawn(
        registry: &Registry,
        metrics: &CacheMetrics,
        shutdown: &CancellationToken,
    ) -> (Self, ChangeStreams) {
        let keys = registry.keys().clone();
        let (apps, apps_rx) = start(registry, metrics, shutdown, Kind::App);
        let (procs, procs_rx) = start(registry, metrics, shutdown, Kind::Proc);
        let (revs, revs_rx) = start(registry, metrics, shutdown, Kind::Rev);
        let (scales, scales_rx) = start(registry, metrics, shutdown, Kind::Scale);
        let (hosts, hosts_rx) = start(registry, metrics, shutdown, Kind::Host);
        let (instances, instances_rx) = start(registry, metrics, shutdown, Kind::Instance);
        let (tickets, tickets_rx) = start(registry, metrics, shutdown, Kind::Ticket);
        let caches = Self {
            keys,
            apps,
            procs,
            revs,
            scales,
            hosts,
            instances,
            tickets,
        };
        let streams = ChangeStreams {
            desired: vec![apps_rx, procs_rx, revs_rx, scales_rx],
            hosts: hosts_rx,
            instances: instances_rx,
            tickets: tickets_rx,
        };
        (caches, streams)
    }

    /// Whether every cache has completed its first listing.
    pub fn synced(&self) -> bool {
        self.apps.is_synced()
            && self.procs.is_synced()
            && self.revs.is_synced()
            && self.scales.is_synced()
            && self.hosts.is_synced()
            && self.instances.is_synced()
            && self.tickets.is_synced()
    }

    /// Waits until every cache has synced, and the instance and ticket caches
    /// have reached the given revisions; false on timeout.
    pub async fn caught_up(&self, instances: i64, tickets: i64) -> bool {
        let deadline = tokio::time::Instant::now() + CATCH_UP_TIMEOUT;
        loop {
            let current =
                self.instances.revision() >= instances && self.tickets.revision() >= tickets;
            if current && self.synced() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The names of live hosts.
    pub fn live_hosts(&self) -> BTreeSet<Name> {
        snapshot::live_hosts(&self.hosts.list().1)
    }

    /// Every (app, rev, proc) with a scale factor or with instances.
    pub fn groups(&self) -> BTreeSet<GroupKey> {
        snapshot::groups(&self.keys, &self.scales.list().1, &self.instances.list().1)
    }

    /// The snapshot scale decisions are made from.
    pub fn scale_snapshot(&self) -> ScaleSnapshot {
        let listings = Listings {
            apps: self.apps.list().1,
            procs: self.procs.list().1,
            revs: self.revs.list().1,
            scales: self.scales.list().1,
            hosts: self.hosts.list().1,
            instances: self.instances.list().1,
            tickets: self.tickets.list().1,
        };
        snapshot::scale_snapshot(&self.keys, listings)
    }
}
