//! What the hook tools and the agent say to each other on the tools socket:
//! one request, one reply per connection, each a frame of the provider wire
//! format (a 4-byte big-endian length, then that much UTF-8 JSON), so a
//! tool in any language can take part.
//!
//! ```text
//! {"context":"<id>","tool":"relation-get","unit":"db-0"}   → {"result":"settings","settings":{"host":"db1"}}
//! {"context":"<id>","tool":"relation-set","settings":{"port":"5432"}} → {"result":"done"}
//! {"context":"<id>","tool":"relation-list"}                → {"result":"units","units":["db-0","db-1"]}
//! anything refused                                         → {"result":"error","error":"..."}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A tool's request: the hook context it runs in and what it asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRequest {
    /// The hook's context id (`VISOR_CONTEXT_ID`).
    pub context: String,
    /// What the tool asks.
    #[serde(flatten)]
    pub call: ToolCall,
}

/// What a tool asks of the hook's context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tool", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ToolCall {
    /// `relation-get`: a unit's settings in the hook's relation.
    RelationGet {
        /// The unit; by default the hook's remote unit.
        #[serde(default)]
        unit: Option<String>,
    },
    /// `relation-set`: settings of the hook's unit, written if it succeeds.
    RelationSet {
        /// The settings to set.
        settings: BTreeMap<String, String>,
    },
    /// `relation-list`: the relation's members as the unit sees them.
    RelationList,
}

impl ToolCall {
    /// The tool's name, as hooks call it.
    pub fn tool(&self) -> &'static str {
        match self {
            Self::RelationGet { .. } => "relation-get",
            Self::RelationSet { .. } => "relation-set",
            Self::RelationList => "relation-list",
        }
    }
}

/// The agent's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum ToolReply {
    /// A unit's settings.
    Settings {
        /// Setting → value.
        settings: BTreeMap<String, String>,
    },
    /// Units, in name order.
    Units {
        /// Their names.
        units: Vec<String>,
    },
    /// Done (the settings are buffered).
    Done,
    /// Refused, and why.
    Error {
        /// The reason, for the tool to print.
        error: String,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn requests_and_replies_are_the_documented_json() {
        let request = ToolRequest {
            context: "c1".to_owned(),
            call: ToolCall::RelationGet {
                unit: Some("db-0".to_owned()),
            },
        };
        assert_eq!(
            serde_json::to_value(&request).expect("serializable"),
            json!({"context": "c1", "tool": "relation-get", "unit": "db-0"})
        );
        let list: ToolRequest =
            serde_json::from_value(json!({"context": "c1", "tool": "relation-list"}))
                .expect("a request");
        assert_eq!(list.call, ToolCall::RelationList);
        let get: ToolRequest =
            serde_json::from_value(json!({"context": "c1", "tool": "relation-get"}))
                .expect("the unit is optional");
        assert_eq!(get.call, ToolCall::RelationGet { unit: None });
        assert_eq!(
            serde_json::to_value(ToolReply::Units {
                units: vec!["a".to_owned()]
            })
            .expect("serializable"),
            json!({"result": "units", "units": ["a"]})
        );
        assert_eq!(
            serde_json::to_value(ToolReply::Done).expect("serializable"),
            json!({"result": "done"})
        );
    }
}
