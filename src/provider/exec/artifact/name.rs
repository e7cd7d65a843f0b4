//! Names that become directory names in the artifact cache.
//!
//! A registry [`Name`] may be `.`, `..` or start with a `.`; none of those
//! may name a directory of the cache (the first two are not directories of
//! their own, and names starting with `.` are the cache's own files: records,
//! locks, staging). Invariant: a [`DirName`] joined to a directory names a
//! child of it that the cache's own files never use.

use std::fmt;

use serde::{Deserialize, Serialize};
use visor_controllers::{InvalidName, Name};

/// A registry name (of an app or a revision) that can name a cache directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Name", into = "Name")]
pub struct DirName(Name);

impl DirName {
    /// Validates `value` as the name of `field`.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, InvalidName> {
        Self::check(field, Name::parse(field, value)?)
    }

    fn check(field: &'static str, name: Name) -> Result<Self, InvalidName> {
        if name.as_str().starts_with('.') {
            return Err(InvalidName {
                field,
                value: name.into(),
                reason: "must not start with '.' (it names a directory)",
            });
        }
        Ok(Self(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for DirName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<Name> for DirName {
    type Error = InvalidName;

    fn try_from(name: Name) -> Result<Self, Self::Error> {
        Self::check("name", name)
    }
}

impl From<DirName> for Name {
    fn from(name: DirName) -> Self {
        name.0
    }
}

#[cfg(test)]
mod tests {
    use super::DirName;

    #[test]
    fn registry_names_that_cannot_name_a_directory_are_refused() {
        for ok in ["web", "v42", "v1.2.3", "a-b", "x.."] {
            assert_eq!(
                DirName::parse("revision", ok)
                    .expect("a directory name")
                    .as_str(),
                ok
            );
        }
        for bad in [".", "..", ".hidden", ".v1.staging"] {
            let refused = DirName::parse("revision", bad).expect_err("refused");
            assert_eq!(refused.field, "revision");
            assert_eq!(
                refused.reason,
                "must not start with '.' (it names a directory)"
            );
        }
        assert!(
            DirName::parse("app", "Web").is_err(),
            "still a registry name"
        );
        let refused = serde_json::from_str::<DirName>("\"..\"").expect_err("refused");
        assert!(
            refused.to_string().contains("must not start with '.'"),
            "{refused}"
        );
    }
}
