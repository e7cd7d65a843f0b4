//! Liveness: the instances and tickets a dead host leaves behind.
//!
//! A host is live exactly while its lease-bound registration exists. When it is
//! gone nobody but the controller can finish its work: its unfinished instances
//! are marked lost (so the scale plan replaces them), and tickets addressed to
//! it will never be claimed.
//!
//! A host is only known gone as of the revision the live hosts were read at:
//! an instance or ticket written after it may name a host registered since,
//! so [`plan_host_loss`] judges only records last changed at or before it.
//!
//! Invariants: a terminal instance is never reported (no transition leaves a
//! terminal state), nor one without a host (no host died under it), nor a
//! record newer than the hosts it is judged against; results are sorted and
//! free of duplicates, so the same state always yields the same list.

use std::collections::BTreeSet;

use crate::model::Instance;
use crate::name::Name;

/// An instance to mark lost: its host is gone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LostInstance {
    /// The instance's id.
    pub instance: Name,
    /// The host that is gone.
    pub host: Name,
}

impl LostInstance {
    /// Why it is lost, in words, as its document records it.
    pub fn reason(&self) -> String {
        format!("host {} is gone", self.host)
    }
}

/// Where a ticket lives: `/tickets/<host>/<ticket>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TicketRef {
    /// The host it is addressed to.
    pub host: Name,
    /// The ticket's id.
    pub ticket: Name,
}

/// Every non-terminal instance assigned to a host that is not in `live_hosts`,
/// sorted by instance id.
fn plan_liveness<'a>(
    instances: impl IntoIterator<Item = (&'a Name, &'a Instance)>,
    live_hosts: &BTreeSet<Name>,
) -> Vec<LostInstance> {
    let lost: BTreeSet<LostInstance> = instances
        .into_iter()
        .filter(|(_, instance)| !instance.state.is_terminal())
        .filter_map(|(id, instance)| {
            let host = instance.host.as_ref()?;
            (!live_hosts.contains(host)).then(|| LostInstance {
                instance: id.clone(),
                host: host.clone(),
            })
        })
        .collect();
    lost.into_iter().collect()
}

/// The tickets addressed to hosts not in `live_hosts`, sorted by host then
/// ticket id.
///
/// Their instances are lost or about to be, and a re-registered host starts
/// from the instances it is assigned, not from old tickets, so they can go.
fn orphan_tickets<'a>(
    tickets: impl IntoIterator<Item = &'a TicketRef>,
    live_hosts: &BTreeSet<Name>,
) -> Vec<TicketRef> {
    let orphans: BTreeSet<&TicketRef> = tickets
        .into_iter()
        .filter(|ticket| !live_hosts.contains(&ticket.host))
        .collect();
    orphans.into_iter().cloned().collect()
}

/// An instance as listed, with the revision it last changed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedInstance<'a> {
    /// Its id.
    pub id: &'a Name,
    /// The revision of its last change.
    pub mod_revision: i64,
    /// Its document.
    pub instance: &'a Instance,
}

/// A ticket as listed, with the revision it last changed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTicket {
    /// Where it lives.
    pub ticket: TicketRef,
    /// The revision of its last change.
    pub mod_revision: i64,
}

/// Everything a liveness pass reads.
#[derive(Debug, Clone)]
pub struct LivenessSnapshot<'a> {
    /// The registered hosts.
    pub live_hosts: &'a BTreeSet<Name>,
    /// The revision `live_hosts` was read at.
    pub hosts_at: i64,
    /// The instances to judge (any superset of the unfinished instances of
    /// hosts not in `live_hosts`).
    pub instances: Vec<ListedInstance<'a>>,
    /// The tickets to judge (any superset of those addressed to hosts not in
    /// `live_hosts`).
    pub tickets: Vec<ListedTicket>,
}

/// What a liveness pass does: mark instances lost, then remove tickets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct LivenessPlan {
    /// Instances to mark lost, by id.
    pub lost: Vec<LostInstance>,
    /// Tickets to remove, by host then id.
    pub orphans: Vec<TicketRef>,
}

/// The instances and tickets the hosts gone leave behind, among the records
/// no newer than the hosts they are judged against.
pub fn plan_host_loss(snapshot: &LivenessSnapshot<'_>) -> LivenessPlan {
    let settled = |mod_revision: i64| mod_revision <= snapshot.hosts_at;
    let instances = snapshot
        .instances
        .iter()
        .filter(|listed| settled(listed.mod_revision))
        .map(|listed| (listed.id, listed.instance));
    let tickets = snapshot
        .tickets
        .iter()
        .filter(|listed| settled(listed.mod_revision))
        .map(|listed| &listed.ticket);
    LivenessPlan {
        lost: plan_liveness(instances, snapshot.live_hosts),
        orphans: orphan_tickets(tickets, snapshot.live_hosts),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::InstanceState::{self, *};
    use crate::testing::{group, instance, name};

    fn live(hosts: &[&str]) -> BTreeSet<Name> {
        hosts.iter().copied().map(name).collect()
    }

    fn instances(rows: &[(&str, InstanceState, Option<&str>)]) -> BTreeMap<Name, Instance> {
        let key = group("web", "v1", "http");
        rows.iter()
            .map(|&(id, state, host)| (name(id), instance(&key, state, host)))
            .collect()
    }

    fn lost(id: &str, host: &str) -> LostInstance {
        LostInstance {
            instance: name(id),
            host: name(host),
        }
    }

    #[test]
    fn unfinished_instances_of_dead_hosts_are_lost() {
        let all = instances(&[
            ("i7", Running, Some("gone")),
            ("i1", Pending, Some("gone")),
            ("i2", Claimed, Some("gone")),
            ("i3", Stopping, Some("gone")),
            ("i4", Exited, Some("gone")),
            ("i5", Failed, Some("gone")),
            ("i6", Lost, Some("gone")),
            ("i8", Running, Some("h1")),
            ("i9", Pending, None),
        ]);
        assert_eq!(
            plan_liveness(&all, &live(&["h1"])),
            [
                lost("i1", "gone"),
                lost("i2", "gone"),
                lost("i3", "gone"),
                lost("i7", "gone"),
            ]
        );
    }

    #[test]
    fn with_every_host_live_nothing_is_lost() {
        let all = instances(&[("i1", Running, Some("h1")), ("i2", Stopping, Some("h2"))]);
        assert!(plan_liveness(&all, &live(&["h1", "h2"])).is_empty());
    }

    #[test]
    fn with_no_host_live_every_assigned_unfinished_instance_is_lost() {
        let all = instances(&[("i1", Running, Some("h1")), ("i2", Claimed, Some("h2"))]);
        assert_eq!(
            plan_liveness(&all, &live(&[])),
            [lost("i1", "h1"), lost("i2", "h2")]
        );
    }

    #[test]
    fn tickets_of_dead_hosts_are_orphans_in_key_order() {
        let ticket = |host: &str, id: &str| TicketRef {
            host: name(host),
            ticket: name(id),
        };
        let tickets = [
            ticket("gone", "t2"),
            ticket("h1", "t1"),
            ticket("also-gone", "t9"),
            ticket("gone", "t1"),
            ticket("gone", "t1"),
        ];
        assert_eq!(
            orphan_tickets(&tickets, &live(&["h1"])),
            [
                ticket("also-gone", "t9"),
                ticket("gone", "t1"),
                ticket("gone", "t2")
            ]
        );
        assert!(orphan_tickets(&tickets, &live(&["h1", "gone", "also-gone"])).is_empty());
        assert!(orphan_tickets(&[], &live(&[])).is_empty());
    }

    fn listed((id, instance): &(Name, Instance), mod_revision: i64) -> ListedInstance<'_> {
        ListedInstance {
            id,
            mod_revision,
            instance,
        }
    }

    #[test]
    fn only_records_no_newer_than_the_hosts_read_are_judged() {
        let key = group("web", "v1", "http");
        let documents = [
            (name("old"), instance(&key, Running, Some("gone"))),
            (name("at"), instance(&key, Claimed, Some("gone"))),
            (name("new"), instance(&key, Pending, Some("gone"))),
            (name("live"), instance(&key, Running, Some("h1"))),
        ];
        let ticket = |host: &str, id: &str, mod_revision| ListedTicket {
            ticket: TicketRef {
                host: name(host),
                ticket: name(id),
            },
            mod_revision,
        };
        let hosts = live(&["h1"]);
        let snapshot = LivenessSnapshot {
            live_hosts: &hosts,
            hosts_at: 10,
            instances: vec![
                listed(&documents[0], 3),
                listed(&documents[1], 10),
                listed(&documents[2], 11),
                listed(&documents[3], 2),
            ],
            tickets: vec![
                ticket("gone", "t1", 10),
                ticket("gone", "t2", 11),
                ticket("h1", "t3", 1),
            ],
        };
        let plan = plan_host_loss(&snapshot);
        assert_eq!(plan.lost, [lost("at", "gone"), lost("old", "gone")]);
        assert_eq!(
            plan.orphans,
            [TicketRef {
                host: name("gone"),
                ticket: name("t1")
            }]
        );
        assert_eq!(plan.lost[0].reason(), "host gone is gone");
        let later = LivenessSnapshot {
            hosts_at: 11,
            ..snapshot
        };
        let plan = plan_host_loss(&later);
        assert_eq!(plan.lost.len(), 3, "{plan:?}");
        assert_eq!(plan.orphans.len(), 2, "{plan:?}");
    }
}
