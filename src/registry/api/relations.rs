//! Relations, unit settings, and the relation hooks handed to units.
//!
//! A relation joins apps; each unit (instance) in it publishes settings whose
//! change version is their key's mod revision. The controller hands a unit at
//! most one hook per relation (`/hooks/<unit>/<rel-id>`); the unit's agent
//! acknowledges it with [`Visor::complete_hook`], which writes the unit's new
//! relation state and removes the hook in one transaction.
//!
//! Invariant: a unit's stored relation state is exactly the effect of the
//! hooks it acknowledged, in order — an acknowledgement is refused unless the
//! hook follows from the stored state, and it commits only if neither the
//! hook nor the state changed since they were read.

use chrono::Utc;
use visor_controllers::{
    Endpoint, HookInfo, HookKind, Name, Relation, RelationState, UnitAction, UnitSettings,
    UnitWrite,
};

use super::{Visor, name};
use crate::registry::Kind;
use crate::registry::error::{Error, ObjectRef, Result};
use crate::registry::store::{
    Cascade, Delete, Encode, Expected, Listing, Requires, Versioned, Write,
};

/// An endpoint as given by a user: `app` or `app:proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// The app.
    pub app: String,
    /// The proc type, if only its units take part.
    pub proc: Option<String>,
}

impl std::str::FromStr for EndpointSpec {
    type Err = Error;

    /// Parses `app` or `app:proc`, validating both names.
    fn from_str(spec: &str) -> Result<Self> {
        let (app, proc) = match spec.split_once(':') {
            Some((app, proc)) => (app, Some(proc)),
            None => (spec, None),
        };
        name("app", app)?;
        if let Some(proc) = proc {
            name("proc", proc)?;
        }
        Ok(Self {
            app: app.to_owned(),
            proc: proc.map(str::to_owned),
        })
    }
}

impl EndpointSpec {
    /// The relation side this names, its names validated.
    pub fn endpoint(&self) -> Result<Endpoint> {
        let proc = self.proc.as_deref().map(|p| name("proc", p)).transpose()?;
        Ok(Endpoint::new(name("app", &self.app)?, proc))
    }
}

fn relation_ref(relation: &Name) -> ObjectRef {
    ObjectRef::new(Kind::Relation, &[relation.as_str()])
}

fn unit_ref(kind: Kind, relation: &Name, unit: &Name) -> ObjectRef {
    ObjectRef::new(kind, &[relation.as_str(), unit.as_str()])
}

fn hook_ref(unit: &Name, relation: &Name) -> ObjectRef {
    ObjectRef::new(Kind::Hook, &[unit.as_str(), relation.as_str()])
}

impl Visor {
    /// Adds relation `id` between one endpoint (a peer relation) or two; every
    /// app must be registered.
    pub async fn add_relation(
        &self,
        id: &str,
        endpoints: &[EndpointSpec],
    ) -> Result<Versioned<Relation>> {
        let id = name("relation", id)?;
        let endpoints = endpoints
            .iter()
            .map(EndpointSpec::endpoint)
            .collect::<Result<Vec<_>>>()?;
        let relation = Relation::new(id.clone(), endpoints, Utc::now()).map_err(|error| {
            Error::InvalidArgument {
                what: "relation",
                reason: error.to_string(),
            }
        })?;
        let requires: Vec<Requires> = relation
            .apps()
            .map(|app| Requires {
                key: self.keys().app(app),
                object: ObjectRef::new(Kind::App, &[app.as_str()]),
            })
            .collect();
        self.registry
            .write_object(
                relation_ref(&id),
                &self.keys().relation(&id),
                relation,
                Expected::Absent { lease: None },
                &requires,
            )
            .await
    }

    /// Removes relation `id`. Its units' hooks and states are the
    /// controller's to wind down (departed for each member, then broken).
    pub async fn remove_relation(&self, id: &str) -> Result<i64> {
        let id = name("relation", id)?;
        self.registry
            .delete_object(relation_ref(&id), &self.keys().relation(&id), None, &[])
            .await
    }

    /// Reads relation `id`.
    pub async fn relation(&self, id: &str) -> Result<Versioned<Relation>> {
        let id = name("relation", id)?;
        self.registry
            .get_object(relation_ref(&id), &self.keys().relation(&id))
            .await
    }

    /// Lists every relation.
    pub async fn relations(&self) -> Result<Listing<Relation>> {
        self.registry
            .list_objects(Kind::Relation, &self.keys().kind_prefix(Kind::Relation))
            .await
    }

    /// Sets `assignments` in `unit`'s settings of `relation`, all or nothing,
    /// against the settings as read just before (a concurrent write is a
    /// `Conflict`). The relation must exist.
    pub async fn set_settings(
        &self,
        relation: &str,
        unit: &str,
        assignments: &[(String, String)],
    ) -> Result<Versioned<UnitSettings>> {
        let (relation, unit) = (name("relation", relation)?, name("unit", unit)?);
        let object = unit_ref(Kind::Settings, &relation, &unit);
        let key = self.keys().settings(&relation, &unit);
        let (mut settings, expected) = match self
            .registry
            .find_object::<UnitSettings>(Kind::Settings, &key)
            .await
        {
            Ok((found, _)) => {
                let expected = Expected::Current(found.as_ref().map(|f| f.mod_revision));
                (found.map(|f| f.value).unwrap_or_default(), expected)
            }
            // A value that does not decode is replaced, as env and scale "set" do.
            Err(Error::Malformed { .. }) => (
                UnitSettings::default(),
                self.registry.expect_current(&key).await?,
            ),
            Err(error) => return Err(error),
        };
        for (setting, value) in assignments {
            settings.0.insert(setting.clone(), value.clone());
        }
        let requires = [Requires {
            key: self.keys().relation(&relation),
            object: relation_ref(&relation),
        }];
        self.registry
            .write_object(object, &key, settings, expected, &requires)
            .await
    }

    /// Reads `unit`'s settings of `relation`.
    pub async fn settings(&self, relation: &str, unit: &str) -> Result<Versioned<UnitSettings>> {
        let (relation, unit) = (name("relation", relation)?, name("unit", unit)?);
        self.registry
            .get_object(
                unit_ref(Kind::Settings, &relation, &unit),
                &self.keys().settings(&relation, &unit),
            )
            .await
    }

    /// Reads the relation state `unit` acknowledged in `relation`.
    pub async fn relation_state(
        &self,
        relation: &str,
        unit: &str,
    ) -> Result<Versioned<RelationState>> {
        let (relation, unit) = (name("relation", relation)?, name("unit", unit)?);
        let mut state: Versioned<RelationState> = self
            .registry
            .get_object(
                unit_ref(Kind::RelationState, &relation, &unit),
                &self.keys().relation_state(&relation, &unit),
            )
            .await?;
        // The key names the relation; a document may leave it out.
        state.value.relation_id = relation.to_string();
        Ok(state)
    }

    /// Lists the outstanding hooks of `unit`, or of every unit.
    pub async fn hooks(&self, unit: Option<&str>) -> Result<Listing<HookInfo>> {
        let unit = unit.map(|u| name("unit", u)).transpose()?;
        self.registry
            .list_objects(Kind::Hook, &self.keys().hooks(unit.as_ref()))
            .await
    }

    /// Reads the hook `unit` must run next for `relation`.
    pub async fn hook(&self, unit: &str, relation: &str) -> Result<Versioned<HookInfo>> {
        let (unit, relation) = (name("unit", unit)?, name("relation", relation)?);
        self.registry
            .get_object(
                hook_ref(&unit, &relation),
                &self.keys().hook(&unit, &relation),
            )
            .await
    }

    /// Acknowledges the hook `unit` ran for `relation`: applies it to the
    /// unit's stored relation state and, in one transaction, writes that
    /// state and removes the hook. After `broken` the state is removed with
    /// it: the unit is out of the relation. Returns the new state.
    ///
    /// Refused with `InvalidHook` (writing nothing) if the hook does not
    /// follow from the stored state; `Conflict` if either changed meanwhile;
    /// `NotFound` if there is no hook.
    pub async fn complete_hook(&self, unit: &str, relation: &str) -> Result<RelationState> {
        let (unit, relation) = (name("unit", unit)?, name("relation", relation)?);
        let hook_key = self.keys().hook(&unit, &relation);
        let state_key = self.keys().relation_state(&relation, &unit);
        // One round trip for both, at one revision.
        let (hook, stored) = self
            .registry
            .find_two::<HookInfo, RelationState>(
                (Kind::Hook, &hook_key),
                (Kind::RelationState, &state_key),
            )
            .await?;
        let hook = hook.ok_or_else(|| Error::NotFound(hook_ref(&unit, &relation)))?;
        let expected = Expected::Current(stored.as_ref().map(|s| s.mod_revision));
        let mut state = stored
            .map(|s| s.value)
            .unwrap_or_else(|| RelationState::new(relation.as_str()));
        state.relation_id = relation.to_string();
        state
            .apply(&hook.value)
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
        let writes = match (hook.value.kind, expected) {
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
                value: state.clone(),
                expected,
            }],
        };
        self.registry
            .write_and_delete(writes, &deletes, &[], &[])
            .await?;
        Ok(state)
    }
}

/// Operations per transaction etcd allows by default (`--max-txn-ops`),
/// less one for the fence.
const OPS_PER_TXN: usize = 127;

/// A document the controller writes for a relation.
enum RelationDoc {
    Hook(HookInfo),
    State(RelationState),
}

impl Encode for RelationDoc {
    fn encode(&self) -> Vec<u8> {
        match self {
            Self::Hook(hook) => hook.encode(),
            Self::State(state) => state.encode(),
        }
    }
}

impl Visor {
    /// Writes what the controller's plan for `relation` decided for its
    /// units, in as few transactions as etcd allows; hooks and states are
    /// only created, never overwritten. Returns the revision of the last
    /// transaction (0 if there was nothing to write).
    pub async fn write_units(&self, relation: &Name, writes: &[UnitWrite]) -> Result<i64> {
        let mut revision = 0;
        let mut puts: Vec<Write<RelationDoc>> = Vec::new();
        let mut removals: Vec<Cascade> = Vec::new();
        let mut ops = 0;
        for write in writes {
            let (mut unit_puts, unit_removals) = self.unit_ops(relation, write);
            if ops + unit_puts.len() + unit_removals.len() > OPS_PER_TXN {
                revision = self
                    .commit_units(&mut puts, &mut removals)
                    .await?
                    .max(revision);
                ops = 0;
            }
            ops += unit_puts.len() + unit_removals.len();
            puts.append(&mut unit_puts);
            removals.extend(unit_removals);
        }
        if ops > 0 {
            revision = self
                .commit_units(&mut puts, &mut removals)
                .await?
                .max(revision);
        }
        Ok(revision)
    }

    /// Removes the settings every unit left in `relation`, once it is gone.
    pub async fn clear_relation(&self, relation: &Name) -> Result<i64> {
        let cascade = [
            Cascade::Prefix(self.keys().relation_settings(relation)),
            Cascade::Prefix(self.keys().relation_states(relation)),
        ];
        self.registry.delete_objects(Vec::new(), &cascade).await
    }

    fn unit_ops(
        &self,
        relation: &Name,
        write: &UnitWrite,
    ) -> (Vec<Write<RelationDoc>>, Vec<Cascade>) {
        let keys = self.keys();
        let state = |relation: &Name, unit: &Name| Write {
            object: unit_ref(Kind::RelationState, relation, unit),
            key: keys.relation_state(relation, unit),
            value: RelationDoc::State(RelationState::new(relation.as_str())),
            expected: Expected::Absent { lease: None },
        };
        let unit = &write.unit;
        match &write.action {
            UnitAction::Hand { hook, enter } => {
                let mut puts = vec![Write {
                    object: hook_ref(unit, relation),
                    key: keys.hook(unit, relation),
                    value: RelationDoc::Hook(hook.clone()),
                    expected: Expected::Absent { lease: None },
                }];
                if *enter {
                    puts.push(state(relation, unit));
                }
                (puts, Vec::new())
            }
            UnitAction::Enter => (vec![state(relation, unit)], Vec::new()),
            UnitAction::Withdraw => (
                Vec::new(),
                vec![
                    Cascade::Key(keys.hook(unit, relation)),
                    Cascade::Key(keys.relation_state(relation, unit)),
                    Cascade::Key(keys.settings(relation, unit)),
                ],
            ),
        }
    }

    async fn commit_units(
        &self,
        puts: &mut Vec<Write<RelationDoc>>,
        removals: &mut Vec<Cascade>,
    ) -> Result<i64> {
        let puts = std::mem::take(puts);
        let removals = std::mem::take(removals);
        if puts.is_empty() {
            return self.registry.delete_objects(Vec::new(), &removals).await;
        }
        let written = self
            .registry
            .write_and_delete(puts, &[], &removals, &[])
            .await?;
        Ok(written.first().map_or(0, |w| w.revision))
    }
}
