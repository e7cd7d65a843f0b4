//! Desired state: the scale factors, joined with the objects they depend on.
//!
//! A scale factor only counts while its app, its revision and its proc type all
//! exist. Removing any of them scales the group to zero, even while the factor's
//! key lingers in the registry: the group simply has no [`DesiredGroup`], and the
//! scale plan stops whatever still runs for it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::model::{App, Instance, ProcType};
use crate::name::Name;

/// An (app, rev, proc) group: the unit a scale factor and the scale loop work on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct GroupKey {
    /// The app.
    pub app: Name,
    /// The revision of the app.
    pub rev: Name,
    /// The proc type of the app.
    pub proc: Name,
}

impl GroupKey {
    /// The group of `app`'s revision `rev`, proc type `proc`.
    pub fn new(app: Name, rev: Name, proc: Name) -> Self {
        Self { app, rev, proc }
    }

    /// The group `instance` belongs to.
    pub fn of(instance: &Instance) -> Self {
        Self::new(
            instance.app.clone(),
            instance.rev.clone(),
            instance.proc.clone(),
        )
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.app, self.rev, self.proc)
    }
}

/// What one group should look like, with what placement needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGroup {
    /// How many instances should be active.
    pub replicas: u32,
    /// The app's stack; only hosts offering it can run the group.
    pub stack: Name,
    /// Labels a host must carry, with equal values, to run the group.
    pub host_labels: BTreeMap<String, String>,
}

/// Joins the scale factors with the apps, revisions and proc types present.
///
/// `revs` holds the (app, rev) pairs and `procs` the proc types by (app, proc),
/// as their registry keys name them. A factor whose app, revision or proc type
/// is missing is dropped, which scales its group to zero.
pub fn desired_groups(
    apps: &BTreeMap<Name, App>,
    revs: &BTreeSet<(Name, Name)>,
    procs: &BTreeMap<(Name, Name), ProcType>,
    scale_factors: &BTreeMap<GroupKey, u32>,
) -> BTreeMap<GroupKey, DesiredGroup> {
    scale_factors
        .iter()
        .filter_map(|(key, &replicas)| {
            let app = apps.get(&key.app)?;
            if !revs.contains(&(key.app.clone(), key.rev.clone())) {
                return None;
            }
            let proc = procs.get(&(key.app.clone(), key.proc.clone()))?;
            let desired = DesiredGroup {
                replicas,
                stack: app.stack.clone(),
                host_labels: proc.host_labels.clone(),
            };
            Some((key.clone(), desired))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{app, group, name, proc_type};

    struct Registry {
        apps: BTreeMap<Name, App>,
        revs: BTreeSet<(Name, Name)>,
        procs: BTreeMap<(Name, Name), ProcType>,
        factors: BTreeMap<GroupKey, u32>,
    }

    /// App `web` (stack `s1`) with revision `v1`, proc `http` (zone=a) and a factor of 3.
    fn registry() -> Registry {
        Registry {
            apps: BTreeMap::from([(name("web"), app("s1"))]),
            revs: BTreeSet::from([(name("web"), name("v1"))]),
            procs: BTreeMap::from([((name("web"), name("http")), proc_type(&[("zone", "a")]))]),
            factors: BTreeMap::from([(group("web", "v1", "http"), 3)]),
        }
    }

    fn join(registry: &Registry) -> BTreeMap<GroupKey, DesiredGroup> {
        desired_groups(
            &registry.apps,
            &registry.revs,
            &registry.procs,
            &registry.factors,
        )
    }

    #[test]
    fn a_complete_factor_carries_stack_labels_and_replicas() {
        let desired = join(&registry());
        let expected = DesiredGroup {
            replicas: 3,
            stack: name("s1"),
            host_labels: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
        };
        assert_eq!(
            desired,
            BTreeMap::from([(group("web", "v1", "http"), expected)])
        );
    }

    #[test]
    fn a_factor_missing_its_app_rev_or_proc_is_dropped() {
        type Removal = fn(&mut Registry);
        let removals: [(&str, Removal); 4] = [
            ("app", |r| r.apps.clear()),
            ("rev", |r| r.revs.clear()),
            ("proc", |r| r.procs.clear()),
            ("rev of another app", |r| {
                r.revs.clear();
                r.revs.insert((name("api"), name("v1")));
            }),
        ];
        for (what, remove) in removals {
            let mut registry = registry();
            remove(&mut registry);
            assert!(join(&registry).is_empty(), "removed {what}");
        }
    }

    #[test]
    fn a_proc_type_of_another_app_does_not_count() {
        let mut registry = registry();
        let labels = proc_type(&[]);
        registry.procs.clear();
        registry.procs.insert((name("api"), name("http")), labels);
        assert!(join(&registry).is_empty());
    }

    #[test]
    fn a_factor_of_zero_is_kept() {
        let mut registry = registry();
        registry.factors.insert(group("web", "v1", "http"), 0);
        assert_eq!(join(&registry)[&group("web", "v1", "http")].replicas, 0);
    }

    #[test]
    fn group_keys_display_as_their_scale_key() {
        assert_eq!(group("web", "v1", "http").to_string(), "web/v1/http");
    }
}
