//! Bringing a relation's directory to a given state. The registry's
//! acknowledged state is the authority: an agent that crashed between
//! acknowledging a hook and recording it finds its directory a hook behind,
//! and writes the registry's state over it.
//!
//! Invariant: only the unit files that differ are touched, each replaced
//! whole or removed, so a crash midway leaves a directory that the next
//! `replace` finishes.

use visor_controllers::{Name, RelationState};

use super::{Result, StateDir, StateDirError, UnitRecord, file_name, remove_empty_dir};

impl StateDir {
    /// Makes the directory hold exactly `state`; a broken `state` removes
    /// it. Refused, changing nothing, for a state of another relation, one
    /// naming a unit that cannot name a file, with a negative version, with
    /// a pending `changed` for a unit that is not a member, or broken with
    /// members left.
    pub fn replace(&mut self, state: &RelationState) -> Result<()> {
        let members = self.check(state)?;
        if *state == self.state {
            return Ok(());
        }
        let pending = state.changed_pending.as_deref();
        for (unit, change_version) in &members {
            let record = UnitRecord {
                change_version: *change_version,
                changed_pending: pending == Some(unit.as_str()),
            };
            let was_pending = self.state.changed_pending.as_deref() == Some(unit.as_str());
            let current = self
                .state
                .members
                .get(unit.as_str())
                .map(|&version| UnitRecord {
                    change_version: version,
                    changed_pending: was_pending,
                });
            if current != Some(record) {
                self.write_unit(unit, record)?;
            }
        }
        let gone: Vec<Name> = self
            .state
            .members
            .keys()
            .filter(|unit| !state.members.contains_key(*unit))
            .map(|unit| file_name(unit))
            .collect::<Result<_, _>>()?;
        for unit in &gone {
            self.remove_unit(unit)?;
        }
        if state.broken {
            remove_empty_dir(&self.path)?;
        }
        self.state = state.clone();
        Ok(())
    }

    /// `state`'s members as file names, if `state` may be written here.
    fn check(&self, state: &RelationState) -> Result<Vec<(Name, i64)>> {
        let refuse = |reason: String| StateDirError::InvalidState {
            relation: state.relation_id.clone(),
            reason,
        };
        if state.relation_id != self.state.relation_id {
            return Err(refuse(format!(
                "it is not the state of relation {}",
                self.state.relation_id
            )));
        }
        let mut members = Vec::with_capacity(state.members.len());
        for (unit, &version) in &state.members {
            if version < 0 {
                return Err(refuse(format!(
                    "unit {unit} has negative version {version}"
                )));
            }
            members.push((file_name(unit)?, version));
        }
        if let Some(pending) = &state.changed_pending
            && !state.members.contains_key(pending)
        {
            return Err(refuse(format!(
                "changed is pending for {pending}, which is not a member"
            )));
        }
        if state.broken && !members.is_empty() {
            return Err(refuse("it is broken with members left".to_owned()));
        }
        Ok(members)
    }
}
