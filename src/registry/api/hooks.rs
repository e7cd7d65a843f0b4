//! The units' side of relation hooks: listing the hooks handed out, reading
//! one with what running it needs, acknowledging it with the settings it
//! set, and recording the attempts that failed.
//!
//! Invariants: what a hook is run from — the hook, the unit's acknowledged
//! state, the relation — is read at one revision ([`Visor::pending_hook`]),
//! and so is what an acknowledgement compares; an acknowledgement writes the
//! unit's new state, the settings the hook set and the hook's removal in one
//! transaction, or nothing, so a unit's stored state is exactly the effect of
//! the hooks it acknowledged, in order, and settings set by a hook exist only
//! once it took effect; a failure record rewrites the hook as it was read
//! (if it is still so), so it never turns into another hook.

use std::collections::BTreeMap;

use chrono::Utc;
use etcd_client::KeyValue;
use visor_controllers::{HandedHook, HookKind, Name, Relation, RelationState, UnitSettings};

use super::relations::{RelationDoc, hook_ref, relation_ref, unit_ref};
use super::{Visor, name};
use crate::registry::Kind;
use crate::registry::error::{Error, Result};
use crate::registry::store::{
    Codec, Delete, Expected, Listing, Requires, Versioned, Write, decode,
};

/// A unit's outstanding hook and what running it needs, read at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingHook {
    /// The hook, with the failures recorded of it so far.
    pub hook: Versioned<HandedHook>,
    /// The unit's acknowledged state in the relation, if it has one stored.
    pub state: Option<Versioned<RelationState>>,
    /// The relation, while it is registered.
    pub relation: Option<Versioned<Relation>>,
    /// The revision all three were read at.
    pub revision: i64,
}

impl PendingHook {
    /// The state the hook applies to: the stored one, or an empty state of
    /// the hook's relation if none is stored.
    pub fn acknowledged(&self) -> RelationState {
        self.state.as_ref().map_or_else(
            || RelationState::new(self.hook.value.hook.relation_id.as_str()),
            |state| state.value.clone(),
        )
    }
}

/// The object at `kv`, decoded as `kind`, if there is one.
fn decoded<T: Codec>(
    kind: Kind,
    kv: Option<KeyValue>,
    revision: i64,
) -> Result<Option<Versioned<T>>> {
    Ok(kv.map(|kv| decode(kind, &kv, revision)).transpose()?)
}

impl Visor {
    /// Lists the outstanding hooks of `unit`, or of every unit.
    pub async fn hooks(&self, unit: Option<&str>) -> Result<Listing<HandedHook>> {
        let unit = unit.map(|u| name("unit", u)).transpose()?;
        self.registry
            .list_objects(Kind::Hook, &self.keys().hooks(unit.as_ref()))
            .await
    }

    /// Reads the hook `unit` must run next for `relation`.
    pub async fn hook(&self, unit: &str, relation: &str) -> Result<Versioned<HandedHook>> {
        let (unit, relation) = (name("unit", unit)?, name("relation", relation)?);
        self.registry
            .get_object(
                hook_ref(&unit, &relation),
                &self.keys().hook(&unit, &relation),
            )
            .await
    }

    /// Reads the hook `unit` must run next for `relation`, the unit's
    /// acknowledged state and the relation, at one revision (one round
    /// trip): the hook always follows from the state it is read with.
    /// `NotFound` if there is no hook.
    pub async fn pending_hook(&self, unit: &str, relation: &str) -> Result<PendingHook> {
        let (unit, relation) = (name("unit", unit)?, name("relation", relation)?);
        let keys = self.keys();
        let read = [
            keys.hook(&unit, &relation),
            keys.relation_state(&relation, &unit),
            keys.relation(&relation),
        ];
        let read: Vec<&str> = read.iter().map(String::as_str).collect();
        let (found, revision) = self.registry.read_at_one_revision(&read).await?;
        let mut found = found.into_iter();
        let hook = decoded::<HandedHook>(Kind::Hook, found.next().flatten(), revision)?
            .ok_or_else(|| Error::NotFound(hook_ref(&unit, &relation)))?;
        let mut state =
            decoded::<RelationState>(Kind::RelationState, found.next().flatten(), revision)?;
        if let Some(state) = &mut state {
            // The key names the relation; a document may leave it out.
            state.value.relation_id = relation.to_string();
        }
        let relation = decoded::<Relation>(Kind::Relation, found.next().flatten(), revision)?;
        Ok(PendingHook {
            hook,
            state,
            relation,
            revision,
        })
    }

    /// Reads relation `id` as it was at `revision` (`None` if it did not
    /// exist then): what a unit's endpoint was in a relation removed since.
    /// Fails once compaction removed that history.
    pub async fn relation_at(
        &self,
        id: &str,
        revision: i64,
    ) -> Result<Option<Versioned<Relation>>> {
        let id = name("relation", id)?;
        self.registry
            .find_object_at(Kind::Relation, &self.keys().relation(&id), revision)
            .await
    }

    /// Acknowledges the hook `unit` ran for `relation`, setting no settings;
    /// see [`complete_hook_with_settings`](Self::complete_hook_with_settings).
    pub async fn complete_hook(&self, unit: &str, relation: &str) -> Result<RelationState> {
        self.complete_hook_with_settings(unit, relation, &BTreeMap::new())
            .await
    }

    /// Acknowledges the hook `unit` ran for `relation`, with the settings it
    /// set: applies the hook to the unit's stored relation state and, in one
    /// transaction, writes that state, merges `settings` into the unit's
    /// settings in the relation and removes the hook. After `broken` the
    /// state is removed with it: the unit is out of the relation. Returns
    /// the new state.
    ///
    /// The hook, the state and the settings are read at one revision, and
    /// the transaction requires each to be as read (the settings absent or
    /// at their mod revision) and, when settings are set, the relation to
    /// exist. Refused with `InvalidHook` (writing nothing) if the hook does
    /// not follow from the stored state, `InvalidArgument` for settings with
    /// a `broken` hook or an empty setting name; `Conflict` if anything
    /// changed meanwhile; `NotFound` if there is no hook, or settings are
    /// set and the relation is gone.
    pub async fn complete_hook_with_settings(
        &self,
        unit: &str,
        relation: &str,
        settings: &BTreeMap<String, String>,
    ) -> Result<RelationState> {
        let (unit, relation) = (name("unit", unit)?, name("relation", relation)?);
        if settings.keys().any(String::is_empty) {
            return Err(Error::InvalidArgument {
                what: "settings",
                reason: "a setting's name must not be empty".to_owned(),
            });
        }
        let keys = self.keys();
        let hook_key = keys.hook(&unit, &relation);
        let state_key = keys.relation_state(&relation, &unit);
        let settings_key = keys.settings(&relation, &unit);
        let mut read = vec![hook_key.as_str(), state_key.as_str()];
        if !settings.is_empty() {
            read.push(settings_key.as_str());
        }
        let (found, revision) = self.registry.read_at_one_revision(&read).await?;
        let mut found = found.into_iter();
        let hook = decoded::<HandedHook>(Kind::Hook, found.next().flatten(), revision)?
            .ok_or_else(|| Error::NotFound(hook_ref(&unit, &relation)))?;
        let stored =
            decoded::<RelationState>(Kind::RelationState, found.next().flatten(), revision)?;
        let kind = hook.value.hook.kind;
        if kind == HookKind::Broken && !settings.is_empty() {
            return Err(Error::InvalidArgument {
                what: "settings",
                reason: format!(
                    "a broken hook sets no settings: after it unit {unit} is out of relation {relation}"
                ),
            });
        }
        let expected = Expected::Current(stored.as_ref().map(|s| s.mod_revision));
        let mut state = stored
            .map(|s| s.value)
            .unwrap_or_else(|| RelationState::new(relation.as_str()));
        state.relation_id = relation.to_string();
        state
            .apply(&hook.value.hook)
            .map_err(|reason| Error::InvalidHook {
                unit: unit.to_string(),
                relation: relation.to_string(),
                reason: Box::new(reason),
            })?;
        let mut deletes = vec![Delete {
            object: hook_ref(&unit, &relation),
            key: hook_key,
            expected: Some(hook.mod_revision),
        }];
        let state_ref = unit_ref(Kind::RelationState, &relation, &unit);
        let mut writes = match (kind, expected) {
            (HookKind::Broken, Expected::Current(Some(revision))) => {
                deletes.push(Delete {
                    object: state_ref,
                    key: state_key,
                    expected: Some(revision),
                });
                Vec::new()
            }
            // Broken of a state never stored: nothing to remove.
            (HookKind::Broken, _) => Vec::new(),
            _ => vec![Write {
                object: state_ref,
                key: state_key,
                value: RelationDoc::State(state.clone()),
                expected,
            }],
        };
        let mut requires = Vec::new();
        if !settings.is_empty() {
            let kv = found.next().flatten();
            writes.push(merged_settings(
                &relation,
                &unit,
                settings_key,
                kv,
                revision,
                settings,
            ));
            requires.push(Requires {
                key: keys.relation(&relation),
                object: relation_ref(&relation),
            });
        }
        self.registry
            .write_and_delete(writes, &deletes, &[], &requires)
            .await?;
        Ok(state)
    }

    /// Records that running `hook` (as read) failed for `reason`: the hook
    /// is written back with one more failed attempt, if it is unchanged
    /// since it was read. `NotFound` if it was acknowledged or withdrawn
    /// meanwhile, `Conflict` if it changed.
    pub async fn record_hook_failure(
        &self,
        unit: &str,
        relation: &str,
        hook: &Versioned<HandedHook>,
        reason: &str,
    ) -> Result<Versioned<HandedHook>> {
        let (unit, relation) = (name("unit", unit)?, name("relation", relation)?);
        self.registry
            .write_object(
                hook_ref(&unit, &relation),
                &self.keys().hook(&unit, &relation),
                hook.value.failed(reason, Utc::now()),
                Expected::ModRevision(hook.mod_revision),
                &[],
            )
            .await
    }
}

/// The write of `unit`'s settings in `relation` with `assignments` merged
/// into those `kv` holds, compared against `kv` as read: absent, or at its
/// mod revision. A value that does not decode is replaced, as
/// [`Visor::set_settings`] does.
fn merged_settings(
    relation: &Name,
    unit: &Name,
    key: String,
    kv: Option<KeyValue>,
    revision: i64,
    assignments: &BTreeMap<String, String>,
) -> Write<RelationDoc> {
    let expected = Expected::Current(kv.as_ref().map(KeyValue::mod_revision));
    let mut settings = kv
        .and_then(|kv| decode::<UnitSettings>(Kind::Settings, &kv, revision).ok())
        .map(|found| found.value)
        .unwrap_or_default();
    settings
        .0
        .extend(assignments.iter().map(|(k, v)| (k.clone(), v.clone())));
    Write {
        object: unit_ref(Kind::Settings, relation, unit),
        key,
        value: RelationDoc::Settings(settings),
        expected,
    }
}
