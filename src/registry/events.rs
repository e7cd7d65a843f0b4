//! The typed event stream: every registry change under the root, as a Visor
//! event carrying the revision it happened at.
//!
//! Invariants: events come in revision order, all events of one revision
//! together and numbered by `index` within it; a stream started at revision R
//! yields every event with revision ≥ R exactly once. One write can produce
//! several events (a cascade), so a consumer resumes with
//! [`Visor::watch_events_after`] its last processed event: no gap, no repeat.
//! History lost to compaction ends the stream with [`Error::Compacted`], never
//! with a silent gap.

use std::collections::VecDeque;
use std::pin::Pin;

use etcd_client::EventType;
use futures::Stream;
use serde::Serialize;
use visor_controllers::{
    App, Deployment, HandedHook, HookKind, Host, Instance, InstanceState, Notification,
    NotificationKind, ProcType, Relation, RelationState, Revision, RolloutStatus, Scale,
    ServiceDef, ServiceEndpoint, Ticket, TicketOp, UnitSettings,
};

use super::api::Visor;
use super::error::{Error, Result};
use super::keys::{KeyPath, Keys};
use super::store::Codec;
use super::watch::{PrefixWatch, WatchStep};

/// One change in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The registry revision of the change.
    pub revision: i64,
    /// Position among the events of the same revision, from 0.
    pub index: u32,
    /// What changed.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What changed. Serialized with a kebab-case `type` tag, e.g. `{"type":"app-registered","app":"web"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[allow(missing_docs)] // Field names are the registry's own names (app, rev, proc, host, id, ...).
pub enum EventKind {
    /// An app was registered.
    AppRegistered { app: String },
    /// An app document was replaced.
    AppUpdated { app: String },
    /// An app was unregistered.
    AppUnregistered { app: String },
    /// An env var was set.
    EnvSet { app: String, key: String },
    /// An env var was unset.
    EnvUnset { app: String, key: String },
    /// A proc type was registered.
    ProcRegistered { app: String, proc: String },
    /// A proc type document was replaced.
    ProcUpdated { app: String, proc: String },
    /// A proc type was unregistered.
    ProcUnregistered { app: String, proc: String },
    /// A revision was registered.
    RevRegistered { app: String, rev: String },
    /// A revision document was replaced.
    RevUpdated { app: String, rev: String },
    /// A revision was unregistered.
    RevUnregistered { app: String, rev: String },
    /// A scale factor was set (`replicas`) or removed (`replicas: null`).
    ScaleChanged {
        app: String,
        rev: String,
        proc: String,
        replicas: Option<u32>,
    },
    /// An app's deployment (its current revision, scale and rollout) was
    /// written, or removed (`revision` absent).
    DeploymentChanged {
        app: String,
        revision: Option<String>,
    },
    /// The controller moved an app's rollout (to `phase`), or it was removed
    /// with its app (`phase` absent).
    RolloutChanged {
        app: String,
        revision: Option<String>,
        phase: Option<String>,
    },
    /// A host registered (its lease-bound key appeared).
    HostUp { host: String },
    /// A host document was replaced.
    HostUpdated { host: String },
    /// A host's key disappeared: deregistered or lease expired.
    HostDown { host: String },
    /// An instance was created.
    InstanceRegistered {
        id: String,
        app: String,
        rev: String,
        proc: String,
        host: Option<String>,
    },
    /// An instance was claimed by a host.
    InstanceClaimed { id: String, host: Option<String> },
    /// An instance's process started.
    InstanceStarted { id: String, host: Option<String> },
    /// An instance is stopping.
    InstanceStopping { id: String },
    /// An instance exited.
    InstanceExited { id: String },
    /// An instance failed.
    InstanceFailed { id: String, reason: Option<String> },
    /// An instance was lost with its host.
    InstanceLost { id: String, reason: Option<String> },
    /// An instance changed without changing state (e.g. a restart count).
    InstanceUpdated { id: String },
    /// An instance was deleted.
    InstanceUnregistered { id: String },
    /// A ticket was queued for a host.
    TicketCreated {
        host: String,
        ticket: String,
        op: TicketOp,
        instance: String,
    },
    /// A ticket was claimed.
    TicketClaimed {
        host: String,
        ticket: String,
        by: Option<String>,
    },
    /// A ticket was completed (deleted).
    TicketDone { host: String, ticket: String },
    /// A relation was added (or its document replaced).
    RelationAdded { relation: String },
    /// A relation was removed.
    RelationRemoved { relation: String },
    /// A unit's settings in a relation were written or removed.
    SettingsChanged { relation: String, unit: String },
    /// A hook was handed to a unit.
    HookQueued {
        unit: String,
        relation: String,
        hook: HookKind,
        remote_unit: Option<String>,
    },
    /// A unit's agent recorded a failed attempt to run its hook.
    HookFailed {
        unit: String,
        relation: String,
        hook: HookKind,
        remote_unit: Option<String>,
        attempts: u32,
        reason: String,
    },
    /// A unit acknowledged its hook (or the hook was withdrawn).
    HookDone { unit: String, relation: String },
    /// The controller persisted a notification (`service-down`, ...).
    Notified {
        seq: u64,
        notification: NotificationKind,
        service: Option<String>,
        endpoint: Option<String>,
        app: Option<String>,
    },
    /// A service was defined (or its definition replaced).
    ServiceRegistered { service: String },
    /// A service definition was removed.
    ServiceUnregistered { service: String },
    /// A live endpoint appeared: registered, or back after a death.
    EndpointUp { service: String, id: String },
    /// An endpoint stopped cleanly: its key now holds a `departed` tombstone.
    EndpointDeparted { service: String, id: String },
    /// A live endpoint's key was deleted: a death (lease expiry or an unclean
    /// delete). Removing a tombstone is no event.
    EndpointDown { service: String, id: String },
}

/// A stream of events; see the module docs for its guarantees.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// One key change, as the classifier needs it.
struct Change<'a> {
    deleted: bool,
    /// The key's version after the change: 1 means it was just created.
    version: i64,
    value: &'a [u8],
    prev: Option<&'a [u8]>,
}

fn decode<T: Codec>(bytes: &[u8]) -> Result<T, String> {
    T::decode(bytes)
}

/// Maps a change of the key at `path` to an event; `Ok(None)` for keys that
/// carry no Visor event, `Err` for a value that does not decode.
fn classify(path: KeyPath, change: &Change<'_>) -> Result<Option<EventKind>, String> {
    use EventKind::*;
    let created = !change.deleted && change.version == 1;
    // A value readers would skip as malformed must not surface as an event either.
    if !change.deleted {
        match &path {
            KeyPath::App { .. } => drop(decode::<App>(change.value)?),
            KeyPath::Env { .. } => drop(decode::<String>(change.value)?),
            KeyPath::Proc { .. } => drop(decode::<ProcType>(change.value)?),
            KeyPath::Rev { .. } => drop(decode::<Revision>(change.value)?),
            KeyPath::Deployment { .. } => drop(decode::<Deployment>(change.value)?),
            KeyPath::Rollout { .. } => drop(decode::<RolloutStatus>(change.value)?),
            KeyPath::Host { .. } => drop(decode::<Host>(change.value)?),
            KeyPath::Relation { .. } => drop(decode::<Relation>(change.value)?),
            KeyPath::Settings { .. } => drop(decode::<UnitSettings>(change.value)?),
            KeyPath::RelationState { .. } => drop(decode::<RelationState>(change.value)?),
            KeyPath::Service { .. } => drop(decode::<ServiceDef>(change.value)?),
            _ => {}
        }
    }
    let kind = match path {
        KeyPath::App { app } if change.deleted => AppUnregistered { app: app.into() },
        KeyPath::App { app } if created => AppRegistered { app: app.into() },
        KeyPath::App { app } => AppUpdated { app: app.into() },
        KeyPath::Env { app, key } if change.deleted => EnvUnset {
            app: app.into(),
            key: key.into(),
        },
        KeyPath::Env { app, key } => EnvSet {
            app: app.into(),
            key: key.into(),
        },
        KeyPath::Proc { app, proc } if change.deleted => ProcUnregistered {
            app: app.into(),
            proc: proc.into(),
        },
        KeyPath::Proc { app, proc } if created => ProcRegistered {
            app: app.into(),
            proc: proc.into(),
        },
        KeyPath::Proc { app, proc } => ProcUpdated {
            app: app.into(),
            proc: proc.into(),
        },
        KeyPath::Rev { app, rev } if change.deleted => RevUnregistered {
            app: app.into(),
            rev: rev.into(),
        },
        KeyPath::Rev { app, rev } if created => RevRegistered {
            app: app.into(),
            rev: rev.into(),
        },
        KeyPath::Rev { app, rev } => RevUpdated {
            app: app.into(),
            rev: rev.into(),
        },
        KeyPath::Scale { group } => {
            let replicas = match change.deleted {
                true => None,
                false => Some(decode::<Scale>(change.value)?.replicas),
            };
            ScaleChanged {
                app: group.app.into(),
                rev: group.rev.into(),
                proc: group.proc.into(),
                replicas,
            }
        }
        KeyPath::Deployment { app } => DeploymentChanged {
            app: app.into(),
            revision: match change.deleted {
                true => None,
                false => Some(decode::<Deployment>(change.value)?.revision.into()),
            },
        },
        KeyPath::Host { host } if change.deleted => HostDown { host: host.into() },
        KeyPath::Host { host } if created => HostUp { host: host.into() },
        KeyPath::Host { host } => HostUpdated { host: host.into() },
        KeyPath::Instance { id } if change.deleted => InstanceUnregistered { id: id.into() },
        KeyPath::Instance { id } => {
            let id = String::from(id);
            let instance: Instance = decode(change.value)?;
            let host = instance.host.as_ref().map(ToString::to_string);
            if created {
                return Ok(Some(InstanceRegistered {
                    id,
                    app: instance.app.to_string(),
                    rev: instance.rev.to_string(),
                    proc: instance.proc.to_string(),
                    host,
                }));
            }
            // Without the previous value (compacted away) a state is reported as entered.
            let previous = change
                .prev
                .and_then(|prev| decode::<Instance>(prev).ok())
                .map(|p| p.state);
            if previous == Some(instance.state) {
                return Ok(Some(InstanceUpdated { id }));
            }
            match instance.state {
                InstanceState::Pending => InstanceUpdated { id },
                InstanceState::Claimed => InstanceClaimed { id, host },
                InstanceState::Running => InstanceStarted { id, host },
                InstanceState::Stopping => InstanceStopping { id },
                InstanceState::Exited => InstanceExited { id },
                InstanceState::Failed => InstanceFailed {
                    id,
                    reason: instance.reason,
                },
                InstanceState::Lost => InstanceLost {
                    id,
                    reason: instance.reason,
                },
            }
        }
        KeyPath::Relation { relation } if change.deleted => RelationRemoved {
            relation: relation.into(),
        },
        KeyPath::Relation { relation } => RelationAdded {
            relation: relation.into(),
        },
        KeyPath::Settings { relation, unit } => SettingsChanged {
            relation: relation.into(),
            unit: unit.into(),
        },
        // The hook's removal is the acknowledgement; the state it writes is its effect.
        KeyPath::RelationState { .. } => return Ok(None),
        // The controller's own bookkeeping; what it decides shows as notifications.
        KeyPath::Rollout { app } => {
            let status = match change.deleted {
                true => None,
                false => Some(decode::<RolloutStatus>(change.value)?),
            };
            RolloutChanged {
                app: app.into(),
                revision: status.as_ref().map(|s| s.revision.to_string()),
                phase: status.map(|s| s.phase.as_str().to_owned()),
            }
        }
        KeyPath::Tracked { .. } | KeyPath::ServiceStatus { .. } | KeyPath::Sequence { .. } => {
            return Ok(None);
        }
        // Retention removes old notifications: not a change anyone acts on.
        KeyPath::Notification { .. } if change.deleted => return Ok(None),
        KeyPath::Notification { .. } => {
            let notification: Notification = decode(change.value)?;
            Notified {
                seq: notification.seq,
                notification: notification.kind,
                service: notification.service.map(String::from),
                endpoint: notification.endpoint,
                app: notification.app.map(String::from),
            }
        }
        KeyPath::Hook { unit, relation } if change.deleted => HookDone {
            unit: unit.into(),
            relation: relation.into(),
        },
        KeyPath::Hook { unit, relation } => {
            let handed: HandedHook = decode(change.value)?;
            let hook = handed.hook;
            match handed.failed {
                Some(failure) if !created => HookFailed {
                    unit: unit.into(),
                    relation: relation.into(),
                    hook: hook.kind,
                    remote_unit: hook.remote_unit,
                    attempts: failure.attempts,
                    reason: failure.reason,
                },
                _ => HookQueued {
                    unit: unit.into(),
                    relation: relation.into(),
                    hook: hook.kind,
                    remote_unit: hook.remote_unit,
                },
            }
        }
        KeyPath::Ticket { host, ticket } if change.deleted => TicketDone {
            host: host.into(),
            ticket: ticket.into(),
        },
        KeyPath::Ticket { host, ticket } => {
            let value: Ticket = decode(change.value)?;
            if created {
                TicketCreated {
                    host: host.into(),
                    ticket: ticket.into(),
                    op: value.op,
                    instance: value.instance.to_string(),
                }
            } else {
                TicketClaimed {
                    host: host.into(),
                    ticket: ticket.into(),
                    by: value.claimed_by.map(|b| b.to_string()),
                }
            }
        }
        KeyPath::Service { service } if change.deleted => ServiceUnregistered {
            service: service.into(),
        },
        KeyPath::Service { service } => ServiceRegistered {
            service: service.into(),
        },
        KeyPath::Endpoint { service, id } => {
            return endpoint_event(service.into(), id.into(), change);
        }
        KeyPath::Schema | KeyPath::Other => return Ok(None),
    };
    Ok(Some(kind))
}

/// An endpoint's change as an event: only a live endpoint's deletion is a
/// death, and a live endpoint's update (credentials, a new lease) is none.
fn endpoint_event(
    service: String,
    id: String,
    change: &Change<'_>,
) -> Result<Option<EventKind>, String> {
    let departed = |bytes: &[u8]| decode::<ServiceEndpoint>(bytes).map(|e| e.departed);
    let was_departed = change.prev.map(|prev| departed(prev).unwrap_or(false));
    let kind = match change.deleted {
        true if was_departed == Some(true) => return Ok(None),
        true => EventKind::EndpointDown { service, id },
        false => match (departed(change.value)?, was_departed) {
            (true, Some(true)) => return Ok(None),
            (true, _) => EventKind::EndpointDeparted { service, id },
            (false, _) if change.version == 1 => EventKind::EndpointUp { service, id },
            (false, Some(true)) => EventKind::EndpointUp { service, id },
            (false, _) => return Ok(None),
        },
    };
    Ok(Some(kind))
}

struct Watch {
    watch: PrefixWatch,
    keys: Keys,
    /// The revision being numbered and the index its next event gets.
    numbering: (i64, u32),
    /// Events up to and including this (revision, index) were already seen.
    skip_through: Option<(i64, u32)>,
    pending: VecDeque<Event>,
    finished: bool,
}

impl Watch {
    /// The next event, reading more responses as needed; `None` once finished.
    async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            let response = match self.watch.next().await {
                WatchStep::Changes { response, .. } => response,
                // The stream promises no gap: a consumer resumes or relists itself.
                WatchStep::Compacted(compaction) => return self.fail(compaction.into()),
                WatchStep::Interrupted { error, .. } => return self.fail(error),
                WatchStep::List => {
                    return self.fail(Error::Request {
                        op: "watch",
                        message: "an event stream cannot list".to_owned(),
                    });
                }
            };
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key());
                let change = Change {
                    deleted: event.event_type() == EventType::Delete,
                    version: kv.version(),
                    value: kv.value(),
                    prev: event.prev_kv().map(|p| p.value()),
                };
                match classify(self.keys.parse(&key), &change) {
                    Ok(Some(kind)) => self.push(kv.mod_revision(), kind),
                    Ok(None) => {}
                    Err(reason) => {
                        tracing::warn!(%key, %reason, "skipping malformed registry value in the event stream")
                    }
                }
            }
        }
    }

    /// Numbers an event within its revision and queues it unless already seen.
    fn push(&mut self, revision: i64, kind: EventKind) {
        if self.numbering.0 != revision {
            self.numbering = (revision, 0);
        }
        let index = self.numbering.1;
        self.numbering.1 += 1;
        if self
            .skip_through
            .is_some_and(|seen| (revision, index) <= seen)
        {
            return;
        }
        self.pending.push_back(Event {
            revision,
            index,
            kind,
        });
    }

    fn fail(&mut self, error: Error) -> Option<Result<Event>> {
        self.finished = true;
        Some(Err(error))
    }
}

impl Visor {
    /// Streams every event from revision `from` on (0: from now).
    pub async fn watch_events(&self, from: i64) -> Result<EventStream> {
        self.watch(from, None).await
    }

    /// Streams every event after `last`, which an earlier stream yielded: the
    /// rest of `last`'s revision, then everything later. No gap, no repeat.
    pub async fn watch_events_after(&self, last: &Event) -> Result<EventStream> {
        self.watch(last.revision, Some((last.revision, last.index)))
            .await
    }

    async fn watch(&self, from: i64, skip_through: Option<(i64, u32)>) -> Result<EventStream> {
        let registry = self.registry();
        let mut watch = PrefixWatch::from_revision(registry.clone(), registry.keys().all(), from)
            .with_prev_kv();
        watch.open().await?;
        let watch = Watch {
            watch,
            keys: registry.keys().clone(),
            numbering: (0, 0),
            skip_through,
            pending: VecDeque::new(),
            finished: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            watch,
            |mut watch| async move {
                let next = watch.next().await?;
                Some((next, watch))
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> visor_controllers::Name {
        visor_controllers::Name::parse("test", s).expect("valid")
    }

    fn put<'a>(version: i64, value: &'a str, prev: Option<&'a str>) -> Change<'a> {
        Change {
            deleted: false,
            version,
            value: value.as_bytes(),
            prev: prev.map(str::as_bytes),
        }
    }

    const DELETE: Change<'static> = Change {
        deleted: true,
        version: 0,
        value: b"",
        prev: None,
    };

    fn instance(state: &str) -> String {
        format!(
            r#"{{"app":"web","rev":"v1","proc":"http","host":"h1","state":"{state}","created_at":"2026-01-01T00:00:00Z"}}"#
        )
    }

    #[test]
    fn a_hook_is_queued_when_handed_and_failed_when_its_agent_records_a_failure() {
        const HANDED: &str = r#"{"kind":"joined","relation_id":"r1","remote_unit":"db-0","change_version":4,"failed":null}"#;
        const FAILED: &str = r#"{"kind":"joined","relation_id":"r1","remote_unit":"db-0","change_version":4,"failed":{"attempts":2,"reason":"exited with code 1","at":"2026-01-01T00:00:00Z"}}"#;
        let hook = || KeyPath::Hook {
            unit: name("web-0"),
            relation: name("r1"),
        };
        let queued = EventKind::HookQueued {
            unit: "web-0".into(),
            relation: "r1".into(),
            hook: HookKind::Joined,
            remote_unit: Some("db-0".into()),
        };
        assert_eq!(
            classify(hook(), &put(1, HANDED, None)),
            Ok(Some(queued.clone()))
        );
        assert_eq!(classify(hook(), &put(2, HANDED, None)), Ok(Some(queued)));
        assert_eq!(
            classify(hook(), &put(3, FAILED, Some(HANDED))),
            Ok(Some(EventKind::HookFailed {
                unit: "web-0".into(),
                relation: "r1".into(),
                hook: HookKind::Joined,
                remote_unit: Some("db-0".into()),
                attempts: 2,
                reason: "exited with code 1".into(),
            }))
        );
        assert_eq!(
            classify(hook(), &DELETE),
            Ok(Some(EventKind::HookDone {
                unit: "web-0".into(),
                relation: "r1".into(),
            }))
        );
    }

    #[test]
    fn creation_update_and_deletion_of_plain_objects() {
        const APP: &str =
            r#"{"repo_url":"git://x","stack":"base","created_at":"2026-01-01T00:00:00Z"}"#;
        const HOST: &str =
            r#"{"addr":"10.0.0.1","capacity":4,"registered_at":"2026-01-01T00:00:00Z"}"#;
        let app = || KeyPath::App { app: name("web") };
        assert_eq!(
            classify(app(), &put(1, APP, None)),
            Ok(Some(EventKind::AppRegistered { app: "web".into() }))
        );
        assert_eq!(
            classify(app(), &put(2, APP, None)),
            Ok(Some(EventKind::AppUpdated { app: "web".into() }))
        );
        assert_eq!(
            classify(app(), &DELETE),
            Ok(Some(EventKind::AppUnregistered { app: "web".into() }))
        );
        assert!(classify(app(), &put(1, "{}", None)).is_err());
        let host = || KeyPath::Host { host: name("h1") };
        assert_eq!(
            classify(host(), &put(1, HOST, None)),
            Ok(Some(EventKind::HostUp { host: "h1".into() }))
        );
        assert_eq!(
            classify(host(), &DELETE),
            Ok(Some(EventKind::HostDown { host: "h1".into() }))
        );
    }

    #[test]
    fn instance_events_follow_the_state_entered() {
        let path = || KeyPath::Instance { id: name("i1") };
        let (claimed, running) = (instance("claimed"), instance("running"));
        assert_eq!(
            classify(path(), &put(3, &running, Some(&claimed))),
            Ok(Some(EventKind::InstanceStarted {
                id: "i1".into(),
                host: Some("h1".into())
            }))
        );
        assert_eq!(
            classify(path(), &put(4, &running, Some(&running))),
            Ok(Some(EventKind::InstanceUpdated { id: "i1".into() }))
        );
        assert_eq!(
            classify(path(), &put(1, &instance("pending"), None)),
            Ok(Some(EventKind::InstanceRegistered {
                id: "i1".into(),
                app: "web".into(),
                rev: "v1".into(),
                proc: "http".into(),
                host: Some("h1".into())
            }))
        );
    }

    #[test]
    fn malformed_values_are_reported_not_mapped() {
        let path = KeyPath::Instance { id: name("i1") };
        assert!(classify(path, &put(1, "not json", None)).is_err());
        let scale = KeyPath::Scale {
            group: visor_controllers::GroupKey::new(name("a"), name("b"), name("c")),
        };
        assert!(classify(scale, &put(1, r#"{"replicas":-1}"#, None)).is_err());
    }

    #[test]
    fn a_rollout_moving_is_an_event_that_names_its_phase() {
        let status = r#"{"revision":"v2","stable":"v1","phase":"rolling-back","started_at":"2026-01-01T00:00:00Z"}"#;
        let path = || KeyPath::Rollout { app: name("web") };
        assert_eq!(
            classify(path(), &put(2, status, None)),
            Ok(Some(EventKind::RolloutChanged {
                app: "web".into(),
                revision: Some("v2".into()),
                phase: Some("rolling-back".into()),
            }))
        );
        assert_eq!(
            classify(path(), &DELETE),
            Ok(Some(EventKind::RolloutChanged {
                app: "web".into(),
                revision: None,
                phase: None,
            }))
        );
        assert!(classify(path(), &put(3, r#"{"phase":"done"}"#, None)).is_err());
    }

    #[test]
    fn only_a_live_endpoints_deletion_is_down() {
        let live =
            r#"{"hostname":"db1","ports":{"pg":"5432"},"registered_at":"2026-01-01T00:00:00Z"}"#;
        let gone = r#"{"hostname":"db1","ports":{"pg":"5432"},"departed":true,"registered_at":"2026-01-01T00:00:00Z"}"#;
        let path = || KeyPath::Endpoint {
            service: name("db"),
            id: name("u1"),
        };
        let (service, id) = ("db".to_owned(), "u1".to_owned());
        let up = EventKind::EndpointUp {
            service: service.clone(),
            id: id.clone(),
        };
        assert_eq!(classify(path(), &put(1, live, None)), Ok(Some(up.clone())));
        assert_eq!(
            classify(path(), &put(2, live, Some(live))),
            Ok(None),
            "credentials"
        );
        assert_eq!(classify(path(), &put(3, live, Some(gone))), Ok(Some(up)));
        assert_eq!(
            classify(path(), &put(2, gone, Some(live))),
            Ok(Some(EventKind::EndpointDeparted {
                service: service.clone(),
                id: id.clone()
            }))
        );
        let delete = |prev| Change {
            deleted: true,
            version: 0,
            value: b"",
            prev,
        };
        assert_eq!(
            classify(path(), &delete(Some(live.as_bytes()))),
            Ok(Some(EventKind::EndpointDown { service, id }))
        );
        assert_eq!(classify(path(), &delete(Some(gone.as_bytes()))), Ok(None));
        assert!(classify(path(), &put(1, "{}", None)).is_err());
    }

    #[test]
    fn keys_outside_the_layout_carry_no_event() {
        assert_eq!(classify(KeyPath::Other, &put(1, "x", None)), Ok(None));
        assert_eq!(classify(KeyPath::Schema, &put(1, "x", None)), Ok(None));
    }

    #[test]
    fn events_serialize_with_a_type_tag() {
        let event = Event {
            revision: 7,
            index: 0,
            kind: EventKind::AppRegistered { app: "web".into() },
        };
        let json = serde_json::to_string(&event).expect("serializes");
        assert_eq!(
            json,
            r#"{"revision":7,"index":0,"type":"app-registered","app":"web"}"#
        );
    }
}
