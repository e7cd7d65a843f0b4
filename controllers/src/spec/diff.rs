//! What applying a spec would change: the spec as registry objects (one per
//! key), and the difference between two specs' objects, field by field.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value, json};

use super::AppSpec;
use crate::name::{EnvKey, Name};

/// One object of an app's spec: what the registry keeps under one key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectId {
    /// The app itself (`/apps/<app>`).
    App,
    /// One env var (`/env/<app>/<key>`).
    Env(EnvKey),
    /// A proc type (`/procs/<app>/<proc>`).
    Proc(Name),
    /// A revision (`/revs/<app>/<rev>`).
    Revision(Name),
    /// Which revision runs at what scale, and how it rolls out
    /// (`/deploys/<app>`).
    Deployment,
    /// A service (`/services/<svc>`).
    Service(Name),
    /// A relation (`/relations/<id>`).
    Relation(Name),
}

impl ObjectId {
    /// The name of a proc, revision, service or relation.
    pub fn name(&self) -> Option<&Name> {
        match self {
            Self::Proc(name)
            | Self::Revision(name)
            | Self::Service(name)
            | Self::Relation(name) => Some(name),
            Self::App | Self::Env(_) | Self::Deployment => None,
        }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::App => f.write_str("app"),
            Self::Env(key) => write!(f, "env {}", key.as_str()),
            Self::Proc(proc) => write!(f, "proc {proc}"),
            Self::Revision(rev) => write!(f, "revision {rev}"),
            Self::Deployment => f.write_str("deployment"),
            Self::Service(service) => write!(f, "service {service}"),
            Self::Relation(id) => write!(f, "relation {id}"),
        }
    }
}

/// One field that differs: its dotted path in the object, and its value
/// before and after (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// The field's path (`limits.memory_mb`); empty for the whole value.
    pub path: String,
    /// Its value now.
    pub before: Option<Value>,
    /// Its value once applied.
    pub after: Option<Value>,
}

/// What applying would do to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create it with this value.
    Create(ObjectId, Value),
    /// Change these fields of it.
    Update(ObjectId, Vec<FieldChange>),
    /// Remove it (it had this value).
    Remove(ObjectId, Value),
}

impl Change {
    /// The object changed.
    pub fn object(&self) -> &ObjectId {
        match self {
            Self::Create(id, _) | Self::Update(id, _) | Self::Remove(id, _) => id,
        }
    }
}

impl AppSpec {
    /// The spec as the objects the registry keeps, each as the JSON the
    /// spec gives it (without what the registry fills in, like creation
    /// times).
    pub fn objects(&self) -> BTreeMap<ObjectId, Value> {
        let mut objects = BTreeMap::new();
        objects.insert(
            ObjectId::App,
            json!({
                "repo_url": self.repo_url,
                "stack": self.stack,
                "deploy_type": self.deploy_type,
            }),
        );
        for (key, value) in &self.env {
            objects.insert(ObjectId::Env(key.clone()), json!(value));
        }
        for (name, proc) in &self.procs {
            objects.insert(ObjectId::Proc(name.clone()), to_value(proc));
        }
        for (name, rev) in &self.revisions {
            objects.insert(ObjectId::Revision(name.clone()), to_value(rev));
        }
        if self.current.is_some() {
            objects.insert(
                ObjectId::Deployment,
                json!({
                    "current": self.current,
                    "scale": self.scale,
                    "rollout": to_value(&self.rollout),
                }),
            );
        }
        for (name, service) in &self.services {
            objects.insert(ObjectId::Service(name.clone()), to_value(service));
        }
        for (id, endpoints) in &self.relations {
            objects.insert(ObjectId::Relation(id.clone()), json!(endpoints));
        }
        objects
            .into_iter()
            .map(|(id, value)| (id, canonical(value)))
            .collect()
    }
}

/// A spec part as JSON. Invariant: every spec type serializes (plain
/// structs, string-keyed maps), so this cannot fail.
fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `value` without empty maps, at any depth: an empty map and an absent one
/// mean the same, so the two must compare equal.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(name, value)| (name, canonical(value)))
                .filter(|(_, value)| !value.as_object().is_some_and(Map::is_empty))
                .collect(),
        ),
        other => other,
    }
}

/// What turns `current` into `desired`, object by object in order: every
/// object `desired` adds or changes, and, with `prune`, every one it no
/// longer names.
pub fn diff(
    current: &BTreeMap<ObjectId, Value>,
    desired: &BTreeMap<ObjectId, Value>,
    prune: bool,
) -> Vec<Change> {
    let ids: BTreeSet<&ObjectId> = current.keys().chain(desired.keys()).collect();
    ids.into_iter()
        .filter_map(|id| match (current.get(id), desired.get(id)) {
            (None, Some(after)) => Some(Change::Create(id.clone(), after.clone())),
            (Some(before), Some(after)) => {
                let mut fields = Vec::new();
                field_changes("", Some(before), Some(after), &mut fields);
                (!fields.is_empty()).then(|| Change::Update(id.clone(), fields))
            }
            (Some(before), None) if prune => Some(Change::Remove(id.clone(), before.clone())),
            _ => None,
        })
        .collect()
}

/// The fields in which `before` and `after` differ, under `path` (`None`:
/// absent): objects field by field, anything else as a whole. An object
/// that appears or goes counts as each of its fields appearing or going.
fn field_changes(
    path: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    out: &mut Vec<FieldChange>,
) {
    let fields = |value: Option<&Value>| match value {
        Some(Value::Object(fields)) => Some(fields.clone()),
        None => Some(Map::new()),
        Some(_) => None,
    };
    match (fields(before), fields(after)) {
        (Some(before_fields), Some(after_fields)) if before.is_some() || after.is_some() => {
            let names: BTreeSet<&String> =
                before_fields.keys().chain(after_fields.keys()).collect();
            for name in names {
                let path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                field_changes(&path, before_fields.get(name), after_fields.get(name), out);
            }
        }
        _ if before != after => out.push(FieldChange {
            path: path.to_owned(),
            before: before.cloned(),
            after: after.cloned(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
