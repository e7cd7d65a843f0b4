//! What a relation hook is: its kind, and the one document a unit is handed.
//!
//! A hook is stored as JSON under `/hooks/<unit>/<rel-id>` while it is
//! outstanding. Invariant: every hook but `broken` names the remote unit it is
//! about, and `broken` names none (it is about the relation as a whole);
//! [`RelationState::validate`](crate::RelationState::validate) refuses a hook that breaks it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The four relation hooks, after Juju's uniter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookKind {
    /// A remote unit entered the relation; a `changed` for it always follows.
    Joined,
    /// A remote unit's settings changed (or it just joined).
    Changed,
    /// A remote unit left the relation.
    Departed,
    /// The relation is gone and every remote unit has departed. Always last.
    Broken,
}

impl HookKind {
    /// Every kind, in the order a remote unit goes through them.
    pub const ALL: [HookKind; 4] = [Self::Joined, Self::Changed, Self::Departed, Self::Broken];

    /// The name used in documents and messages, e.g. `"joined"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::Changed => "changed",
            Self::Departed => "departed",
            Self::Broken => "broken",
        }
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `/hooks/<unit>/<rel-id>`: the hook a unit must run next for a relation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookInfo {
    /// Which hook.
    pub kind: HookKind,
    /// The relation it is for (a registry name).
    pub relation_id: String,
    /// The remote unit it is about; `None` for `broken` only.
    #[serde(default)]
    pub remote_unit: Option<String>,
    /// The mod revision of the remote unit's settings key when the hook was
    /// taken; 0 for `broken`.
    #[serde(default)]
    pub change_version: i64,
}

impl HookInfo {
    /// A `joined` hook for `unit` at settings version `version`.
    pub fn joined(relation_id: impl Into<String>, unit: impl Into<String>, version: i64) -> Self {
        Self::about(HookKind::Joined, relation_id, unit, version)
    }

    /// A `changed` hook for `unit` at settings version `version`.
    pub fn changed(relation_id: impl Into<String>, unit: impl Into<String>, version: i64) -> Self {
        Self::about(HookKind::Changed, relation_id, unit, version)
    }

    /// A `departed` hook for `unit`, whose last known settings version was
    /// `version`.
    pub fn departed(relation_id: impl Into<String>, unit: impl Into<String>, version: i64) -> Self {
        Self::about(HookKind::Departed, relation_id, unit, version)
    }

    /// The `broken` hook of a relation.
    pub fn broken(relation_id: impl Into<String>) -> Self {
        Self {
            kind: HookKind::Broken,
            relation_id: relation_id.into(),
            remote_unit: None,
            change_version: 0,
        }
    }

    fn about(
        kind: HookKind,
        relation_id: impl Into<String>,
        unit: impl Into<String>,
        version: i64,
    ) -> Self {
        Self {
            kind,
            relation_id: relation_id.into(),
            remote_unit: Some(unit.into()),
            change_version: version,
        }
    }
}

impl fmt::Display for HookInfo {
    /// `changed for db-1 at 42 in r1`, `broken of r1`: what logs and errors print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.remote_unit {
            Some(unit) => write!(
                f,
                "{} for {unit} at {} in {}",
                self.kind, self.change_version, self.relation_id
            ),
            None => write!(f, "{} of {}", self.kind, self.relation_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_kinds_are_named_in_lower_case() {
        for kind in HookKind::ALL {
            let json = serde_json::to_string(&kind).expect("serializable");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(
            HookKind::ALL.map(HookKind::as_str),
            ["joined", "changed", "departed", "broken"]
        );
    }

    #[test]
    fn a_hook_is_the_documented_json_and_tolerates_unknown_fields() {
        let hook: HookInfo = serde_json::from_str(
            r#"{"kind":"changed","relation_id":"r1","remote_unit":"db-0","change_version":42,"extra":1}"#,
        )
        .expect("a hook document");
        assert_eq!(hook, HookInfo::changed("r1", "db-0", 42));
        let text = serde_json::to_string(&HookInfo::broken("r1")).expect("serializable");
        assert_eq!(
            text,
            r#"{"kind":"broken","relation_id":"r1","remote_unit":null,"change_version":0}"#
        );
    }

    #[test]
    fn a_hook_displays_as_kind_unit_version_and_relation() {
        assert_eq!(
            HookInfo::changed("r1", "db-0", 4).to_string(),
            "changed for db-0 at 4 in r1"
        );
        assert_eq!(HookInfo::broken("r1").to_string(), "broken of r1");
    }
}
