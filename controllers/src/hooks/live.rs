//! The hooks a live relation owes a unit, as its membership changes.
//!
//! A [`LiveSource`] compares two things per remote unit: what the unit has
//! acknowledged (a [`State`]) and what the relation's membership watch says
//! now (the latest settings version, and whether the remote unit is still in
//! the relation). The hook owed is whatever closes that gap: `joined` for a
//! newcomer, `changed` for a newer version, `departed` for a member that left,
//! and nothing when the gap closed by itself (a newcomer that left before its
//! `joined` ran, a version that came back to the acknowledged one). Repeated
//! changes therefore coalesce, as in Juju's uniter. A hook carries the
//! version the membership shows, or, for a remote unit no longer in it, the
//! version the unit last acknowledged.
//!
//! Order: a `changed` owed after a delivered `joined` always comes first;
//! then every departure, by name (as Juju's live source puts the members a
//! first membership lacks ahead of what it brings); then joins and changes,
//! oldest settings version first, ties by name. A version is the revision the
//! settings were last written at, so remote units are served in the order of
//! their latest changes, and one whose hook was delivered waits behind every
//! unit whose latest change came before its own next one — the turn-taking
//! of Juju's line, kept in the registry rather than in memory.
//!
//! The first change a source receives is the whole membership. Until then the
//! source yields nothing, since it cannot yet tell what is owed.
//!
//! Invariants: what is owed, its order and its versions are a function of the
//! acknowledged state and the current membership alone — so a source rebuilt
//! from the registry at any point (a new leader's) yields exactly what the
//! running one would, and feeding a source only what changed is the same as
//! feeding it the whole membership; every hook yielded is valid against the
//! acknowledged state (given a state the hook rules could produce); and
//! acknowledging may happen after later membership changes without losing
//! them, because the source applies the hook that was actually delivered, not
//! the one it would yield now.

use std::collections::{BTreeMap, BTreeSet};

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

/// A remote unit's place in the line: the derived order is the delivery
/// order (variants first, then fields).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Turn {
    /// A member that left: departures go first, by name.
    Departure { unit: String },
    /// A newcomer, or a member at a new version: by that version, then name.
    Update { version: i64, unit: String },
}

impl Turn {
    fn unit(&self) -> &str {
        match self {
            Self::Departure { unit } | Self::Update { unit, .. } => unit,
        }
    }
}

/// The hooks a live relation owes one unit.
#[derive(Debug, Clone)]
pub struct LiveSource {
    /// What the unit acknowledged.
    state: State,
    /// The membership as last told: remote units in the relation → their
    /// latest settings version.
    present: BTreeMap<String, i64>,
    /// Every unit that owes a hook (a pending `changed` aside), once, in
    /// delivery order.
    line: BTreeSet<Turn>,
    /// Each unit's entry in `line`, so that moving or removing it is
    /// O(log n), which a source fed a hundred remotes at once needs.
    turns: BTreeMap<String, Turn>,
    /// Whether the first (whole-membership) change arrived.
    started: bool,
}

impl LiveSource {
    /// A source that continues from `state`, the acknowledged state as stored
    /// (fresh for a new relation). It yields nothing until the first
    /// [`update`](Self::update).
    pub fn new(state: State) -> Self {
        Self {
            state,
            present: BTreeMap::new(),
            line: BTreeSet::new(),
            turns: BTreeMap::new(),
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
        let first = !self.started;
        self.started = true;
        let mut touched: Vec<String> = Vec::new();
        if first {
            // Members the whole membership lacks left while nobody watched.
            touched.extend(self.state.members.keys().cloned());
        }
        for (unit, version) in change.changed {
            self.present.insert(unit.clone(), version);
            touched.push(unit);
        }
        for unit in change.departed {
            self.present.remove(&unit);
            touched.push(unit);
        }
        for unit in &touched {
            self.touch(unit);
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
        // Only the hook's remote unit changed in the state, so only what it
        // owes can have changed.
        if let Some(unit) = &hook.remote_unit {
            self.touch(unit);
        }
        Ok(())
    }

    /// The kind and version of the hook `unit` owes, apart from a pending
    /// `changed`.
    fn owed(&self, unit: &str) -> Option<(HookKind, i64)> {
        match (self.state.members.get(unit), self.present.get(unit)) {
            (None, Some(&version)) => Some((HookKind::Joined, version)),
            (Some(&delivered), None) => Some((HookKind::Departed, delivered)),
            (Some(&delivered), Some(&version)) if version != delivered => {
                Some((HookKind::Changed, version))
            }
            _ => None,
        }
    }

    /// Files `unit` where what it owes puts it in the line, or out of the
    /// line if it owes nothing.
    fn touch(&mut self, unit: &str) {
        let turn = self.owed(unit).map(|(kind, version)| match kind {
            HookKind::Departed => Turn::Departure {
                unit: unit.to_owned(),
            },
            _ => Turn::Update {
                version,
                unit: unit.to_owned(),
            },
        });
        if self.turns.get(unit) == turn.as_ref() {
            return;
        }
        if let Some(old) = self.turns.remove(unit) {
            self.line.remove(&old);
        }
        if let Some(turn) = turn {
            self.line.insert(turn.clone());
            self.turns.insert(unit.to_owned(), turn);
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
            let version = self
                .present
                .get(unit)
                .or_else(|| self.state.members.get(unit))
                .copied()
                .unwrap_or_default();
            return Some(HookInfo::changed(relation, unit.as_str(), version));
        }
        let unit = self.line.first()?.unit();
        let (kind, version) = self.owed(unit)?;
        Some(HookInfo {
            kind,
            relation_id: relation.to_owned(),
            remote_unit: Some(unit.to_owned()),
            change_version: version,
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
