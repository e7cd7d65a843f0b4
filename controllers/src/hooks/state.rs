//! The relation state a unit has acknowledged, and the rules every hook obeys.
//!
//! `/relstate/<rel-id>/<unit>` records, for one (unit, relation), which remote
//! units the unit has seen join and the settings version it last saw of each.
//! The agent writes it in the same transaction that removes the hook it ran,
//! so it is exactly the effect of the hooks delivered so far.
//!
//! Invariants (Juju's uniter guarantees, enforced by [`State::validate`]):
//! a `joined` is followed by a `changed` for the same unit before anything
//! else; `changed` and `departed` only for members, `joined` only for
//! non-members; `broken` only once every member departed, and nothing after
//! it. [`State::apply`] validates first, so a state built by applying hooks
//! never violates them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kind::{HookInfo, HookKind};

/// The acknowledged state of one relation, as seen by one unit.
///
/// A state is *broken* once a `broken` hook was applied; `broken` then holds,
/// `members` is empty and `changed_pending` is `None` for good.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The relation (a registry name). The key carries it too; a document
    /// without it reads as empty, and the reader fills it in from the key.
    #[serde(default)]
    pub relation_id: String,
    /// Remote unit → the settings version last delivered to this unit, for
    /// every remote unit whose `joined` was delivered and `departed` was not.
    #[serde(default)]
    pub members: BTreeMap<String, i64>,
    /// The unit whose `joined` was just delivered: its `changed` must be the
    /// very next hook.
    #[serde(default)]
    pub changed_pending: Option<String>,
    /// Whether `broken` was delivered. Always written (`false` in the
    /// documents of live states); absent reads as `false`.
    #[serde(default)]
    pub broken: bool,
}

impl State {
    /// The state of a relation nothing was delivered for yet.
    pub fn new(relation_id: impl Into<String>) -> Self {
        Self {
            relation_id: relation_id.into(),
            ..Self::default()
        }
    }

    /// Checks that `hook` may be delivered next, given what was acknowledged.
    pub fn validate(&self, hook: &HookInfo) -> Result<(), HookError> {
        let kind = hook.kind;
        if hook.relation_id != self.relation_id {
            return Err(HookError::WrongRelation {
                kind,
                unit: hook.remote_unit.clone(),
                hook_relation: hook.relation_id.clone(),
                state_relation: self.relation_id.clone(),
            });
        }
        if self.broken {
            return Err(HookError::AlreadyBroken {
                kind,
                unit: hook.remote_unit.clone(),
                relation: self.relation_id.clone(),
            });
        }
        let unit = match (kind, &hook.remote_unit) {
            (HookKind::Broken, Some(unit)) => {
                return Err(HookError::UnexpectedRemoteUnit { unit: unit.clone() });
            }
            (HookKind::Broken, None) => None,
            (_, None) => return Err(HookError::MissingRemoteUnit { kind }),
            (_, Some(unit)) => Some(unit),
        };
        let is_owed = |pending: &&String| kind == HookKind::Changed && unit == Some(*pending);
        if let Some(pending) = self.changed_pending.as_ref().filter(|p| !is_owed(p)) {
            return Err(HookError::ChangedPending {
                kind,
                unit: unit.cloned(),
                pending: pending.clone(),
            });
        }
        let Some(unit) = unit else {
            // `broken`: the relation may only break once it is empty.
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(HookError::MembersLeft {
                    relation: self.relation_id.clone(),
                    members: self.members.keys().cloned().collect(),
                })
            };
        };
        match (kind, self.members.contains_key(unit)) {
            (HookKind::Joined, true) => Err(HookError::AlreadyJoined { unit: unit.clone() }),
            (HookKind::Changed | HookKind::Departed, false) => Err(HookError::NotJoined {
                kind,
                unit: unit.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Records that `hook` was delivered and acknowledged; refuses (and
    /// changes nothing) when [`validate`](Self::validate) does.
    pub fn apply(&mut self, hook: &HookInfo) -> Result<(), HookError> {
        self.validate(hook)?;
        let Some(unit) = &hook.remote_unit else {
            self.broken = true;
            return Ok(());
        };
        match hook.kind {
            HookKind::Joined => {
                self.members.insert(unit.clone(), hook.change_version);
                self.changed_pending = Some(unit.clone());
            }
            HookKind::Changed => {
                self.members.insert(unit.clone(), hook.change_version);
                // Validation let it through, so any pending changed was this one.
                self.changed_pending = None;
            }
            HookKind::Departed => {
                self.members.remove(unit);
            }
            // Validation refuses a broken that names a unit.
            HookKind::Broken => {}
        }
        Ok(())
    }
}

/// A hook that may not be delivered next. Each message names the hook's kind
/// and its remote unit (for `broken`, the members left).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The hook is for another relation.
    #[error("{} is for relation {hook_relation}, not {state_relation}", subject(*kind, unit.as_deref()))]
    WrongRelation {
        /// The hook's kind.
        kind: HookKind,
        /// The hook's remote unit.
        unit: Option<String>,
        /// The relation the hook names.
        hook_relation: String,
        /// The relation of the state.
        state_relation: String,
    },
    /// The relation is broken: no hook may follow.
    #[error("{} after relation {relation} was broken", subject(*kind, unit.as_deref()))]
    AlreadyBroken {
        /// The hook's kind.
        kind: HookKind,
        /// The hook's remote unit.
        unit: Option<String>,
        /// The broken relation.
        relation: String,
    },
    /// `broken` while remote units have not departed.
    #[error("broken of relation {relation} while {} not departed", members.join(", "))]
    MembersLeft {
        /// The relation.
        relation: String,
        /// The members left, sorted.
        members: Vec<String>,
    },
    /// A `joined` was delivered; only the `changed` for its unit may follow.
    #[error("{} while changed for {pending} must come next", subject(*kind, unit.as_deref()))]
    ChangedPending {
        /// The hook's kind.
        kind: HookKind,
        /// The hook's remote unit.
        unit: Option<String>,
        /// The unit whose `changed` is owed.
        pending: String,
    },
    /// `joined` for a unit that is a member already.
    #[error("joined for {unit}, which has already joined")]
    AlreadyJoined {
        /// The remote unit.
        unit: String,
    },
    /// `changed` or `departed` for a unit that is not a member.
    #[error("{kind} for {unit}, which has not joined")]
    NotJoined {
        /// The hook's kind.
        kind: HookKind,
        /// The remote unit.
        unit: String,
    },
    /// `joined`, `changed` or `departed` without a remote unit.
    #[error("{kind} for no remote unit")]
    MissingRemoteUnit {
        /// The hook's kind.
        kind: HookKind,
    },
    /// `broken` naming a remote unit: it is about the whole relation.
    #[error("broken for {unit}, but broken names no remote unit")]
    UnexpectedRemoteUnit {
        /// The unit it named.
        unit: String,
    },
}

/// `changed for db-1`, or just `broken`: how messages name a hook.
fn subject(kind: HookKind, unit: Option<&str>) -> String {
    match unit {
        Some(unit) => format!("{kind} for {unit}"),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layouts_state_document_reads_with_the_relation_left_to_the_key() {
        let stored: State = serde_json::from_str(r#"{"members":{"a":3},"changed_pending":"a"}"#)
            .expect("the layout's state document");
        assert_eq!(stored.relation_id, "");
        assert_eq!(stored.members, BTreeMap::from([("a".to_owned(), 3)]));
        assert_eq!(stored.changed_pending.as_deref(), Some("a"));
        assert!(!stored.broken);
    }

    #[test]
    fn every_state_writes_every_field() {
        let mut state = State::new("r1");
        state.members.insert("a".to_owned(), 3);
        let text = serde_json::to_string(&state).expect("serializable");
        assert_eq!(
            text,
            r#"{"relation_id":"r1","members":{"a":3},"changed_pending":null,"broken":false}"#
        );
        let broken = State {
            broken: true,
            ..State::new("r1")
        };
        let text = serde_json::to_string(&broken).expect("serializable");
        assert!(text.contains(r#""broken":true"#), "{text}");
        let read: State = serde_json::from_str(&text).expect("round trip");
        assert_eq!(read, broken);
    }
}
