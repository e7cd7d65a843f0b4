//! Builders shared by the unit tests, so each table reads as its scenario.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};

use crate::desired::{DesiredGroup, GroupKey};
use crate::model::{App, Instance, InstanceState, ProcType};
use crate::name::Name;
use crate::placement::HostView;
use crate::scale::{InstanceView, ScalePlan, ScaleSnapshot};

pub(crate) fn name(value: &str) -> Name {
    Name::parse("test", value).expect("valid test name")
}

pub(crate) fn names(values: &[&str]) -> Vec<Name> {
    values.iter().copied().map(name).collect()
}

/// `seconds` after the epoch.
pub(crate) fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + TimeDelta::seconds(seconds)
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|&(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

pub(crate) fn group(app: &str, rev: &str, proc: &str) -> GroupKey {
    GroupKey::new(name(app), name(rev), name(proc))
}

pub(crate) fn app(stack: &str) -> App {
    App {
        repo_url: "https://example.com/repo.git".to_owned(),
        stack: name(stack),
        deploy_type: String::new(),
        created_at: at(0),
    }
}

pub(crate) fn proc_type(host_labels: &[(&str, &str)]) -> ProcType {
    ProcType {
        command: "serve".to_owned(),
        port: None,
        limits: Default::default(),
        host_labels: labels(host_labels),
        kill_timeout_secs: None,
        restart: Default::default(),
        readiness: None,
        service: None,
        created_at: at(0),
    }
}

pub(crate) fn desired(replicas: u32, stack: &str, host_labels: &[(&str, &str)]) -> DesiredGroup {
    DesiredGroup {
        replicas,
        stack: name(stack),
        host_labels: labels(host_labels),
    }
}

pub(crate) fn host(
    host_name: &str,
    capacity: u32,
    stacks: &[&str],
    host_labels: &[(&str, &str)],
) -> HostView {
    HostView {
        name: name(host_name),
        capacity,
        stacks: names(stacks),
        labels: labels(host_labels),
        draining: false,
    }
}

pub(crate) fn instance(key: &GroupKey, state: InstanceState, host: Option<&str>) -> Instance {
    let mut instance = Instance::pending(
        key.app.clone(),
        key.rev.clone(),
        key.proc.clone(),
        host.map(name),
        at(0),
    );
    instance.state = state;
    instance
}

/// Instance `id` of `key`, created at registry revision `create_revision`.
pub(crate) fn view(
    id: &str,
    create_revision: i64,
    key: &GroupKey,
    state: InstanceState,
    host: Option<&str>,
) -> InstanceView {
    InstanceView {
        id: name(id),
        create_revision,
        instance: instance(key, state, host),
    }
}

/// The state after the plan was carried out: every start a pending instance on
/// its host (newer than anything before), every stop a stopping instance,
/// every removal gone.
pub(crate) fn apply(snapshot: &ScaleSnapshot, plan: &ScalePlan) -> ScaleSnapshot {
    let mut applied = snapshot.clone();
    let removed: BTreeSet<&Name> = plan.removals.iter().map(|r| &r.instance).collect();
    applied.instances.retain(|view| !removed.contains(&view.id));
    let stopped: BTreeSet<&Name> = plan.stops.iter().map(|stop| &stop.instance).collect();
    for view in &mut applied.instances {
        if stopped.contains(&view.id) {
            view.instance.state = InstanceState::Stopping;
        }
    }
    let newest = applied
        .instances
        .iter()
        .map(|view| view.create_revision)
        .max()
        .unwrap_or(0);
    for (n, start) in (1..).zip(&plan.starts) {
        applied.instances.push(InstanceView {
            id: name(&format!("started-{n}")),
            create_revision: newest + n,
            instance: start.instance(at(1)),
        });
    }
    applied
}
