//! Down-service notifications and the controller's service bookkeeping:
//! tracked endpoints, service statuses, and the numbered notifications
//! themselves.
//!
//! Invariants: notifications are numbered from 1 without gaps, in the order
//! they are posted — each posting transaction compares the sequence key
//! with the value it read and advances it — and a posting consumes the
//! records it reports on (a tracked endpoint, an endpoint key, a service
//! status) in the same transaction, so a retry or a new leader cannot post
//! the same death twice.
//!
//! Readers list them ([`Visor::notifications`]) or follow them
//! ([`Visor::follow_notifications`], in `follow`).

mod follow;

pub use follow::NotificationStream;

use chrono::{DateTime, Utc};
use visor_controllers::{
    Name, Notification, NotificationKind, Retention, RolloutStatus, Sequence, ServiceStatus,
    TrackedEndpoint,
};

use super::{Visor, name};
use crate::registry::error::{ObjectRef, Result};
use crate::registry::{KeyPath, Kind};
use etcd_client::{GetOptions, SortOrder, SortTarget};

use crate::registry::decode;
use crate::registry::store::{Cascade, Delete, Encode, Expected, Listing, Requires, Write};

/// Operations one posting may need: its notification, and up to three
/// records consumed or updated (and the app a rollout's requires). With the
/// sequence key and the fence, 30 postings fit etcd's 128 operations per
/// transaction.
const POSTINGS_PER_TXN: usize = 30;
/// Notifications looked at (and deleted) per retention step.
const TRIM_PAGE: i64 = 126;

/// A notification to post, and the records it settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// What it reports.
    pub kind: NotificationKind,
    /// What it is about, and what it settles.
    pub subject: PostingSubject,
    /// Why, in words.
    pub reason: String,
}

/// What a notification is about, with the records posting it settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostingSubject {
    /// A service: one of its endpoints died, or its status changed.
    Service {
        /// The service.
        service: Name,
        /// The endpoint that died, for `service-down`.
        endpoint: Option<String>,
        /// Its hostname.
        hostname: Option<String>,
        /// The tracked record it consumes, at this mod revision.
        tracked: Option<i64>,
        /// The endpoint key it removes, at this mod revision.
        endpoint_key: Option<i64>,
        /// The service status it sets (degraded or not), over the status as
        /// last seen (`None`: absent).
        status: Option<(bool, Option<i64>)>,
    },
    /// An app's rollout: it failed, or its rollback is done.
    Rollout {
        /// The app.
        app: Name,
        /// The rollout status it sets (whose revision the notification
        /// names), over the one last read (its mod revision; `None`: absent).
        status: RolloutStatus,
        /// That mod revision.
        expected: Option<i64>,
    },
}

/// A record the controller drops without a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// The service.
    pub service: Name,
    /// The endpoint id.
    pub id: String,
    /// Its tracked record, at this mod revision, if any.
    pub tracked: Option<i64>,
    /// Its tombstone, at this mod revision, if it is swept now.
    pub tombstone: Option<i64>,
}

/// A document of either kind a posting writes.
enum Posted {
    Notification(Notification),
    Sequence(Sequence),
    Status(ServiceStatus),
    Tracked(TrackedEndpoint),
    Rollout(RolloutStatus),
}

impl Encode for Posted {
    fn encode(&self) -> Vec<u8> {
        match self {
            Self::Notification(n) => n.encode(),
            Self::Sequence(s) => s.encode(),
            Self::Status(s) => s.encode(),
            Self::Tracked(t) => t.encode(),
            Self::Rollout(r) => r.encode(),
        }
    }
}

fn endpoint_id(id: &str) -> Result<Name> {
    name("endpoint", id)
}

impl Visor {
    /// Starts tracking live endpoints: (service, id, hostname, incarnation),
    /// each created only where no record exists. Returns the last revision.
    pub async fn track_endpoints(&self, endpoints: &[(Name, Name, String, i64)]) -> Result<i64> {
        let mut revision = 0;
        let now = Utc::now();
        for chunk in endpoints.chunks(126) {
            let writes = chunk
                .iter()
                .map(|(service, id, hostname, incarnation)| {
                    Ok(Write {
                        object: ObjectRef::new(Kind::Tracked, &[service.as_str(), id.as_str()]),
                        key: self.keys().tracked(service, id),
                        value: Posted::Tracked(TrackedEndpoint {
                            hostname: hostname.clone(),
                            incarnation: *incarnation,
                            since: now,
                        }),
                        expected: Expected::Absent { lease: None },
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let written = self.registry.write_objects(writes, &[]).await?;
            revision = written.last().map_or(revision, |w| w.revision);
        }
        Ok(revision)
    }

    /// Drops the records of cleanly stopped endpoints. Returns the last revision.
    pub async fn forget_endpoints(&self, forgotten: &[Forgotten]) -> Result<i64> {
        let mut revision = 0;
        for chunk in forgotten.chunks(63) {
            let mut deletes = Vec::new();
            for item in chunk {
                let id = endpoint_id(&item.id)?;
                if let Some(expected) = item.tracked {
                    deletes.push(Delete {
                        object: ObjectRef::new(
                            Kind::Tracked,
                            &[item.service.as_str(), id.as_str()],
                        ),
                        key: self.keys().tracked(&item.service, &id),
                        expected: Some(expected),
                    });
                }
                if let Some(expected) = item.tombstone {
                    deletes.push(Delete {
                        object: ObjectRef::new(
                            Kind::Endpoint,
                            &[item.service.as_str(), id.as_str()],
                        ),
                        key: self.keys().endpoint(&item.service, &id),
                        expected: Some(expected),
                    });
                }
            }
            if !deletes.is_empty() {
                revision = self.registry.delete_objects(deletes, &[]).await?;
            }
        }
        Ok(revision)
    }

    /// Posts `postings` in order under the next sequence numbers, each in
    /// the same transaction as the records it settles. Returns what was
    /// posted and the last revision. A `Conflict` means something changed
    /// since it was read: nothing of that transaction was written.
    pub async fn post_notifications(
        &self,
        postings: &[Posting],
    ) -> Result<(Vec<Notification>, i64)> {
        let sequence_key = self.keys().notification_sequence();
        let sequence_ref = ObjectRef::new(Kind::Sequence, &["notifications"]);
        let (found, _) = self
            .registry
            .find_object::<Sequence>(Kind::Sequence, &sequence_key)
            .await?;
        let mut sequence_revision = found.as_ref().map(|s| s.mod_revision);
        let mut last = found.map_or(0, |s| s.value.last);
        let mut posted = Vec::new();
        let mut revision = 0;
        for chunk in postings.chunks(POSTINGS_PER_TXN) {
            let now = Utc::now();
            let mut writes = Vec::new();
            let mut deletes = Vec::new();
            let mut requires = Vec::new();
            for posting in chunk {
                last += 1;
                let mut notification = Notification {
                    seq: last,
                    kind: posting.kind,
                    service: None,
                    endpoint: None,
                    hostname: None,
                    app: None,
                    revision: None,
                    reason: posting.reason.clone(),
                    detected_at: now,
                };
                match &posting.subject {
                    PostingSubject::Service {
                        service,
                        endpoint,
                        hostname,
                        ..
                    } => {
                        notification.service = Some(service.clone());
                        notification.endpoint = endpoint.clone();
                        notification.hostname = hostname.clone();
                    }
                    PostingSubject::Rollout { app, status, .. } => {
                        notification.app = Some(app.clone());
                        notification.revision = Some(status.revision.clone());
                    }
                }
                posted.push(notification.clone());
                writes.push(Write {
                    object: ObjectRef::new(Kind::Notification, &[&last.to_string()]),
                    key: self.keys().notification(last),
                    value: Posted::Notification(notification),
                    expected: Expected::Absent { lease: None },
                });
                self.settle(posting, now, &mut writes, &mut deletes, &mut requires)?;
            }
            writes.push(Write {
                object: sequence_ref.clone(),
                key: sequence_key.clone(),
                value: Posted::Sequence(Sequence { last }),
                expected: Expected::Current(sequence_revision),
            });
            let written = self
                .registry
                .write_and_delete(writes, &deletes, &[], &requires)
                .await?;
            revision = written.last().map_or(revision, |w| w.revision);
            sequence_revision = Some(revision);
        }
        Ok((posted, revision))
    }

    /// Adds what settling `posting` writes, deletes and requires.
    fn settle(
        &self,
        posting: &Posting,
        now: DateTime<Utc>,
        writes: &mut Vec<Write<Posted>>,
        deletes: &mut Vec<Delete>,
        requires: &mut Vec<Requires>,
    ) -> Result<()> {
        match &posting.subject {
            PostingSubject::Service {
                service,
                endpoint,
                tracked,
                endpoint_key,
                status,
                ..
            } => {
                if let Some(id) = endpoint {
                    let id = endpoint_id(id)?;
                    if let Some(expected) = *tracked {
                        deletes.push(Delete {
                            object: ObjectRef::new(Kind::Tracked, &[service.as_str(), id.as_str()]),
                            key: self.keys().tracked(service, &id),
                            expected: Some(expected),
                        });
                    }
                    if let Some(expected) = *endpoint_key {
                        deletes.push(Delete {
                            object: ObjectRef::new(
                                Kind::Endpoint,
                                &[service.as_str(), id.as_str()],
                            ),
                            key: self.keys().endpoint(service, &id),
                            expected: Some(expected),
                        });
                    }
                }
                if let Some((degraded, expected)) = *status {
                    writes.push(Write {
                        object: ObjectRef::new(Kind::ServiceStatus, &[service.as_str()]),
                        key: self.keys().service_status(service),
                        value: Posted::Status(ServiceStatus {
                            degraded,
                            changed_at: now,
                        }),
                        expected: Expected::Current(expected),
                    });
                }
            }
            PostingSubject::Rollout {
                app,
                status,
                expected,
            } => {
                writes.push(Write {
                    object: ObjectRef::new(Kind::Rollout, &[app.as_str()]),
                    key: self.keys().rollout(app),
                    value: Posted::Rollout(status.clone()),
                    expected: Expected::Current(*expected),
                });
                requires.push(Requires {
                    key: self.keys().app(app),
                    object: ObjectRef::new(Kind::App, &[app.as_str()]),
                });
            }
        }
        Ok(())
    }

    /// Lists the notifications with a sequence number above `after` (all
    /// retained ones for 0), in sequence order.
    pub async fn notifications(&self, after: u64) -> Result<Listing<Notification>> {
        let mut listing: Listing<Notification> = self
            .registry
            .list_objects(
                Kind::Notification,
                &self.keys().kind_prefix(Kind::Notification),
            )
            .await?;
        listing.items.retain(|n| n.value.seq > after);
        listing.items.sort_by_key(|n| n.value.seq);
        Ok(listing)
    }

    /// The last notification sequence number handed out (0 before any).
    pub async fn last_notification(&self) -> Result<u64> {
        let key = self.keys().notification_sequence();
        let (found, _) = self
            .registry
            .find_object::<Sequence>(Kind::Sequence, &key)
            .await?;
        Ok(found.map_or(0, |s| s.value.last))
    }

    /// Deletes the oldest notifications beyond retention (numbered `last -
    /// keep` or lower, or detected before `older_than`, as [`Retention`]
    /// says), up to the first one kept. Returns how many were deleted.
    pub async fn trim_notifications(&self, keep: u64, older_than: DateTime<Utc>) -> Result<usize> {
        let retention = Retention {
            last: self.last_notification().await?,
            keep,
            older_than,
        };
        let prefix = self.keys().kind_prefix(Kind::Notification);
        let mut trimmed = 0;
        loop {
            let options = GetOptions::new()
                .with_prefix()
                .with_limit(TRIM_PAGE)
                .with_sort(SortTarget::Key, SortOrder::Ascend);
            let mut kv = self.registry.kv_client();
            let page = self
                .registry
                .call("list", kv.get(prefix.as_str(), Some(options)))
                .await?;
            let revision = page.header().map_or(0, |h| h.revision());
            let mut expired = Vec::new();
            for item in page.kvs() {
                let key = String::from_utf8_lossy(item.key());
                // A key that numbers no notification counts as the oldest:
                // no one can read it either.
                let seq = match self.keys().parse(&key) {
                    KeyPath::Notification { seq } => seq,
                    _ => 0,
                };
                let detected_at = decode::<Notification>(Kind::Notification, item, revision)
                    .ok()
                    .map(|n| n.value.detected_at);
                if !retention.expires(seq, detected_at) {
                    break;
                }
                expired.push(Cascade::Key(key.into_owned()));
            }
            if expired.is_empty() {
                return Ok(trimmed);
            }
            trimmed += expired.len();
            self.registry.delete_objects(Vec::new(), &expired).await?;
        }
    }
}
