//! The controller's domain metrics (`visor_*`) and its standing (leader
//! status, registry reachability), next to the runtime's generic
//! `workqueue_*` and `controller_runtime_*` ones.
//!
//! Invariant: the standing is exported from the moment the metrics are
//! registered, before the registry is first reached, and `/metrics` and
//! `/healthz` report it alike ([`Standing`] sets both).

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::sync::watch;

use crate::admin::Health;

/// The election name in `leader_election_master_status{name}`.
pub const ELECTION_NAME: &str = "visor-controller";

/// Everything the controller reports about its own work.
#[derive(Debug, Clone)]
pub struct ControllerMetrics {
    /// `leader_election_master_status{name}`: 1 while this replica leads.
    pub leader: IntGaugeVec,
    /// `visor_registry_reachable`: 1 while the registry answers this replica.
    pub registry_reachable: IntGauge,
    /// `visor_tickets_emitted_total{op}`
    pub tickets: IntCounterVec,
    /// `visor_unplaceable_instances{app,rev,proc}`: starts waiting for a host.
    pub unplaceable: IntGaugeVec,
    /// `visor_instances{state}`
    pub instances: IntGaugeVec,
    /// `visor_hosts_alive`
    pub hosts_alive: IntGauge,
    /// `visor_instances_lost_total`
    pub lost: IntCounter,
    /// `visor_instances_collected_total`
    pub collected: IntCounter,
    /// `visor_hooks_handed_total{kind}`: relation hooks handed to units.
    pub hooks: IntCounterVec,
    /// `visor_notifications_total{kind}`: notifications posted.
    pub notifications: IntCounterVec,
    /// `visor_endpoints{service}`: live endpoints per service.
    pub endpoints: IntGaugeVec,
    /// `visor_degraded_services`: critical services below their minimum.
    pub degraded: IntGauge,
    /// `visor_rollout_phase{app,phase}`: 1 for the phase each rollout is in.
    pub rollout_phase: IntGaugeVec,
    /// `visor_rollout_ready_instances{app}`: ready instances of the revision
    /// each rollout aims at, against `visor_rollout_desired_instances{app}`.
    pub rollout_ready: IntGaugeVec,
    /// `visor_rollout_desired_instances{app}`.
    pub rollout_desired: IntGaugeVec,
    /// `visor_rollouts_ended_total{result}`: rollouts completed, rolled back or paused.
    pub rollouts_ended: IntCounterVec,
}

impl ControllerMetrics {
    /// Counts and logs notifications just posted (by the services or the
    /// rollout loop): an operator sees each in the log as it is posted.
    pub fn posted(&self, notifications: &[visor_controllers::Notification]) {
        fn or_none(name: Option<&visor_controllers::Name>) -> &str {
            name.map_or("-", visor_controllers::Name::as_str)
        }
        for notification in notifications {
            self.notifications
                .with_label_values(&[notification.kind.as_str()])
                .inc();
            tracing::warn!(
                seq = notification.seq,
                kind = %notification.kind,
                service = or_none(notification.service.as_ref()),
                endpoint = notification.endpoint.as_deref().unwrap_or("-"),
                app = or_none(notification.app.as_ref()),
                revision = or_none(notification.revision.as_ref()),
                reason = %notification.reason,
                "notification posted"
            );
        }
    }

    /// Creates the metrics and registers them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        use crate::telemetry::register as add;
        Ok(Self {
            leader: add(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "leader_election_master_status",
                        "1 while this replica is the leader.",
                    ),
                    &["name"],
                )?,
            )?,
            registry_reachable: add(
                registry,
                IntGauge::new(
                    "visor_registry_reachable",
                    "1 when this replica's last attempt to use the registry (connect, lease grant, campaign) succeeded; 0 from start-up until one does, and after one fails.",
                )?,
            )?,
            tickets: add(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "visor_tickets_emitted_total",
                        "Start and stop tickets emitted.",
                    ),
                    &["op"],
                )?,
            )?,
            unplaceable: add(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "visor_unplaceable_instances",
                        "Instances waiting for a host that can take them.",
                    ),
                    &["app", "rev", "proc"],
                )?,
            )?,
            instances: add(
                registry,
                IntGaugeVec::new(
                    Opts::new("visor_instances", "Instances by state."),
                    &["state"],
                )?,
            )?,
            hosts_alive: add(
                registry,
                IntGauge::new("visor_hosts_alive", "Hosts whose registration is live.")?,
            )?,
            lost: add(
                registry,
                IntCounter::new(
                    "visor_instances_lost_total",
                    "Instances marked lost with their host.",
                )?,
            )?,
            collected: add(
                registry,
                IntCounter::new(
                    "visor_instances_collected_total",
                    "Terminal instances garbage-collected.",
                )?,
            )?,
            hooks: add(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "visor_hooks_handed_total",
                        "Relation hooks handed to units.",
                    ),
                    &["kind"],
                )?,
            )?,
            notifications: add(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "visor_notifications_total",
                        "Notifications posted (service-down, service-degraded, service-restored).",
                    ),
                    &["kind"],
                )?,
            )?,
            endpoints: add(
                registry,
                IntGaugeVec::new(
                    Opts::new("visor_endpoints", "Live endpoints per service."),
                    &["service"],
                )?,
            )?,
            degraded: add(
                registry,
                IntGauge::new(
                    "visor_degraded_services",
                    "Critical services reported degraded (below their minimum endpoints).",
                )?,
            )?,
            rollout_phase: add(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "visor_rollout_phase",
                        "1 for the phase each app's rollout is in (progressing, complete, rolling-back, rolled-back, paused).",
                    ),
                    &["app", "phase"],
                )?,
            )?,
            rollout_ready: add(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "visor_rollout_ready_instances",
                        "Running instances of the revision each app's rollout aims at.",
                    ),
                    &["app"],
                )?,
            )?,
            rollout_desired: add(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "visor_rollout_desired_instances",
                        "Instances each app's deployment asks for, all proc types together.",
                    ),
                    &["app"],
                )?,
            )?,
            rollouts_ended: add(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "visor_rollouts_ended_total",
                        "Rollouts ended, by result (complete, rolled-back, paused).",
                    ),
                    &["result"],
                )?,
            )?,
        })
    }

    /// Sets `visor_instances{state}` from counts by state; states not
    /// counted are zero.
    pub fn count_instances(
        &self,
        counts: &std::collections::BTreeMap<visor_controllers::InstanceState, usize>,
    ) {
        for state in visor_controllers::InstanceState::ALL {
            let count = counts.get(&state).copied().unwrap_or(0);
            self.instances
                .with_label_values(&[state.as_str()])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Forgets the gauges that describe the registry as a leader saw it, so
    /// a standby does not report a stale picture next to the leader's.
    pub fn clear_observations(&self) {
        self.unplaceable.reset();
        self.instances.reset();
        self.hosts_alive.set(0);
        self.endpoints.reset();
        self.degraded.set(0);
        self.rollout_phase.reset();
        self.rollout_ready.reset();
        self.rollout_desired.reset();
    }

    /// Sets the rollout gauges of `app`: its phase, and its ready and
    /// desired instances.
    pub fn rollout(
        &self,
        app: &str,
        phase: visor_controllers::RolloutPhase,
        ready: u32,
        desired: u32,
    ) {
        use visor_controllers::RolloutPhase::*;
        for each in [Progressing, Complete, RollingBack, RolledBack, Paused] {
            self.rollout_phase
                .with_label_values(&[app, each.as_str()])
                .set(i64::from(each == phase));
        }
        self.rollout_ready
            .with_label_values(&[app])
            .set(i64::from(ready));
        self.rollout_desired
            .with_label_values(&[app])
            .set(i64::from(desired));
    }
}

/// Whether this replica reaches the registry and whether it leads, as
/// `leader_election_master_status`, `visor_registry_reachable` and
/// `/healthz` report it.
#[derive(Debug)]
pub struct Standing {
    leader: IntGauge,
    reachable: IntGauge,
    health: watch::Sender<Health>,
}

impl Standing {
    /// Neither reachable nor leading, until told otherwise; the gauges are
    /// set at once, so they are exported from now on.
    pub fn new(metrics: &ControllerMetrics) -> Self {
        let standing = Self {
            leader: metrics.leader.with_label_values(&[ELECTION_NAME]),
            reachable: metrics.registry_reachable.clone(),
            health: watch::Sender::new(Health::default()),
        };
        standing.leader.set(0);
        standing.reachable.set(0);
        standing
    }

    /// What `/healthz` reports, following every change.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    /// The last attempt to use the registry succeeded (or not).
    pub fn set_reachable(&self, reachable: bool) {
        self.reachable.set(i64::from(reachable));
        self.health
            .send_modify(|health| health.registry_reachable = reachable);
    }

    /// This replica leads (or not).
    pub fn set_leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
        self.health.send_modify(|health| health.leading = leading);
    }
}
