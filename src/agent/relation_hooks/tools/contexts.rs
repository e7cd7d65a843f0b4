//! The hooks running now, each under a context id the hook's tools present:
//! what the tools may ask about, and the settings `relation-set` buffered.
//!
//! Invariants: a context exists exactly while its hook runs — registering
//! returns a guard that removes it when the run ends or is abandoned — so
//! a tool outside a hook, or after it, finds nothing; the settings a hook
//! set are handed out once, to whoever acknowledges it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use visor_controllers::{HookKind, Name};

/// What the tools of one running hook may ask about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookContext {
    /// The unit running it.
    pub unit: Name,
    /// The relation.
    pub relation: Name,
    /// The hook's kind.
    pub kind: HookKind,
    /// The remote unit it is about (none for `broken`).
    pub remote_unit: Option<String>,
    /// The relation's members once the hook took effect.
    pub members: Vec<String>,
    /// What `relation-set` set so far.
    pub settings: BTreeMap<String, String>,
}

/// Every running hook's context, by id; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Contexts(Arc<Mutex<HashMap<String, HookContext>>>);

impl Contexts {
    /// Registers `context` under a fresh id until the returned guard goes.
    pub fn register(&self, context: HookContext) -> Registered {
        let id = uuid::Uuid::now_v7().simple().to_string();
        self.lock().insert(id.clone(), context);
        Registered {
            id,
            contexts: self.clone(),
        }
    }

    /// A copy of context `id`, if its hook is running.
    pub fn get(&self, id: &str) -> Option<HookContext> {
        self.lock().get(id).cloned()
    }

    /// Adds `settings` to those context `id` buffered; false if its hook
    /// is not running (any more).
    pub fn set(&self, id: &str, settings: BTreeMap<String, String>) -> bool {
        match self.lock().get_mut(id) {
            Some(context) => {
                context.settings.extend(settings);
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, HookContext>> {
        // Every critical section is one map operation: never half-updated.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A registered context; dropping it (or [`finish`](Self::finish)) removes it.
#[derive(Debug)]
pub struct Registered {
    id: String,
    contexts: Contexts,
}

impl Registered {
    /// The context's id, for the hook's environment.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Ends the context: its tools are refused from now on. Returns the
    /// settings the hook set.
    pub fn finish(self) -> BTreeMap<String, String> {
        self.contexts
            .lock()
            .remove(&self.id)
            .map(|context| context.settings)
            .unwrap_or_default()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.contexts.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> HookContext {
        HookContext {
            unit: Name::parse("unit", "web-0").expect("a name"),
            relation: Name::parse("relation", "r1").expect("a name"),
            kind: HookKind::Joined,
            remote_unit: Some("db-0".to_owned()),
            members: vec!["db-0".to_owned()],
            settings: BTreeMap::new(),
        }
    }

    #[test]
    fn a_context_lives_while_its_guard_does_and_hands_its_settings_out_once() {
        let contexts = Contexts::default();
        let registered = contexts.register(context());
        let id = registered.id().to_owned();
        assert_eq!(contexts.get(&id), Some(context()));
        assert!(contexts.set(&id, BTreeMap::from([("a".to_owned(), "1".to_owned())])));
        assert!(contexts.set(&id, BTreeMap::from([("a".to_owned(), "2".to_owned())])));
        let settings = registered.finish();
        assert_eq!(settings, BTreeMap::from([("a".to_owned(), "2".to_owned())]));
        assert_eq!(contexts.get(&id), None, "finished");
        assert!(!contexts.set(&id, BTreeMap::new()));

        let abandoned = contexts.register(context());
        let id = abandoned.id().to_owned();
        drop(abandoned);
        assert_eq!(contexts.get(&id), None, "dropped with its run");
    }
}
