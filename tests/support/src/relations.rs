//! Relations end to end: a deployment of running units, an agent stand-in
//! that acknowledges every hook the controller hands out (as a host agent
//! would, through `complete_hook`), and a checker of Juju's guarantees over
//! the hooks each (unit, relation) was handed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use visor::model::{App, HookInfo, HookKind, Host, InstanceState, RelationState};
use visor::registry::HostRegistration;
use visor::{Error, Visor};

use crate::fixtures;
use crate::registry::TestRegistry;
use crate::wait;

/// How long a host registration lives without renewal.
pub const HOST_TTL: Duration = Duration::from_secs(2);

/// An app of its own stack, so that its units land only on its hosts.
fn app(stack: &str) -> App {
    App {
        stack: fixtures::name(stack),
        ..fixtures::app("git://relations")
    }
}

/// A host offering only `stack`.
fn host(stack: &str) -> Host {
    Host {
        stacks: vec![fixtures::name(stack)],
        capacity: 10,
        ..fixtures::host("127.0.0.1")
    }
}

/// Registers `app` (revision v1, proc type `proc`) on hosts of its own.
pub async fn deploy_app(
    t: &TestRegistry,
    app_name: &str,
    proc: &str,
    hosts: &[&str],
) -> Vec<HostRegistration> {
    let stack = format!("{app_name}-stack");
    t.visor
        .register_app(app_name, app(&stack))
        .await
        .expect("app");
    t.visor
        .register_rev(app_name, "v1", fixtures::revision("https://archive"))
        .await
        .expect("rev");
    t.visor
        .register_proc(app_name, proc, fixtures::proc_type("run"))
        .await
        .expect("proc");
    let mut registrations = Vec::new();
    for name in hosts {
        registrations.push(
            t.visor
                .register_host(name, host(&stack), HOST_TTL)
                .await
                .expect("host"),
        );
    }
    registrations
}

/// Scales `app` to `count` and runs every instance the controller places, as
/// the hosts' agents would; returns the unit ids.
pub async fn run_units(t: &TestRegistry, app: &str, proc: &str, count: u32) -> Vec<String> {
    t.visor
        .set_scale(app, "v1", proc, count)
        .await
        .expect("scale");
    let pending = wait::eventually(
        Duration::from_secs(20),
        "the controller places every unit",
        || async {
            let listing = t.visor.instances(&Default::default()).await.ok()?;
            let units: Vec<_> = listing
                .items
                .into_iter()
                .filter(|i| i.value.app.as_str() == app && i.value.state == InstanceState::Pending)
                .collect();
            (units.len() == count as usize).then_some(units)
        },
    )
    .await;
    let mut ids = Vec::new();
    for unit in pending {
        let host = unit.value.host.as_ref().expect("placed").to_string();
        t.visor
            .claim_instance(unit.name(), &host)
            .await
            .expect("claim");
        t.visor
            .start_instance(unit.name(), &host, Some(8080))
            .await
            .expect("start");
        ids.push(unit.name().to_owned());
    }
    ids.sort();
    ids
}

/// One hook a unit ran and acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The unit that ran it.
    pub unit: String,
    /// The hook.
    pub hook: HookInfo,
}

/// Every hook acknowledged so far, in acknowledgement order.
#[derive(Debug, Default)]
pub struct HookLog {
    /// Every hook acknowledged, in acknowledgement order.
    pub delivered: Vec<Delivered>,
}

impl HookLog {
    /// Runs and acknowledges every outstanding hook once; returns how many.
    /// A hook the registry refuses to acknowledge (it does not follow from
    /// the unit's state) fails the test: the controller handed a wrong hook.
    pub async fn acknowledge_all(&mut self, visor: &Visor) -> usize {
        let Ok(listing) = visor.hooks(None).await else {
            return 0;
        };
        let mut done = 0;
        for hook in listing.items {
            let unit = hook.key.rsplit('/').nth(1).expect("hook key").to_owned();
            let hook = hook.value.hook;
            match visor.complete_hook(&unit, &hook.relation_id).await {
                Ok(_) => {
                    self.delivered.push(Delivered { unit, hook });
                    done += 1;
                }
                // Withdrawn meanwhile, or our read was stale: look again.
                Err(Error::NotFound(_) | Error::Conflict { .. }) => {}
                Err(error) => panic!("acknowledging {hook} of {unit}: {error}"),
            }
        }
        done
    }

    /// The hooks (unit, relation) was handed, in order.
    pub fn of(&self, unit: &str, relation: &str) -> Vec<&HookInfo> {
        self.delivered
            .iter()
            .filter(|d| d.unit == unit && d.hook.relation_id == relation)
            .map(|d| &d.hook)
            .collect()
    }

    /// Checks every guarantee of DESIGN.md over each (unit, relation):
    /// every hook follows from the ones before (joined before changed and
    /// departed, broken only once every member departed); a joined is
    /// followed at once by a changed for the same unit; broken is last; no
    /// changed repeats a version already delivered for its unit.
    pub fn check_guarantees(&self) {
        let pairs: BTreeSet<(&str, &str)> = self
            .delivered
            .iter()
            .map(|d| (d.unit.as_str(), d.hook.relation_id.as_str()))
            .collect();
        for (unit, relation) in pairs {
            let hooks = self.of(unit, relation);
            let mut state = RelationState::new(relation);
            let mut delivered_versions: BTreeMap<&str, i64> = BTreeMap::new();
            for (i, hook) in hooks.iter().enumerate() {
                let context = || format!("{unit} in {relation}, hook {i}: {hook}; all: {hooks:?}");
                state
                    .apply(hook)
                    .unwrap_or_else(|e| panic!("{}: {e}", context()));
                if i > 0 && hooks[i - 1].kind == HookKind::Joined {
                    assert_eq!(hook.kind, HookKind::Changed, "{}", context());
                    assert_eq!(hook.remote_unit, hooks[i - 1].remote_unit, "{}", context());
                }
                if let (HookKind::Changed, Some(remote)) = (hook.kind, &hook.remote_unit) {
                    let last = delivered_versions.insert(remote, hook.change_version);
                    let joined_just_before = i > 0 && hooks[i - 1].kind == HookKind::Joined;
                    if let (Some(last), false) = (last, joined_just_before) {
                        assert!(hook.change_version > last, "repeated: {}", context());
                    }
                }
                if hook.kind == HookKind::Joined
                    && let Some(remote) = &hook.remote_unit
                {
                    delivered_versions.insert(remote, hook.change_version);
                }
                if hook.kind == HookKind::Broken {
                    assert_eq!(i, hooks.len() - 1, "broken is last: {}", context());
                }
            }
        }
    }
}

/// Acknowledges hooks until `converged` holds with no hook outstanding.
pub async fn drive_until<F, Fut>(
    t: &TestRegistry,
    log: &mut HookLog,
    limit: Duration,
    what: &str,
    mut converged: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        log.acknowledge_all(&t.visor).await;
        let quiet = t.visor.hooks(None).await.is_ok_and(|l| l.items.is_empty());
        if quiet && converged().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {limit:?}; acknowledged so far: {:#?}",
            log.delivered
        );
        // Hooks arrive on the controller's schedule: look again shortly.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The remote units and versions `unit` acknowledged in `relation` (empty
/// when it has no state).
pub async fn members_of(t: &TestRegistry, relation: &str, unit: &str) -> BTreeMap<String, i64> {
    match t.visor.relation_state(relation, unit).await {
        Ok(state) => state.value.members,
        Err(_) => BTreeMap::new(),
    }
}

/// The settings version of every unit in `relation` that has settings.
pub async fn versions(t: &TestRegistry, relation: &str, units: &[String]) -> BTreeMap<String, i64> {
    let mut versions = BTreeMap::new();
    for unit in units {
        let version = match t.visor.settings(relation, unit).await {
            Ok(settings) => settings.mod_revision,
            Err(_) => 0,
        };
        versions.insert(unit.clone(), version);
    }
    versions
}

/// A timestamp-free settings value, so that writes always change the key.
pub fn setting(value: &str) -> Vec<(String, String)> {
    vec![
        ("address".to_owned(), value.to_owned()),
        ("written".to_owned(), Utc::now().to_rfc3339()),
    ]
}
