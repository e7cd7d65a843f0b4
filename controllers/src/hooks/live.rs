//! The hooks a live relation owes a unit, as its membership changes.
//!
//! A [`LiveSource`] compares two things per remote unit: what the unit has
//! acknowledged (a [`State`]) and what the relation's membership watch says
//! now (the latest settings version, and whether the remote unit is still in
//! the relation). The hook owed is whatever closes that gap: `joined` for a
//! newcomer, `changed` for a newer version, `departed` for a member that left,
//! and nothing when the gap closed by itself (a newcomer that left before its
//! `joined` ran, a version that came back to the acknowledged one). Repeated
//! changes therefore coalesce, and every hook carries the latest version known
//! when it is taken, as in Juju's uniter.
//!
//! Order: a `changed` owed after a delivered `joined` always comes first.
//! Otherwise units wait in a line in the order they came to owe a hook (within
//! one membership change: changed units by name, then departed ones by name);
//! a unit keeps its place while the hook it owes changes kind (a `departed`
//! replaces a queued `changed` in place), leaves the line when it owes nothing
//! any more, and goes to the back once a hook of its was delivered.
//!
//! The first change a source receives is the whole membership: stored members
//! it does not list departed while nobody watched, and they go first (after a
//! stored pending `changed`). Until then the source yields nothing, since it
//! cannot yet tell what is owed.
//!
//! Invariants: every hook yielded is valid against the acknowledged state
//! (given a state the hook rules could produce); acknowledging may happen
//! after later membership changes without losing them, because the source
//! applies the hook that was actually delivered, not the one it would yield
//! now.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::kind::{HookInfo, HookKind};
use super::source::HookSource;
use super::state::{HookError, State};

/// One event of a relation's membership watch.
///
/// Within one change `departed` wins over `changed`: a unit in both is gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipChange {
    /// Remote units in the relation → their latest settings version (the mod
    /// revision of `/settings/<rel-id>/<unit>`). In a source's first change:
    /// every member.
    pub changed: BTreeMap<String, i64>,
    /// Remote units that left the relation.
    pub departed: BTreeSet<String>,
}

impl MembershipChange {
    /// Adds `unit`, in the relation at settings version `version`.
    #[must_use]
    pub fn change(mut self, unit: impl Into<String>, version: i64) -> Self {
        self.changed.insert(unit.into(), version);
        self
    }

    /// Adds `unit`, gone from the relation.
    #[must_use]
    pub fn depart(mut self, unit: impl Into<String>) -> Self {
        self.departed.insert(unit.into());
        self
    }
}

/// What the membership watch last said of a remote unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Remote {
    /// Its latest settings version.
    version: i64,
    /// Whether it is in the relation.
    present: bool,
}

/// The hooks a live relation owes one unit.
#[derive(Debug, Clone)]
pub struct LiveSource {
    /// What the unit acknowledged.
    state: State,
    /// Every remote unit that is a member of `state` or present, and those
    /// that left since the last acknowledgement. A member's record outlives
    /// its departure until the `departed` is acknowledged, and a newcomer's
    /// until the next acknowledgement (its `joined` may be the hook
    /// outstanding), so hooks still carry their unit's last version.
    remotes: BTreeMap<String, Remote>,
    /// The units that owe a hook, each once, in line order.
    line: VecDeque<String>,
    /// The units in `line`, always exactly: asking whether a unit is in line
    /// is O(log n), which a source fed a hundred remotes at once needs.
    queued: BTreeSet<String>,
    /// Whether the first (whole-membership) change arrived.
    started: bool,
}

impl LiveSource {
    /// A source that continues from `state`, the acknowledged state as stored
    /// (fresh for a new relation). It yields nothing until the first
    /// [`update`](Self::update).
    pub fn new(state: State) -> Self {
        // Until the first change says otherwise, members are assumed present
        // at the versions they were delivered at.
        let remotes = state
            .members
            .iter()
            .map(|(unit, &version)| {
                let remote = Remote {
                    version,
                    present: true,
                };
                (unit.clone(), remote)
            })
            .collect();
        Self {
            state,
            remotes,
            line: VecDeque::new(),
            queued: BTreeSet::new(),
            started: false,
        }
    }

    /// The acknowledged state, including every hook acknowledged through
    /// this source.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Whether the first change arrived, so [`next`](HookSource::next) means
    /// what it says.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Takes in a membership change; the first one must be the whole
    /// membership.
    pub fn update(&mut self, change: MembershipChange) {
        if !self.started {
            self.started = true;
            let missing: Vec<String> = self
                .remotes
                .keys()
                .filter(|unit| !change.changed.contains_key(*unit))
                .cloned()
                .collect();
            for unit in &missing {
                self.leave(unit);
            }
        }
        for (unit, version) in change.changed {
            let remote = self.remotes.entry(unit.clone()).or_insert(Remote {
                version,
                present: true,
            });
            remote.version = version;
            remote.present = true;
            self.touch(&unit);
        }
        for unit in &change.departed {
            self.leave(unit);
        }
    }

    /// Records that `hook` was delivered and acknowledged; refuses (changing
    /// nothing) a hook the state refuses.
    ///
    /// `hook` is the hook that was taken, which may differ from what
    /// [`next`](HookSource::next) yields now if membership changed meanwhile;
    /// whatever that change makes owed stays owed.
    pub fn acknowledge(&mut self, hook: &HookInfo) -> Result<(), HookError> {
        self.state.apply(hook)?;
        if let Some(unit) = &hook.remote_unit {
            if self.state.members.contains_key(unit) {
                // A member must be known; only a source rebuilt while the
                // hook ran can have no record of it.
                self.remotes.entry(unit.clone()).or_insert(Remote {
                    version: hook.change_version,
                    present: false,
                });
            }
            self.unqueue(unit);
            self.touch(unit);
        }
        // At most one hook is outstanding, and it was just acknowledged: a
        // unit that left without being a member can be the subject of no hook
        // taken from now on.
        let members = &self.state.members;
        self.remotes
            .retain(|unit, remote| remote.present || members.contains_key(unit));
        Ok(())
    }

    /// The kind and version of the hook `unit` owes, apart from a pending
    /// `changed`.
    fn owed(&self, unit: &str) -> Option<(HookKind, i64)> {
        let remote = self.remotes.get(unit)?;
        match self.state.members.get(unit) {
            None if remote.present => Some((HookKind::Joined, remote.version)),
            Some(_) if !remote.present => Some((HookKind::Departed, remote.version)),
            Some(&delivered) if remote.version != delivered => {
                Some((HookKind::Changed, remote.version))
            }
            _ => None,
        }
    }

    /// Marks `unit` as gone from the relation, if it was ever known.
    fn leave(&mut self, unit: &str) {
        if let Some(remote) = self.remotes.get_mut(unit) {
            remote.present = false;
            self.touch(unit);
        }
    }

    /// Puts `unit` at the back of the line if it owes a hook and is not in
    /// line yet, or out of the line if it owes none.
    fn touch(&mut self, unit: &str) {
        let in_line = self.queued.contains(unit);
        match self.owed(unit) {
            Some(_) if !in_line => {
                self.line.push_back(unit.to_owned());
                self.queued.insert(unit.to_owned());
            }
            None if in_line => self.unqueue(unit),
            _ => {}
        }
    }

    /// Takes `unit` out of the line, if it is in it.
    fn unqueue(&mut self, unit: &str) {
        if self.queued.remove(unit) {
            self.line.retain(|queued| queued != unit);
        }
    }
}

impl HookSource for LiveSource {
    fn next(&self) -> Option<HookInfo> {
        if !self.started || self.state.broken {
            return None;
        }
        let relation = self.state.relation_id.as_str();
        if let Some(unit) = &self.state.changed_pending {
            // The latest version known, even if the unit has left since.
            let version = self.remotes.get(unit).map_or_else(
                || self.state.members.get(unit).copied().unwrap_or_default(),
                |remote| remote.version,
            );
            return Some(HookInfo::changed(relation, unit.as_str(), version));
        }
        self.line.iter().find_map(|unit| {
            let (kind, version) = self.owed(unit)?;
            Some(HookInfo {
                kind,
                relation_id: relation.to_owned(),
                remote_unit: Some(unit.clone()),
                change_version: version,
            })
        })
    }

    fn pop(&mut self) {
        let Some(hook) = self.next() else {
            return;
        };
        // `next` yields only hooks the state accepts (the property tests hold
        // it to that), so this is refused only for a stored state the hook
        // rules cannot produce, e.g. a pending changed for a non-member.
        let acknowledged = self.acknowledge(&hook);
        debug_assert!(
            acknowledged.is_ok(),
            "a live source yielded a hook its state refuses: {acknowledged:?}"
        );
    }
}
