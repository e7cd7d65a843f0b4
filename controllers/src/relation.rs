//! Relations between apps, and who is in them.
//!
//! A relation joins two endpoints (an app, or one proc type of an app), or
//! one endpoint with itself: a peer relation. A unit is an instance; it is in
//! a relation while it is running on a live host and matches an endpoint.
//! Its remote units are the units of the other endpoint — for a peer
//! relation, every other unit of the same endpoint.
//!
//! Invariants: a unit matches at most one endpoint of a relation, because
//! [`Relation::new`] refuses endpoints that overlap; so "the other side" is
//! always well defined. An instance is a unit of a relation exactly while
//! it is running, on a live host, and matches an endpoint
//! ([`relation_units`] is that rule).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Instance, InstanceState};
use crate::name::Name;

/// One side of a relation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// The app whose units take part.
    pub app: Name,
    /// Only this proc type's units, if given; every unit of the app otherwise.
    #[serde(default)]
    pub proc: Option<Name>,
    /// The endpoint's name within the relation, as hooks see it (defaults to
    /// `app` or `app:proc`).
    pub name: String,
}

impl Endpoint {
    /// The endpoint `app` or `app:proc`, named as written (so the two sides
    /// of `web:http web:worker` are told apart).
    pub fn new(app: Name, proc: Option<Name>) -> Self {
        let name = match &proc {
            Some(proc) => format!("{app}:{proc}"),
            None => app.to_string(),
        };
        Self { app, proc, name }
    }

    /// Whether a unit of `app`'s `proc` is on this side.
    pub fn matches(&self, app: &Name, proc: &Name) -> bool {
        self.app == *app && self.proc.as_ref().is_none_or(|own| own == proc)
    }

    /// Whether some unit could match both endpoints.
    fn overlaps(&self, other: &Endpoint) -> bool {
        self.app == other.app
            && match (&self.proc, &other.proc) {
                (Some(mine), Some(theirs)) => mine == theirs,
                _ => true,
            }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.proc {
            Some(proc) => write!(f, "{}:{proc}", self.app),
            None => write!(f, "{}", self.app),
        }
    }
}

/// `/relations/<rel-id>`: a relation between one or two endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    /// Its id, the last segment of its key.
    pub id: Name,
    /// One endpoint (a peer relation) or two.
    pub endpoints: Vec<Endpoint>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// Why a relation cannot be made of the endpoints given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRelation {
    /// Zero, or more than two, endpoints.
    #[error("a relation has one endpoint (a peer relation) or two, not {0}")]
    EndpointCount(usize),
    /// Two endpoints some unit would match both of.
    #[error(
        "endpoints {0} and {1} overlap: a unit would be on both sides (for a peer relation give one endpoint)"
    )]
    Overlap(String, String),
}

impl Relation {
    /// A relation `id` between `endpoints`, checked.
    pub fn new(
        id: Name,
        endpoints: Vec<Endpoint>,
        created_at: DateTime<Utc>,
    ) -> Result<Self, InvalidRelation> {
        let relation = Self {
            id,
            endpoints,
            created_at,
        };
        relation.check()?;
        Ok(relation)
    }

    /// Checks the endpoints, as [`new`](Self::new) does (for documents read
    /// from the registry).
    pub fn check(&self) -> Result<(), InvalidRelation> {
        match self.endpoints.as_slice() {
            [_] => Ok(()),
            [a, b] if a.overlaps(b) => Err(InvalidRelation::Overlap(a.to_string(), b.to_string())),
            [_, _] => Ok(()),
            other => Err(InvalidRelation::EndpointCount(other.len())),
        }
    }

    /// Whether this is a peer relation (one endpoint).
    pub fn is_peer(&self) -> bool {
        self.endpoints.len() == 1
    }

    /// The index of the endpoint a unit of `app`'s `proc` is on, if any.
    pub fn side_of(&self, app: &Name, proc: &Name) -> Option<usize> {
        self.endpoints.iter().position(|e| e.matches(app, proc))
    }

    /// Every app this relation involves.
    pub fn apps(&self) -> impl Iterator<Item = &Name> {
        self.endpoints.iter().map(|e| &e.app)
    }
}

/// `/settings/<rel-id>/<unit>`: what a unit tells the other side of a
/// relation. Its change version is the key's mod revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnitSettings(pub BTreeMap<String, String>);

/// A unit that could be in a relation: a running instance on a live host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unit {
    /// Its instance id.
    pub id: Name,
    /// Its app.
    pub app: Name,
    /// Its proc type.
    pub proc: Name,
}

/// Who takes part in a relation, by side. A unit's remote units are the
/// other side's (a peer relation's only side is its own other side, less the
/// unit itself). Held once per side rather than per unit: a relation of N
/// and N units would otherwise copy 2N² names at every look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    sides: Vec<BTreeSet<Name>>,
    /// Every member → the index of its side.
    side_of: BTreeMap<Name, usize>,
}

impl Members {
    /// The units in the relation, in name order.
    pub fn units(&self) -> impl Iterator<Item = &Name> {
        self.side_of.keys()
    }

    /// Whether `unit` is in the relation.
    pub fn contains(&self, unit: &Name) -> bool {
        self.side_of.contains_key(unit)
    }

    /// How many units are in the relation.
    pub fn len(&self) -> usize {
        self.side_of.len()
    }

    /// Whether no unit is in the relation.
    pub fn is_empty(&self) -> bool {
        self.side_of.is_empty()
    }

    /// The remote units of `unit`, in name order; `None` if it is not in
    /// the relation.
    pub fn remotes<'a>(&'a self, unit: &'a Name) -> Option<impl Iterator<Item = &'a Name>> {
        let side = *self.side_of.get(unit)?;
        let remote = &self.sides[(side + 1) % self.sides.len()];
        Some(remote.iter().filter(move |&other| other != unit))
    }
}

/// Who takes part in `relation`, given every unit that could (running on a
/// live host).
pub fn relation_members<'u>(
    relation: &Relation,
    units: impl IntoIterator<Item = &'u Unit>,
) -> Members {
    let mut members = Members {
        sides: vec![BTreeSet::new(); relation.endpoints.len()],
        side_of: BTreeMap::new(),
    };
    for unit in units {
        if let Some(side) = relation.side_of(&unit.app, &unit.proc) {
            members.sides[side].insert(unit.id.clone());
            members.side_of.insert(unit.id.clone(), side);
        }
    }
    members
}

/// Who takes part in `relation` among `instances` (id and document): those
/// running on a host in `live_hosts` that match one of its endpoints. Any
/// other instance may be given (it is left out), so a caller can pass a
/// superset, such as the running instances of the relation's apps.
pub fn relation_units<'i>(
    relation: &Relation,
    instances: impl IntoIterator<Item = (&'i Name, &'i Instance)>,
    live_hosts: &BTreeSet<Name>,
) -> Members {
    let units: Vec<Unit> = instances
        .into_iter()
        .filter(|(_, i)| i.state == InstanceState::Running)
        .filter(|(_, i)| i.host.as_ref().is_some_and(|h| live_hosts.contains(h)))
        .map(|(id, i)| Unit {
            id: id.clone(),
            app: i.app.clone(),
            proc: i.proc.clone(),
        })
        .collect();
    relation_members(relation, &units)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::name;

    fn endpoint(app: &str, proc: Option<&str>) -> Endpoint {
        Endpoint::new(name(app), proc.map(name))
    }

    fn relation(endpoints: Vec<Endpoint>) -> Result<Relation, InvalidRelation> {
        Relation::new(name("r1"), endpoints, crate::testing::at(0))
    }

    fn unit(id: &str, app: &str, proc: &str) -> Unit {
        Unit {
            id: name(id),
            app: name(app),
            proc: name(proc),
        }
    }

    fn names(ids: &[&str]) -> BTreeSet<Name> {
        ids.iter().copied().map(name).collect()
    }

    fn remotes(members: &Members, unit: &str) -> Option<BTreeSet<Name>> {
        let unit = name(unit);
        Some(members.remotes(&unit)?.cloned().collect())
    }

    #[test]
    fn endpoints_are_one_or_two_that_no_unit_matches_both_of() {
        let table: [(Vec<Endpoint>, Option<&str>); 7] = [
            (vec![endpoint("web", None)], None),
            (vec![endpoint("web", None), endpoint("db", None)], None),
            (
                vec![endpoint("web", Some("a")), endpoint("web", Some("b"))],
                None,
            ),
            (vec![], Some("not 0")),
            (
                vec![
                    endpoint("a", None),
                    endpoint("b", None),
                    endpoint("c", None),
                ],
                Some("not 3"),
            ),
            (
                vec![endpoint("web", None), endpoint("web", Some("b"))],
                Some("web and web:b overlap"),
            ),
            (
                vec![endpoint("web", Some("a")), endpoint("web", Some("a"))],
                Some("web:a and web:a overlap"),
            ),
        ];
        for (endpoints, refused) in table {
            let shown: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
            match (relation(endpoints), refused) {
                (Ok(_), None) => {}
                (Err(error), Some(expected)) => {
                    assert!(error.to_string().contains(expected), "{shown:?}: {error}");
                }
                (outcome, _) => panic!("{shown:?}: unexpected {outcome:?}"),
            }
        }
    }

    #[test]
    fn each_side_sees_the_other_and_units_outside_see_nothing() {
        let relation =
            relation(vec![endpoint("web", None), endpoint("db", Some("sql"))]).expect("valid");
        let units = [
            unit("w1", "web", "http"),
            unit("w2", "web", "worker"),
            unit("d1", "db", "sql"),
            unit("d2", "db", "backup"),
            unit("x1", "other", "http"),
        ];
        let members = relation_members(&relation, &units);
        assert_eq!(members.len(), 3, "{members:?}");
        assert_eq!(remotes(&members, "w1"), Some(names(&["d1"])));
        assert_eq!(remotes(&members, "w2"), Some(names(&["d1"])));
        assert_eq!(remotes(&members, "d1"), Some(names(&["w1", "w2"])));
        assert_eq!(remotes(&members, "d2"), None, "d2's proc is not in it");
        assert!(!members.contains(&name("x1")));
    }

    #[test]
    fn a_peer_sees_every_other_unit_of_its_side_but_not_itself() {
        let relation = relation(vec![endpoint("db", None)]).expect("valid");
        assert!(relation.is_peer());
        let units = [
            unit("a", "db", "sql"),
            unit("b", "db", "sql"),
            unit("c", "db", "x"),
        ];
        let members = relation_members(&relation, &units);
        assert_eq!(remotes(&members, "a"), Some(names(&["b", "c"])));
        assert_eq!(remotes(&members, "c"), Some(names(&["a", "b"])));
        let alone = relation_members(&relation, &units[..1]);
        assert_eq!(remotes(&alone, "a"), Some(names(&[])));
    }

    #[test]
    fn a_relation_document_round_trips_and_defaults_the_proc() {
        let relation =
            relation(vec![endpoint("web", None), endpoint("db", Some("sql"))]).expect("valid");
        let json = serde_json::to_string(&relation).expect("encode");
        assert_eq!(
            serde_json::from_str::<Relation>(&json).expect("decode"),
            relation
        );
        let minimal = r#"{"id":"r1","endpoints":[{"app":"web","name":"web"}],"created_at":"2026-01-01T00:00:00Z","extra":1}"#;
        let read: Relation = serde_json::from_str(minimal).expect("decode");
        assert_eq!(read.endpoints[0].proc, None);
    }
}
