//! `visor status`: desired against active per (app, rev, proc), what waits for
//! a host, the live hosts and the current leader — computed from the registry
//! with the same pure planner the controller uses.

use serde::Serialize;
use visor_controllers::{GroupProgress, InstanceState, active_count, count_in_state, plan_group};

use super::snapshot::{self, Listings};
use crate::registry::{Codec, Kind, Listing, Result, Visor};
use crate::runtime::election;

/// The whole picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Every group with a scale factor or instances.
    pub groups: Vec<GroupProgress>,
    /// Hosts whose registration is live.
    pub hosts_alive: usize,
    /// The leading controller's identity, if any.
    pub leader: Option<String>,
    /// The registry revision its first read was at: a watch from the next
    /// one misses no change since.
    #[serde(skip)]
    pub read_at: i64,
}

async fn all<T: Codec>(visor: &Visor, kind: Kind) -> Result<Listing<T>> {
    let registry = visor.registry();
    registry
        .list_objects(kind, &registry.keys().kind_prefix(kind))
        .await
}

/// Reads the registry and computes the status.
pub async fn status(visor: &Visor) -> Result<Status> {
    let keys = visor.registry().keys().clone();
    let apps = all(visor, Kind::App).await?;
    let read_at = apps.revision;
    let listings = Listings {
        apps: apps.items,
        procs: all(visor, Kind::Proc).await?.items,
        revs: all(visor, Kind::Rev).await?.items,
        scales: all(visor, Kind::Scale).await?.items,
        hosts: all(visor, Kind::Host).await?.items,
        instances: all(visor, Kind::Instance).await?.items,
        tickets: all(visor, Kind::Ticket).await?.items,
    };
    let groups = snapshot::groups(&keys, &listings.scales, &listings.instances);
    let hosts_alive = snapshot::live_hosts(&keys, &listings.hosts).len();
    let snapshot = snapshot::scale_snapshot(&keys, listings);
    let groups = groups
        .into_iter()
        .map(|group| {
            let unplaceable = plan_group(&group, &snapshot)
                .unplaceable
                .iter()
                .map(|u| u.count)
                .sum();
            GroupProgress {
                desired: snapshot.desired.get(&group).map_or(0, |d| d.replicas),
                active: active_count(&group, &snapshot),
                running: count_in_state(&group, &snapshot, InstanceState::Running),
                stopping: count_in_state(&group, &snapshot, InstanceState::Stopping),
                unplaceable,
                key: group,
            }
        })
        .collect();
    let leader = election::current_leader(visor.registry(), &keys.leader()).await?;
    Ok(Status {
        groups,
        hosts_alive,
        leader,
        read_at,
    })
}
