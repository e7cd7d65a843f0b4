//! Liveness: the instances and tickets a dead host leaves behind.
//!
//! A host is live exactly while its lease-bound registration exists. When it is
//! gone nobody but the controller can finish its work: its unfinished instances
//! are marked lost (so the scale plan replaces them), and tickets addressed to
//! it will never be claimed.
//!
//! Invariants: a terminal instance is never reported (no transition leaves a
//! terminal state), nor one without a host (no host died under it); results are
//! sorted and free of duplicates, so the same state always yields the same list.

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
pub fn plan_liveness<'a>(
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
pub fn orphan_tickets<'a>(
    tickets: impl IntoIterator<Item = &'a TicketRef>,
    live_hosts: &BTreeSet<Name>,
) -> Vec<TicketRef> {
    let orphans: BTreeSet<&TicketRef> = tickets
        .into_iter()
        .filter(|ticket| !live_hosts.contains(&ticket.host))
        .collect();
    orphans.into_iter().cloned().collect()
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
}
