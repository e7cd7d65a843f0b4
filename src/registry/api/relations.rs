//! Relations, unit settings, and the relation hooks handed to units.
//!
//! A relation joins apps; each unit (instance) in it publishes settings whose
//! change version is their key's mod revision. The controller hands a unit at
//! most one hook per relation (`/hooks/<unit>/<rel-id>`) and writes what its
//! plans decide here ([`Visor::write_units`]); the agent's side of hooks
//! (reading, acknowledging, recording failures) is in `hooks`.
//!
//! Invariant: the controller only creates hooks and relation states where
//! none exists, so a unit never has two hooks outstanding in one relation.

use chrono::Utc;
use visor_controllers::{
    Endpoint, HandedHook, Name, Relation, RelationState, UnitAction, UnitSettings, UnitWrite,
};

use super::{Visor, name};
use crate::registry::Kind;
use crate::registry::error::{Error, ObjectRef, Result};
use crate::registry::store::{Cascade, Encode, Expected, Listing, Requires, Versioned, Write};

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

pub(super) fn relation_ref(relation: &Name) -> ObjectRef {
    ObjectRef::new(Kind::Relation, &[relation.as_str()])
}

pub(super) fn unit_ref(kind: Kind, relation: &Name, unit: &Name) -> ObjectRef {
    ObjectRef::new(kind, &[relation.as_str(), unit.as_str()])
}

pub(super) fn hook_ref(unit: &Name, relation: &Name) -> ObjectRef {
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
}

/// Operations per transaction etcd allows by default (`--max-txn-ops`),
/// less one for the fence.
const OPS_PER_TXN: usize = 127;

/// A document written in a transaction with others of another kind: the
/// controller's hooks and states, an acknowledgement's state and settings.
pub(super) enum RelationDoc {
    Hook(HandedHook),
    State(RelationState),
    Settings(UnitSettings),
}

impl Encode for RelationDoc {
    fn encode(&self) -> Vec<u8> {
        match self {
            Self::Hook(hook) => hook.encode(),
            Self::State(state) => state.encode(),
            Self::Settings(settings) => settings.encode(),
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
                    value: RelationDoc::Hook(HandedHook::new(hook.clone())),
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
