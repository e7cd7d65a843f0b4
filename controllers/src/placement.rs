//! Placement: which live host takes one more instance of a group.
//!
//! A host is eligible for a group when it is not draining, offers the group's
//! stack, carries every label the proc type requires (with equal values) and
//! its load is below its capacity. Among eligible hosts the one running the fewest instances of
//! the group wins, then the least loaded, then the first by name, so a group
//! spreads across hosts and the choice is deterministic.
//!
//! Invariant: a placement never takes a host past its capacity, and a host
//! already at or over capacity (capacity shrank, or it was overcommitted by an
//! earlier decision) is given nothing.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use crate::desired::DesiredGroup;
use crate::model::Host;
use crate::name::Name;

/// What placement needs to know about one live host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    /// The host's name, its registry key.
    pub name: Name,
    /// How many instances it can hold at once.
    pub capacity: u32,
    /// The stacks it can run.
    pub stacks: Vec<Name>,
    /// Its labels, which proc types select on.
    pub labels: BTreeMap<String, String>,
    /// Leaving: it takes nothing new, and its instances move elsewhere.
    pub draining: bool,
}

impl HostView {
    /// The view of `host`, registered under `name`.
    pub fn new(name: Name, host: &Host) -> Self {
        Self {
            name,
            capacity: host.capacity,
            stacks: host.stacks.clone(),
            labels: host.labels.clone(),
            draining: host.draining,
        }
    }

    /// Whether this host takes instances of `group` at all: it is not
    /// draining, offers the stack and carries the required labels. Capacity
    /// is not considered.
    pub fn can_run(&self, group: &DesiredGroup) -> bool {
        !self.draining
            && self.stacks.contains(&group.stack)
            && group
                .host_labels
                .iter()
                .all(|(key, value)| self.labels.get(key) == Some(value))
    }
}

/// A live host and the instances it holds, including those placed by the plan
/// being made.
#[derive(Debug)]
struct Slot<'a> {
    host: &'a HostView,
    load: u64,
}

impl Slot<'_> {
    fn has_room(&self) -> bool {
        self.load < u64::from(self.host.capacity)
    }
}

/// The live hosts and their load while a plan is made.
///
/// Load only grows while planning: stopping instances keep their slot until
/// they have exited, so a stop never frees room within the same plan.
#[derive(Debug)]
pub(crate) struct Ledger<'a> {
    slots: BTreeMap<&'a Name, Slot<'a>>,
}

impl<'a> Ledger<'a> {
    /// `hosts` are the live hosts; `occupied` names the host of every instance
    /// that holds a slot, once per instance. Hosts not live are ignored.
    pub(crate) fn new<'o>(
        hosts: &'a [HostView],
        occupied: impl IntoIterator<Item = &'o Name>,
    ) -> Self {
        let mut slots: BTreeMap<&'a Name, Slot<'a>> = hosts
            .iter()
            .map(|host| (&host.name, Slot { host, load: 0 }))
            .collect();
        for host in occupied {
            if let Some(slot) = slots.get_mut(host) {
                slot.load += 1;
            }
        }
        Self { slots }
    }

    /// Adds slots held on live hosts by instances the ledger was not built
    /// from; hosts not live are ignored.
    pub(crate) fn add_load(&mut self, load: &BTreeMap<Name, u64>) {
        for (host, held) in load {
            if let Some(slot) = self.slots.get_mut(host) {
                slot.load += held;
            }
        }
    }

    pub(crate) fn is_live(&self, host: &Name) -> bool {
        self.slots.contains_key(host)
    }

    /// Whether `host` is live and draining.
    pub(crate) fn is_draining(&self, host: &Name) -> bool {
        self.slots.get(host).is_some_and(|slot| slot.host.draining)
    }

    /// Places up to `count` more instances of `group`, one at a time as
    /// `place` (the one-step rule, kept for the tests) would, booking their slots; returns the hosts
    /// in placement order, fewer than `count` when room runs out.
    ///
    /// Only the chosen host's rank changes with each placement, so the
    /// eligible hosts are kept in a heap: a large scale-up costs
    /// O(hosts + count · log hosts) rather than a scan of every host per
    /// instance.
    pub(crate) fn place_many(
        &mut self,
        group: &DesiredGroup,
        group_counts: &mut BTreeMap<Name, u64>,
        count: usize,
    ) -> Vec<&'a Name> {
        let mut ranked: BinaryHeap<Reverse<(u64, u64, &'a Name)>> = self
            .slots
            .values()
            .filter(|slot| slot.has_room() && slot.host.can_run(group))
            .map(|slot| {
                let of_group = group_counts.get(&slot.host.name).copied().unwrap_or(0);
                Reverse((of_group, slot.load, &slot.host.name))
            })
            .collect();
        let mut placed = Vec::with_capacity(count.min(ranked.len() * 4));
        while placed.len() < count {
            let Some(Reverse((of_group, _, host))) = ranked.pop() else {
                break;
            };
            // Every ranked host came from `slots`, which does not change here.
            let Some(slot) = self.slots.get_mut(host) else {
                continue;
            };
            slot.load += 1;
            *group_counts.entry(host.clone()).or_default() += 1;
            placed.push(host);
            if slot.has_room() {
                ranked.push(Reverse((of_group + 1, slot.load, host)));
            }
        }
        placed
    }

    /// Picks the host for one more instance of `group` and books its slot.
    ///
    /// `group_counts` holds, per host, how many active instances of the group it
    /// runs (planned ones included). `None` when no eligible host has room.
    #[cfg(test)]
    pub(crate) fn place(
        &mut self,
        group: &DesiredGroup,
        group_counts: &BTreeMap<Name, u64>,
    ) -> Option<&'a Name> {
        let chosen = self
            .slots
            .values_mut()
            .filter(|slot| slot.has_room() && slot.host.can_run(group))
            .min_by_key(|slot| {
                let host: &'a HostView = slot.host;
                let of_group = group_counts.get(&host.name).copied().unwrap_or(0);
                (of_group, slot.load, &host.name)
            })?;
        chosen.load += 1;
        Some(&chosen.host.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{desired, host, name};

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<Name, u64> {
        pairs.iter().map(|&(h, n)| (name(h), n)).collect()
    }

    #[test]
    fn a_host_runs_a_group_when_it_offers_the_stack_and_every_label() {
        let group = desired(1, "s1", &[("zone", "a"), ("disk", "ssd")]);
        let table = [
            (
                host("h", 1, &["s1"], &[("zone", "a"), ("disk", "ssd")]),
                true,
            ),
            (
                host(
                    "h",
                    1,
                    &["s2", "s1"],
                    &[("zone", "a"), ("disk", "ssd"), ("x", "y")],
                ),
                true,
            ),
            (
                host("h", 1, &["s2"], &[("zone", "a"), ("disk", "ssd")]),
                false,
            ),
            (host("h", 1, &[], &[("zone", "a"), ("disk", "ssd")]), false),
            (host("h", 1, &["s1"], &[("zone", "a")]), false),
            (
                host("h", 1, &["s1"], &[("zone", "b"), ("disk", "ssd")]),
                false,
            ),
            (
                host("h", 0, &["s1"], &[("zone", "a"), ("disk", "ssd")]),
                true,
            ),
        ];
        for (view, expected) in table {
            assert_eq!(view.can_run(&group), expected, "{view:?}");
        }
        assert!(host("h", 1, &["s1"], &[]).can_run(&desired(1, "s1", &[])));
    }

    #[test]
    fn fewest_of_the_group_wins_then_least_loaded_then_first_by_name() {
        let hosts = [
            host("a", 10, &["s1"], &[]),
            host("b", 10, &["s1"], &[]),
            host("c", 10, &["s1"], &[]),
        ];
        let group = desired(1, "s1", &[]);
        let loads = |occupied: &[&str]| {
            let occupied: Vec<Name> = occupied.iter().copied().map(name).collect();
            Ledger::new(&hosts, occupied.iter().collect::<Vec<_>>())
        };

        let mut ledger = loads(&[]);
        assert_eq!(ledger.place(&group, &counts(&[])), Some(&name("a")));

        let mut ledger = loads(&["a", "b", "b"]);
        assert_eq!(ledger.place(&group, &counts(&[])), Some(&name("c")));

        let mut ledger = loads(&["c", "c", "c"]);
        let of_group = counts(&[("a", 1), ("b", 1)]);
        assert_eq!(ledger.place(&group, &of_group), Some(&name("c")));
    }

    #[test]
    fn full_ineligible_and_unknown_hosts_take_nothing() {
        let hosts = [
            host("full", 1, &["s1"], &[]),
            host("wrong-stack", 5, &["s2"], &[]),
            host("zero", 0, &["s1"], &[]),
        ];
        let occupied = [name("full"), name("gone")];
        let mut ledger = Ledger::new(&hosts, &occupied);
        assert!(!ledger.is_live(&name("gone")));
        assert_eq!(ledger.place(&desired(1, "s1", &[]), &counts(&[])), None);
    }

    #[test]
    fn placing_many_chooses_as_placing_one_at_a_time() {
        let hosts = [
            host("a", 3, &["s1"], &[]),
            host("b", 5, &["s1"], &[]),
            host("c", 4, &["s1"], &[]),
            host("d", 9, &["s2"], &[]),
        ];
        let occupied = [name("a"), name("c"), name("c")];
        let group = desired(1, "s1", &[]);
        let start = counts(&[("c", 1)]);

        let mut one_by_one = Ledger::new(&hosts, &occupied);
        let mut of_group = start.clone();
        let mut expected = Vec::new();
        while let Some(host) = one_by_one.place(&group, &of_group) {
            *of_group.entry(host.clone()).or_default() += 1;
            expected.push(host);
        }
        assert_eq!(expected.len(), 9, "every free slot of the stack's hosts");

        let mut at_once = Ledger::new(&hosts, &occupied);
        let mut of_group = start;
        assert_eq!(at_once.place_many(&group, &mut of_group, 100), expected);
        assert_eq!(at_once.place(&group, &of_group), None, "all booked");
    }

    #[test]
    fn load_from_unlisted_instances_counts_on_live_hosts_only() {
        let hosts = [host("a", 2, &["s1"], &[])];
        let mut ledger = Ledger::new(&hosts, []);
        ledger.add_load(&counts(&[("a", 1), ("gone", 7)]));
        let group = desired(1, "s1", &[]);
        assert_eq!(ledger.place_many(&group, &mut counts(&[]), 5), [&name("a")]);
    }

    #[test]
    fn booking_a_slot_counts_toward_capacity() {
        let hosts = [host("a", 2, &["s1"], &[])];
        let mut ledger = Ledger::new(&hosts, []);
        let group = desired(1, "s1", &[]);
        assert_eq!(ledger.place(&group, &counts(&[])), Some(&name("a")));
        assert_eq!(ledger.place(&group, &counts(&[])), Some(&name("a")));
        assert_eq!(ledger.place(&group, &counts(&[])), None);
    }
}
