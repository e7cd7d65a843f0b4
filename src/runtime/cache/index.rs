//! Secondary indexes of a cache, as client-go's indexers: each maps an
//! object to at most one value, and the cache keeps, per value, the keys of
//! the objects that have it.
//!
//! They exist so that a reconcile reads what it is about — one group's
//! instances, the instances of dead hosts, the per-host load — instead of
//! copying every cached object, which at 100,000 instances costs more than
//! the write the reconcile makes.
//!
//! An index is typed by its values (a group, a host name, a state), so a
//! reader asks with the value it holds and gets typed values back; nothing is
//! printed into a string and parsed out again.
//!
//! Invariant: an index always agrees with the objects of its snapshot; it is
//! updated under the same lock, in the same step as the objects.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::registry::{KeyPath, Versioned};

/// A named function from a cached object (and what its key names, parsed
/// once by the cache) to the one value it is indexed under, or `None` to
/// leave it out of the index.
pub struct Index<T, V> {
    name: &'static str,
    value_of: fn(&KeyPath, &Versioned<T>) -> Option<V>,
}

impl<T, V> Index<T, V> {
    /// An index called `name` (unique within its cache).
    pub const fn new(
        name: &'static str,
        value_of: fn(&KeyPath, &Versioned<T>) -> Option<V>,
    ) -> Self {
        Self { name, value_of }
    }

    /// The index's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

// Manual impls: a derive would require `T: Clone` and `V: Clone` for a struct
// holding only a name and a function pointer.
impl<T, V> Clone for Index<T, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, V> Copy for Index<T, V> {}

impl<T, V> fmt::Debug for Index<T, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Index").field(&self.name).finish()
    }
}

/// What an index's values must be: ordered keys of its entries, shared
/// between the cache task and its readers.
pub trait IndexValue: Ord + Clone + Send + Sync + 'static {}

impl<V: Ord + Clone + Send + Sync + 'static> IndexValue for V {}

/// One index's entries: value → keys of the objects filed under it.
pub(super) type Entries<V> = BTreeMap<V, BTreeSet<String>>;

/// One index with its entries.
struct Filed<T, V> {
    index: Index<T, V>,
    entries: Entries<V>,
}

/// An index with its entries, whatever the type of its values: what the
/// cache updates without knowing it.
trait Filing<T>: Send + Sync {
    fn name(&self) -> &'static str;
    fn clear(&mut self);
    fn insert(&mut self, path: &KeyPath, object: &Versioned<T>);
    fn remove(&mut self, path: &KeyPath, object: &Versioned<T>);
    /// For a reader to get the typed entries back.
    fn as_any(&self) -> &dyn Any;
}

impl<T: 'static, V: IndexValue> Filing<T> for Filed<T, V> {
    fn name(&self) -> &'static str {
        self.index.name
    }

    fn clear(&mut self) {
        self.entries.clear();
    }

    fn insert(&mut self, path: &KeyPath, object: &Versioned<T>) {
        if let Some(value) = (self.index.value_of)(path, object) {
            self.entries
                .entry(value)
                .or_default()
                .insert(object.key.clone());
        }
    }

    fn remove(&mut self, path: &KeyPath, object: &Versioned<T>) {
        let Some(value) = (self.index.value_of)(path, object) else {
            return;
        };
        if let Some(filed) = self.entries.get_mut(&value) {
            filed.remove(&object.key);
            if filed.is_empty() {
                self.entries.remove(&value);
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The indexes a cache keeps, each with its entries.
pub struct Indexes<T> {
    filed: Vec<Box<dyn Filing<T>>>,
}

impl<T> Default for Indexes<T> {
    fn default() -> Self {
        Self { filed: Vec::new() }
    }
}

impl<T> fmt::Debug for Indexes<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.filed.iter().map(|filed| filed.name()))
            .finish()
    }
}

impl<T: 'static> Indexes<T> {
    /// No index: a cache that is only listed and looked up by key.
    pub fn new() -> Self {
        Self::default()
    }

    /// These indexes and `index`, whose name must differ from theirs.
    #[must_use]
    pub fn with<V: IndexValue>(mut self, index: Index<T, V>) -> Self {
        debug_assert!(
            self.filed.iter().all(|filed| filed.name() != index.name),
            "index {} given twice",
            index.name
        );
        self.filed.push(Box::new(Filed {
            index,
            entries: Entries::new(),
        }));
        self
    }

    /// Drops every entry and indexes `objects` afresh (after a relist).
    pub(super) fn rebuild<'a>(
        &mut self,
        objects: impl IntoIterator<Item = (&'a KeyPath, &'a Versioned<T>)>,
    ) {
        for filed in &mut self.filed {
            filed.clear();
        }
        for (path, object) in objects {
            self.insert(path, object);
        }
    }

    pub(super) fn insert(&mut self, path: &KeyPath, object: &Versioned<T>) {
        for filed in &mut self.filed {
            filed.insert(path, object);
        }
    }

    pub(super) fn remove(&mut self, path: &KeyPath, object: &Versioned<T>) {
        for filed in &mut self.filed {
            filed.remove(path, object);
        }
    }

    /// The entries of `index`. An index the cache was not built with has none.
    pub(super) fn entries<V: IndexValue>(&self, index: &Index<T, V>) -> Option<&Entries<V>> {
        let found = self
            .filed
            .iter()
            .find(|filed| filed.name() == index.name)
            .and_then(|filed| filed.as_any().downcast_ref::<Filed<T, V>>())
            .map(|filed| &filed.entries);
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

    const PARITY: Index<u32, u32> = Index::new("parity", |_, o| Some(o.value % 2));
    const BIG: Index<u32, ()> = Index::new("big", |_, o| (o.value >= 10).then_some(()));

    /// The tests' indexes look at values only.
    const PATH: KeyPath = KeyPath::Other;

    fn keys<V: IndexValue>(
        indexes: &Indexes<u32>,
        index: &Index<u32, V>,
        value: &V,
    ) -> Vec<String> {
        indexes
            .entries(index)
            .and_then(|entries| entries.get(value))
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn an_object_moves_between_values_and_leaves_an_index_that_rejects_it() {
        let mut indexes = Indexes::new().with(PARITY).with(BIG);
        indexes.insert(&PATH, &object("a", 11));
        indexes.insert(&PATH, &object("b", 2));
        assert_eq!(keys(&indexes, &PARITY, &1), ["a"]);
        assert_eq!(keys(&indexes, &PARITY, &0), ["b"]);
        assert_eq!(keys(&indexes, &BIG, &()), ["a"]);

        // An update is a removal of the old version and an insertion of the new.
        indexes.remove(&PATH, &object("a", 11));
        indexes.insert(&PATH, &object("a", 4));
        assert_eq!(keys(&indexes, &PARITY, &0), ["a", "b"]);
        assert!(keys(&indexes, &PARITY, &1).is_empty());
        assert!(keys(&indexes, &BIG, &()).is_empty());
        // Emptied values are dropped, so the entries name only values in use.
        assert!(!indexes.entries(&PARITY).expect("known").contains_key(&1));
    }

    #[test]
    fn a_rebuild_forgets_what_the_new_objects_do_not_have() {
        let mut indexes = Indexes::new().with(PARITY);
        indexes.insert(&PATH, &object("gone", 1));
        indexes.rebuild([(&PATH, &object("x", 3))]);
        assert_eq!(keys(&indexes, &PARITY, &1), ["x"]);
    }
}
