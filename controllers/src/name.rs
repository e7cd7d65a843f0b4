//! Validated names for registry objects.
//!
//! Names become etcd key segments, and on a host file names (an instance's
//! directory, a revision's cache), so they must never contain `/` or anything
//! a shell, a URL or a DNS label would trip over, and never start with `.`
//! (`.`, `..`, hidden files) or `-` (an option to a command). A [`Name`] can only be built
//! through validation, so holding one proves it is safe to put in a key.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted name: a DNS label.
const MAX_NAME_LEN: usize = 63;
/// Longest accepted environment variable key.
const MAX_ENV_KEY_LEN: usize = 255;

/// A name that failed validation, naming the field, the value and the rule broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} name {value:?}: {reason}")]
pub struct InvalidName {
    /// Which field was being validated (`app`, `rev`, `proc`, `host`, ...).
    pub field: &'static str,
    /// The rejected value, verbatim.
    pub value: String,
    /// The rule it broke.
    pub reason: &'static str,
}

/// A validated object name: 1–63 chars of lower-case ASCII letters, digits, `-` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    /// Validates `value` as the name of `field`.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, InvalidName> {
        let invalid = |reason| InvalidName {
            field,
            value: value.to_owned(),
            reason,
        };
        if value.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if value.len() > MAX_NAME_LEN {
            return Err(invalid("must be at most 63 characters"));
        }
        let allowed =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        if !value.chars().all(allowed) {
            return Err(invalid(
                "may contain only lower-case letters, digits, '-' and '.'",
            ));
        }
        if value.starts_with(['.', '-']) {
            return Err(invalid("must start with a lower-case letter or a digit"));
        }
        Ok(Self(value.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A name orders and compares as its string, so maps and sets of names can
/// be searched with a `&str`.
impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Name> for String {
    fn from(name: Name) -> Self {
        name.0
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Name::parse("name", &value).map_err(|invalid| {
            serde::de::Error::custom(format!("invalid name {value:?}: {}", invalid.reason))
        })
    }
}

impl schemars::JsonSchema for Name {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Name".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A name: 1-63 lower-case letters, digits, '-' and '.', starting with a letter or a digit.",
            "type": "string",
            "pattern": "^[a-z0-9][a-z0-9.-]*$",
            "minLength": 1,
            "maxLength": MAX_NAME_LEN,
        })
    }
}

/// A validated environment variable key: a letter or `_`, then letters, digits or `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct EnvKey(String);

impl<'de> Deserialize<'de> for EnvKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        EnvKey::parse(&value).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for EnvKey {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EnvKey".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An environment variable key: a letter or `_`, then letters, digits or `_`.",
            "type": "string",
            "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
            "maxLength": MAX_ENV_KEY_LEN,
        })
    }
}

impl EnvKey {
    /// Validates `value` as an environment variable key.
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        let invalid = |reason| InvalidName {
            field: "env",
            value: value.to_owned(),
            reason,
        };
        let mut chars = value.chars();
        match chars.next() {
            None => return Err(invalid("must not be empty")),
            Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
                return Err(invalid("must start with a letter or '_'"));
            }
            Some(_) => {}
        }
        if value.len() > MAX_ENV_KEY_LEN {
            return Err(invalid("must be at most 255 characters"));
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid("may contain only letters, digits and '_'"));
        }
        Ok(Self(value.to_owned()))
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<EnvKey> for String {
    fn from(key: EnvKey) -> Self {
        key.0
    }
}

impl fmt::Display for EnvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The first item of `items` equal to an earlier one, if any.
///
/// A request that names one object twice (`http=3 http=4`) is ambiguous, and
/// etcd refuses a transaction touching one key twice: callers refuse it first.
pub fn first_repeat<T: Ord>(items: impl IntoIterator<Item = T>) -> Option<T> {
    let mut seen = BTreeSet::new();
    for item in items {
        if seen.contains(&item) {
            return Some(item);
        }
        seen.insert(item);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for value in [
            "valid",
            "valid-with-scores",
            "valid.with.dots",
            "0123456789",
            "a",
        ] {
            assert_eq!(
                Name::parse("app", value).map(|n| n.to_string()),
                Ok(value.to_owned())
            );
        }
        assert!(Name::parse("app", &"a".repeat(63)).is_ok());
    }

    #[test]
    fn rejects_invalid_names_with_the_rule_broken() {
        let long = "a".repeat(64);
        let table = [
            ("", "must not be empty"),
            (
                " ",
                "may contain only lower-case letters, digits, '-' and '.'",
            ),
            (
                "with space",
                "may contain only lower-case letters, digits, '-' and '.'",
            ),
            (
                "with_underscore",
                "may contain only lower-case letters, digits, '-' and '.'",
            ),
            (
                "Upper",
                "may contain only lower-case letters, digits, '-' and '.'",
            ),
            (
                "a/b",
                "may contain only lower-case letters, digits, '-' and '.'",
            ),
            (long.as_str(), "must be at most 63 characters"),
            (".", "must start with a lower-case letter or a digit"),
            ("..", "must start with a lower-case letter or a digit"),
            (".hidden", "must start with a lower-case letter or a digit"),
            ("-rf", "must start with a lower-case letter or a digit"),
        ];
        for (value, reason) in table {
            let err = Name::parse("rev", value).expect_err(value);
            assert_eq!(err.field, "rev");
            assert_eq!(err.value, value);
            assert_eq!(err.reason, reason, "{value:?}");
        }
    }

    #[test]
    fn error_message_names_field_and_value() {
        let err = Name::parse("proc", "Web").expect_err("upper case");
        assert_eq!(
            err.to_string(),
            "invalid proc name \"Web\": may contain only lower-case letters, digits, '-' and '.'"
        );
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<Name>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<Name>("\"Not OK\"").is_err());
    }

    #[test]
    fn first_repeat_finds_the_first_item_given_twice() {
        let table: [(&[&str], Option<&str>); 5] = [
            (&[], None),
            (&["http"], None),
            (&["http", "worker"], None),
            (&["http", "worker", "http"], Some("http")),
            (&["a", "b", "b", "a"], Some("b")),
        ];
        for (items, repeated) in table {
            assert_eq!(first_repeat(items.iter().copied()), repeated, "{items:?}");
        }
    }

    #[test]
    fn env_keys() {
        for ok in ["PATH", "_X", "database_url", "A1"] {
            assert!(EnvKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B"] {
            assert!(EnvKey::parse(bad).is_err(), "{bad}");
        }
    }
}
