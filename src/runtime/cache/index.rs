//! Secondary indexes of a cache, as client-go's indexers: each maps an
//! object to at most one value, and the cache keeps, per value, the keys of
//! the objects that have it.
//!
//! They exist so that a reconcile reads what it is about — one group's
//! instances, the instances of dead hosts, the per-host load — instead of
//! copying every cached object, which at 100,000 instances costs more than
//! the write the reconcile makes.
//!
//! Invariant: an index always agrees with the objects of its snapshot; it is
//! updated under the same lock, in the same step as the objects.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::registry::Versioned;

/// A named function from a cached object to the one value it is indexed
/// under, or `None` to leave it out of the index.
pub struct Index<T> {
    name: &'static str,
    value_of: fn(&Versioned<T>) -> Option<String>,
}

impl<T> Index<T> {
    /// An index called `name` (unique within its cache).
    pub const fn new(name: &'static str, value_of: fn(&Versioned<T>) -> Option<String>) -> Self {
        Self { name, value_of }
    }

    /// The index's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

// Manual impls: a derive would require `T: Clone` for a struct holding only a
// name and a function pointer.
impl<T> Clone for Index<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Index<T> {}

impl<T> fmt::Debug for Index<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Index").field(&self.name).finish()
    }
}

/// One index's entries: value → keys of the objects filed under it.
type Entries = HashMap<String, BTreeSet<String>>;

/// Every index of one cache and its entries.
#[derive(Debug)]
pub(super) struct Indexes<T> {
    indexes: Vec<(Index<T>, Entries)>,
}

impl<T> Indexes<T> {
    pub(super) fn new(indexes: &[Index<T>]) -> Self {
        Self {
            indexes: indexes.iter().map(|i| (*i, HashMap::new())).collect(),
        }
    }

    /// Drops every entry and indexes `objects` afresh (after a relist).
    pub(super) fn rebuild<'a>(&mut self, objects: impl IntoIterator<Item = &'a Versioned<T>>)
    where
        T: 'a,
    {
        for (_, entries) in &mut self.indexes {
            entries.clear();
        }
        for object in objects {
            self.insert(object);
        }
    }

    pub(super) fn insert(&mut self, object: &Versioned<T>) {
        for (index, entries) in &mut self.indexes {
            if let Some(value) = (index.value_of)(object) {
                entries.entry(value).or_default().insert(object.key.clone());
            }
        }
    }

    pub(super) fn remove(&mut self, object: &Versioned<T>) {
        for (index, entries) in &mut self.indexes {
            let Some(value) = (index.value_of)(object) else {
                continue;
            };
            if let Some(keys) = entries.get_mut(&value) {
                keys.remove(&object.key);
                if keys.is_empty() {
                    entries.remove(&value);
                }
            }
        }
    }

    /// The entries of `index`. An index the cache was not built with has none.
    pub(super) fn entries(&self, index: &Index<T>) -> Option<&Entries> {
        let found = self
            .indexes
            .iter()
            .find(|(known, _)| known.name == index.name)
            .map(|(_, entries)| entries);
        debug_assert!(
            found.is_some(),
            "index {} was not given to this cache",
            index.name
        );
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, value: u32) -> Versioned<u32> {
        Versioned {
            key: key.into(),
            value,
            create_revision: 1,
            mod_revision: 1,
            revision: 1,
        }
    }

    const PARITY: Index<u32> = Index::new("parity", |o| Some((o.value % 2).to_string()));
    const BIG: Index<u32> = Index::new("big", |o| (o.value >= 10).then(|| "big".into()));

    fn keys(indexes: &Indexes<u32>, index: &Index<u32>, value: &str) -> Vec<String> {
        indexes
            .entries(index)
            .and_then(|entries| entries.get(value))
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn an_object_moves_between_values_and_leaves_an_index_that_rejects_it() {
        let mut indexes = Indexes::new(&[PARITY, BIG]);
        indexes.insert(&object("a", 11));
        indexes.insert(&object("b", 2));
        assert_eq!(keys(&indexes, &PARITY, "1"), ["a"]);
        assert_eq!(keys(&indexes, &PARITY, "0"), ["b"]);
        assert_eq!(keys(&indexes, &BIG, "big"), ["a"]);

        // An update is a removal of the old version and an insertion of the new.
        indexes.remove(&object("a", 11));
        indexes.insert(&object("a", 4));
        assert_eq!(keys(&indexes, &PARITY, "0"), ["a", "b"]);
        assert!(keys(&indexes, &PARITY, "1").is_empty());
        assert!(keys(&indexes, &BIG, "big").is_empty());
        // Emptied values are dropped, so the entries name only values in use.
        assert!(!indexes.entries(&PARITY).expect("known").contains_key("1"));
    }

    #[test]
    fn a_rebuild_forgets_what_the_new_objects_do_not_have() {
        let mut indexes = Indexes::new(&[PARITY]);
        indexes.insert(&object("gone", 1));
        indexes.rebuild(&[object("x", 3)]);
        assert_eq!(keys(&indexes, &PARITY, "1"), ["x"]);
    }
}
