//! The services loop: turn endpoint deaths into numbered `service-down`
//! notifications, and critical services falling below (or back to) their
//! minimum into `service-degraded` / `service-restored`.
//!
//! One key covers every service, so notifications are numbered in the
//! order deaths are detected. A reconcile reads the caches, asks the pure
//! [`plan_services`] what to do, and writes it fenced: a posting consumes
//! the tracked record (or endpoint key) it reports on in the same
//! transaction, which is what makes each death reported exactly once across
//! retries and leader changes.
//!
//! It is queued by any change of services, endpoints, tracked endpoints
//! and statuses, by hosts (a host's death is its endpoints' death) and by
//! instances becoming lost.
//!
//! Invariant: decisions are made from caches that show this leader's own
//! last writes, so a death is never posted from a view that predates the
//! posting of it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use visor_controllers::{
    EndpointView, InstanceState, Name, NotificationKind, ServiceAction, ServiceView,
    ServicesSnapshot, plan_services,
};

use super::ControllerConfig;
use super::caches::Caches;
use super::context::{Context, ReconcileError};
use super::metrics::ControllerMetrics;
use crate::registry::{Forgotten, Keys, Posting, PostingSubject, Visor};
use crate::runtime::cache::Change;
use crate::runtime::runner::Action;
use crate::runtime::{ReadYourWrites, ReconcileLoop, Touched};

/// The services loop of one term.
pub fn reconcile_loop(
    ctx: &Context,
    config: &ControllerConfig,
) -> ReconcileLoop<(), ReconcileError> {
    let caches = &ctx.caches;
    let instances = caches.clone();
    let services = Arc::new(ServicesContext::new(
        ctx.visor.clone(),
        caches.clone(),
        ctx.metrics.clone(),
        config.tombstone_grace,
    ));
    let any = |_: &Change| Touched::Key(());
    ReconcileLoop::new("services", || [()], move |()| reconcile(services.clone()))
        .resync_every(config.resync)
        .watches(caches.hosts.changes(), any)
        .watches(caches.services.changes(), any)
        .watches(caches.endpoints.changes(), any)
        .watches(caches.tracked.changes(), any)
        .watches(caches.statuses.changes(), any)
        .watches(caches.instances.changes(), move |change| {
            let instance = change
                .key()
                .and_then(|key| instances.instances.get_shared(key));
            let lost = instance.is_some_and(|i| i.value.state == InstanceState::Lost);
            Touched::only_if(lost, ())
        })
}

/// Why a reporting action's report is there: the core words every `Down`,
/// `Degraded` and `Restored`.
const REPORTED: &str = "invariant: every reporting action has a report";

/// What every services reconcile of one leadership shares.
#[derive(Debug)]
pub struct ServicesContext {
    /// The fenced API.
    pub visor: Visor,
    pub caches: Caches,
    pub metrics: ControllerMetrics,
    /// How long tombstones of clean stops are kept.
    pub tombstone_grace: chrono::TimeDelta,
    /// This leader's last services writes.
    written: ReadYourWrites,
}

impl ServicesContext {
    /// A context for one term.
    pub fn new(
        visor: Visor,
        caches: Caches,
        metrics: ControllerMetrics,
        tombstone_grace: Duration,
    ) -> Self {
        Self {
            visor,
            caches,
            metrics,
            tombstone_grace: chrono::TimeDelta::from_std(tombstone_grace)
                .unwrap_or(chrono::TimeDelta::MAX),
            written: ReadYourWrites::default(),
        }
    }

    async fn caught_up(&self) -> Result<(), ReconcileError> {
        let caches = &self.caches;
        let reached = |[target]: [i64; 1]| async move {
            caches.tracked.wait_for_revision(target).await
                && caches.endpoints.wait_for_revision(target).await
                && caches.statuses.wait_for_revision(target).await
        };
        Ok(self
            .written
            .caught_up(self.visor.registry(), reached)
            .await?)
    }

    fn wrote(&self, revision: i64) {
        self.written.wrote(revision);
    }
}

/// The (service, id) of an `/endpoints/<svc>/<id>` or `/tracked/<svc>/<id>` key.
fn service_and_id(keys: &Keys, key: &str) -> Option<(Name, Name)> {
    keys.parse(key).service_endpoint()
}

/// Reads what the decision needs from the caches.
fn snapshot(ctx: &ServicesContext) -> ServicesSnapshot {
    let caches = &ctx.caches;
    let keys = caches.keys();
    let services = caches
        .services
        .list()
        .1
        .into_iter()
        .filter_map(|def| {
            let name = keys.parse(&def.key).name()?.clone();
            let degraded = caches
                .statuses
                .get(&keys.service_status(&name))
                .is_some_and(|s| s.value.degraded);
            Some(ServiceView {
                name,
                critical: def.value.critical,
                min_endpoints: def.value.min_endpoints,
                degraded,
            })
        })
        .collect();
    let endpoints: Vec<EndpointView> = caches
        .endpoints
        .list()
        .1
        .into_iter()
        .filter_map(|e| {
            let (service, id) = service_and_id(keys, &e.key)?;
            Some(EndpointView {
                service,
                id,
                incarnation: e.create_revision,
                hostname: e.value.hostname,
                departed: e.value.departed,
                departed_at: e.value.departed_at,
                host: e.value.host,
                instance: e.value.instance,
            })
        })
        .collect();
    let lost_instances: BTreeSet<Name> = endpoints
        .iter()
        .filter_map(|e| e.instance.clone())
        .filter(|id| {
            caches
                .instances
                .get(&keys.instance(id))
                .is_some_and(|i| i.value.state == InstanceState::Lost)
        })
        .collect();
    let tracked = caches
        .tracked
        .list()
        .1
        .into_iter()
        .filter_map(|t| {
            Some((
                service_and_id(keys, &t.key)?,
                (t.value.hostname, t.value.incarnation),
            ))
        })
        .collect();
    ServicesSnapshot {
        services,
        endpoints,
        tracked,
        live_hosts: caches.live_hosts(),
        lost_instances,
        sweep_before: Utc::now().checked_sub_signed(ctx.tombstone_grace),
    }
}

/// Settles every service: tracks new endpoints, forgets clean stops, and
/// posts what died or changed status.
pub async fn reconcile(ctx: Arc<ServicesContext>) -> Result<Action, ReconcileError> {
    ctx.caught_up().await?;
    let state = snapshot(&ctx);
    report_gauges(&ctx, &state);
    let actions = plan_services(&state);
    let caches = &ctx.caches;
    let keys = caches.keys();
    let tracked_revision = |service: &Name, id: &Name| {
        caches
            .tracked
            .get(&keys.tracked(service, id))
            .map(|t| t.mod_revision)
    };
    let endpoint_revision = |service: &Name, id: &Name| {
        caches
            .endpoints
            .get(&keys.endpoint(service, id))
            .map(|e| e.mod_revision)
    };
    let status_revision = |service: &Name| {
        caches
            .statuses
            .get(&keys.service_status(service))
            .map(|s| s.mod_revision)
    };

    let mut track = Vec::new();
    let mut forget = Vec::new();
    let mut postings = Vec::new();
    for action in actions {
        // What a Down, Degraded or Restored posts; the core words it.
        let posted = action.report().map(|report| (report.kind, report.reason));
        match action {
            ServiceAction::Track {
                service,
                id,
                hostname,
                incarnation,
            } => track.push((service, id, hostname, incarnation)),
            ServiceAction::Forget {
                service,
                id,
                tracked,
                sweep,
            } => forget.push(Forgotten {
                tracked: tracked.then(|| tracked_revision(&service, &id)).flatten(),
                tombstone: sweep.then(|| endpoint_revision(&service, &id)).flatten(),
                service,
                id: id.into(),
            }),
            ServiceAction::Down {
                service,
                id,
                hostname,
                tracked,
                present,
                ..
            } => {
                let (kind, reason) = posted.expect(REPORTED);
                postings.push(Posting {
                    kind,
                    subject: PostingSubject::Service {
                        tracked: tracked.then(|| tracked_revision(&service, &id)).flatten(),
                        endpoint_key: present.then(|| endpoint_revision(&service, &id)).flatten(),
                        endpoint: Some(id.into()),
                        hostname: Some(hostname),
                        status: None,
                        service,
                    },
                    reason,
                });
            }
            ServiceAction::Degraded { service, .. } | ServiceAction::Restored { service, .. } => {
                let (kind, reason) = posted.expect(REPORTED);
                let degraded = kind == NotificationKind::ServiceDegraded;
                postings.push(Posting {
                    kind,
                    subject: PostingSubject::Service {
                        endpoint: None,
                        hostname: None,
                        tracked: None,
                        endpoint_key: None,
                        status: Some((degraded, status_revision(&service))),
                        service,
                    },
                    reason,
                });
            }
        }
    }
    if !postings.is_empty() {
        let (posted, revision) = ctx.visor.post_notifications(&postings).await?;
        ctx.wrote(revision);
        ctx.metrics.posted(&posted);
    }
    if !track.is_empty() {
        ctx.wrote(ctx.visor.track_endpoints(&track).await?);
    }
    if !forget.is_empty() {
        ctx.wrote(ctx.visor.forget_endpoints(&forget).await?);
    }
    Ok(Action::Done)
}

/// Sets `visor_endpoints{service}` and `visor_degraded_services` from what
/// is about to be decided on.
fn report_gauges(ctx: &ServicesContext, state: &ServicesSnapshot) {
    let mut live: BTreeMap<&Name, i64> = state.services.iter().map(|s| (&s.name, 0)).collect();
    for endpoint in state.endpoints.iter().filter(|e| !e.departed) {
        *live.entry(&endpoint.service).or_default() += 1;
    }
    ctx.metrics.endpoints.reset();
    for (service, count) in live {
        ctx.metrics
            .endpoints
            .with_label_values(&[service.as_str()])
            .set(count);
    }
    let degraded = state.services.iter().filter(|s| s.degraded).count();
    ctx.metrics
        .degraded
        .set(i64::try_from(degraded).unwrap_or(i64::MAX));
}
