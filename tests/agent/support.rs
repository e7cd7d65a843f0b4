//! What the agent tests share: an app whose revision is a directory of
//! shell scripts, deployed through the API, and reads of its instances.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use visor::model::{Instance, InstanceState, ProcType};
use visor::registry::{InstanceFilter, Versioned};
use visor_testkit::TestRegistry;
use visor_testkit::eventually;
use visor_testkit::fixtures::{app, revision};

/// Bound on one test.
pub const LIMIT: Duration = Duration::from_secs(90);
/// Bound on waiting for one condition.
pub const SETTLE: Duration = Duration::from_secs(30);

/// A revision directory holding `scripts` (name → shell script body), each
/// executable.
pub fn revision_dir(scripts: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a revision dir");
    for (name, body) in scripts {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("script dir");
        }
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        make_executable(&path);
    }
    dir
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A proc type running `command` with no fixed port.
pub fn proc(command: &str) -> ProcType {
    ProcType {
        command: command.to_owned(),
        port: None,
        limits: Default::default(),
        host_labels: Default::default(),
        kill_timeout_secs: Some(2),
        restart: Default::default(),
        readiness: None,
        service: None,
        created_at: Utc::now(),
    }
}

/// Registers app `name` (stack `base`), revision `v1` at `archive_url`,
/// proc `proc` as `spec`, and scales it to `replicas`.
pub async fn deploy(
    t: &TestRegistry,
    name: &str,
    archive_url: &str,
    spec: ProcType,
    replicas: u32,
) {
    let visor = &t.visor;
    visor
        .register_app(name, app("https://example.com/app.git"))
        .await
        .expect("register app");
    visor
        .register_rev(name, "v1", revision(archive_url))
        .await
        .expect("register rev");
    visor
        .register_proc(name, "web", spec)
        .await
        .expect("register proc");
    visor
        .set_scales(name, "v1", &[("web", replicas)])
        .await
        .expect("scale");
}

/// `file://` URL of a directory.
pub fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// The instances of `app`.
pub async fn instances_of(t: &TestRegistry, app: &str) -> Vec<Versioned<Instance>> {
    let filter = InstanceFilter {
        app: Some(app.to_owned()),
        ..InstanceFilter::default()
    };
    t.visor
        .instances(&filter)
        .await
        .expect("list instances")
        .items
}

/// Waits until `app` has exactly `count` running instances (on `host`, if
/// given); returns them.
pub async fn running(
    t: &TestRegistry,
    app: &str,
    host: Option<&str>,
    count: usize,
) -> Vec<Versioned<Instance>> {
    let what = format!("{count} running instances of {app} on {host:?}");
    eventually(SETTLE, &what, || async {
        let running: Vec<_> = instances_of(t, app)
            .await
            .into_iter()
            .filter(|i| i.value.state == InstanceState::Running)
            .filter(|i| host.is_none_or(|h| i.value.host.as_ref().is_some_and(|n| n.as_str() == h)))
            .collect();
        (running.len() == count).then_some(running)
    })
    .await
}

/// Waits until instance `id` is in `state`; returns it.
pub async fn in_state(t: &TestRegistry, id: &str, state: InstanceState) -> Instance {
    let what = format!("instance {id} is {state}");
    eventually(SETTLE, &what, || async {
        let instance = t.visor.instance(id).await.ok()?;
        (instance.value.state == state).then_some(instance.value)
    })
    .await
}
