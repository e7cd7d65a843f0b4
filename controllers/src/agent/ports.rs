//! Which port an instance listens on: its proc type's fixed port, or the
//! lowest free one of the host's range.
//!
//! Invariant: no port is handed to two live instances of one host; a fixed
//! port already held is a conflict, never shared.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use thiserror::Error;

/// The ports a host hands out, `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    first: u16,
    last: u16,
}

/// Why no port could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PortError {
    /// The proc type's fixed port is held by another instance.
    #[error("port {port} is already taken by instance {holder} on this host")]
    Taken {
        /// The port asked for.
        port: u16,
        /// The instance holding it.
        holder: String,
    },
    /// Every port of the range is held.
    #[error("no free port in {range}: all {size} are taken")]
    Exhausted {
        /// The range.
        range: PortRange,
        /// How many ports it has.
        size: u32,
    },
    /// A range that does not read as `first-last` with `0 < first <= last`.
    #[error("invalid port range {0:?}: expected FIRST-LAST with 0 < FIRST <= LAST <= 65535")]
    InvalidRange(String),
}

impl PortRange {
    /// `first..=last`; refused if empty or starting at 0.
    pub fn new(first: u16, last: u16) -> Result<Self, PortError> {
        if first == 0 || first > last {
            return Err(PortError::InvalidRange(format!("{first}-{last}")));
        }
        Ok(Self { first, last })
    }

    /// The ports, lowest first.
    pub fn ports(self) -> RangeInclusive<u16> {
        self.first..=self.last
    }

    /// Whether `port` is in the range.
    pub fn contains(self, port: u16) -> bool {
        self.ports().contains(&port)
    }

    fn size(self) -> u32 {
        u32::from(self.last - self.first) + 1
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = PortError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || PortError::InvalidRange(text.to_owned());
        let (first, last) = text.split_once('-').ok_or_else(invalid)?;
        let first = first.trim().parse().map_err(|_| invalid())?;
        let last = last.trim().parse().map_err(|_| invalid())?;
        Self::new(first, last).map_err(|_| invalid())
    }
}

/// The port for a new instance: `fixed` if given and free (it need not be
/// in the range), else the lowest port of `range` that is neither held
/// (`held`: port → holding instance) nor in `unusable` (found in use by
/// something else on the machine).
pub fn choose_port<'a>(
    range: PortRange,
    fixed: Option<u16>,
    held: impl Fn(u16) -> Option<&'a str>,
    unusable: &BTreeSet<u16>,
) -> Result<u16, PortError> {
    if let Some(port) = fixed {
        return match held(port) {
            Some(holder) => Err(PortError::Taken {
                port,
                holder: holder.to_owned(),
            }),
            None => Ok(port),
        };
    }
    range
        .ports()
        .find(|port| held(*port).is_none() && !unusable.contains(port))
        .ok_or(PortError::Exhausted {
            range,
            size: range.size(),
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn held<'a>(map: &'a BTreeMap<u16, String>) -> impl Fn(u16) -> Option<&'a str> {
        |port| map.get(&port).map(String::as_str)
    }

    #[test]
    fn ranges_read_as_first_dash_last() {
        let range: PortRange = "20000-20009".parse().expect("a range");
        assert_eq!(range.ports().count(), 10);
        assert_eq!(range.to_string(), "20000-20009");
        for bad in ["", "20000", "0-10", "10-9", "a-b", "1-70000"] {
            assert_eq!(
                bad.parse::<PortRange>(),
                Err(PortError::InvalidRange(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_lowest_free_port_is_chosen_and_a_fixed_port_is_honoured() {
        let range = PortRange::new(100, 102).expect("range");
        let mut map = BTreeMap::from([(100, "a".to_owned())]);
        let none = BTreeSet::new();
        assert_eq!(choose_port(range, None, held(&map), &none), Ok(101));
        assert_eq!(
            choose_port(range, None, held(&map), &BTreeSet::from([101])),
            Ok(102),
            "a port found in use by another program is skipped"
        );
        assert_eq!(choose_port(range, Some(8080), held(&map), &none), Ok(8080));
        assert_eq!(
            choose_port(range, Some(100), held(&map), &none),
            Err(PortError::Taken {
                port: 100,
                holder: "a".into()
            })
        );
        map.extend([(101, "b".to_owned()), (102, "c".to_owned())]);
        let exhausted = choose_port(range, None, held(&map), &none).expect_err("full");
        assert_eq!(
            exhausted.to_string(),
            "no free port in 100-102: all 3 are taken"
        );
    }

    proptest! {
        #[test]
        fn a_chosen_port_is_never_held(
            first in 1u16..1000,
            len in 0u16..20,
            taken in proptest::collection::btree_set(1u16..1100, 0..30),
        ) {
            let range = PortRange::new(first, first + len).expect("range");
            let map: BTreeMap<u16, String> =
                taken.iter().map(|p| (*p, format!("i{p}"))).collect();
            match choose_port(range, None, held(&map), &BTreeSet::new()) {
                Ok(port) => {
                    prop_assert!(range.contains(port));
                    prop_assert!(!map.contains_key(&port));
                    prop_assert!(range.ports().filter(|p| *p < port).all(|p| map.contains_key(&p)));
                }
                Err(_) => prop_assert!(range.ports().all(|p| map.contains_key(&p))),
            }
        }
    }
}
