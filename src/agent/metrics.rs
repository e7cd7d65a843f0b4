//! The host agent's metrics (`visor_agent_*`), and its standing as
//! `/healthz` and `/readyz` report it.
//!
//! Invariants: every series exists from registration on, each label value
//! at zero (a counter's first increment is then visible to `increase()`,
//! and dashboards show 0 rather than no data); label values come from
//! enums, never from free strings; and the gauges of the agent's standing
//! and its health endpoints are set by the same calls, so they agree.
//! The relation hook runner registers its own `visor_agent_hook_*` metrics.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use tokio::sync::watch;
use visor_controllers::TicketOp;

use crate::admin::Health;

/// Buckets of `visor_agent_ticket_seconds`: a start includes fetching and
/// unpacking the revision, so up to minutes.
const TICKET_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Where an instance is on this host, as `visor_agent_instances{state}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InstancePhase {
    /// Its start ticket is claimed; its process is being set up or started.
    Starting,
    /// Its process runs.
    Running,
    /// Its process is being stopped.
    Stopping,
    /// Its process exited unasked; the agent waits out the restart backoff.
    Restarting,
    /// It used up its restart budget (or could not start) and is reported
    /// `failed`, for the controller to replace.
    Failed,
}

impl InstancePhase {
    /// Every phase.
    pub const ALL: [Self; 5] = [
        Self::Starting,
        Self::Running,
        Self::Stopping,
        Self::Restarting,
        Self::Failed,
    ];

    /// Its label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Restarting => "restarting",
            Self::Failed => "failed",
        }
    }
}

/// How a start or a stop ended, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It did what was asked.
    Ok,
    /// It did not.
    Failed,
}

impl Outcome {
    /// Both outcomes.
    pub const ALL: [Self; 2] = [Self::Ok, Self::Failed];

    /// Its label value (`ok`, `failed`, as the hook runner's results).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }
}

fn op_label(op: TicketOp) -> &'static str {
    match op {
        TicketOp::Start => "start",
        TicketOp::Stop => "stop",
    }
}

/// Everything the agent reports about its work and its standing.
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    instances: IntGaugeVec,
    starts: IntCounterVec,
    stops: IntCounterVec,
    restarts: IntCounter,
    ticket_seconds: HistogramVec,
    registry_reachable: IntGauge,
    host_registered: IntGauge,
    disconnected: Disconnected,
    health: Arc<watch::Sender<Health>>,
    ready: Arc<watch::Sender<bool>>,
}

impl AgentMetrics {
    /// Creates the metrics and registers them on `registry`: not reachable,
    /// not registered, connected, every count zero.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        use crate::telemetry::register as add;
        let ticket_seconds = HistogramOpts::new(
            "visor_agent_ticket_seconds",
            "Time from claiming a ticket to its instance running (start) or stopped (stop).",
        )
        .buckets(TICKET_BUCKETS.to_vec());
        let metrics = Self {
            instances: add(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "visor_agent_instances",
                        "Instances on this host by phase (starting, running, stopping, restarting, failed).",
                    ),
                    &["state"],
                )?,
            )?,
            starts: add(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "visor_agent_starts_total",
                        "Instance starts (start tickets and restarts) by result.",
                    ),
                    &["result"],
                )?,
            )?,
            stops: add(
                registry,
                IntCounterVec::new(
                    Opts::new("visor_agent_stops_total", "Instance stops by result."),
                    &["result"],
                )?,
            )?,
            restarts: add(
                registry,
                IntCounter::new(
                    "visor_agent_restarts_total",
                    "Processes restarted in place after they exited unasked.",
                )?,
            )?,
            ticket_seconds: add(registry, HistogramVec::new(ticket_seconds, &["op"])?)?,
            registry_reachable: add(
                registry,
                IntGauge::new(
                    "visor_agent_registry_reachable",
                    "1 when the agent's last attempt to use the registry succeeded; 0 from start-up until one does, and after one fails.",
                )?,
            )?,
            host_registered: add(
                registry,
                IntGauge::new(
                    "visor_agent_host_registered",
                    "1 while the host's registration (its lease-bound host key) is live.",
                )?,
            )?,
            disconnected: add(registry, Disconnected::new()?)?,
            health: Arc::new(watch::Sender::new(Health::default())),
            ready: Arc::new(watch::Sender::new(false)),
        };
        for phase in InstancePhase::ALL {
            metrics.set_instances(phase, 0);
        }
        for outcome in Outcome::ALL {
            metrics.starts.with_label_values(&[outcome.as_str()]);
            metrics.stops.with_label_values(&[outcome.as_str()]);
        }
        for op in [TicketOp::Start, TicketOp::Stop] {
            metrics.ticket_seconds.with_label_values(&[op_label(op)]);
        }
        Ok(metrics)
    }

    /// `count` instances are in `phase` now.
    pub fn set_instances(&self, phase: InstancePhase, count: usize) {
        self.instances
            .with_label_values(&[phase.as_str()])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// An instance start (a start ticket's or a restart's) ended.
    pub fn started(&self, outcome: Outcome) {
        self.starts.with_label_values(&[outcome.as_str()]).inc();
    }

    /// An instance stop ended.
    pub fn stopped(&self, outcome: Outcome) {
        self.stops.with_label_values(&[outcome.as_str()]).inc();
    }

    /// A process that exited unasked is being restarted in place.
    pub fn restarted(&self) {
        self.restarts.inc();
    }

    /// A ticket of `op` is done, `elapsed` after it was claimed.
    pub fn ticket_done(&self, op: TicketOp, elapsed: Duration) {
        self.ticket_seconds
            .with_label_values(&[op_label(op)])
            .observe(elapsed.as_secs_f64());
    }

    /// The last attempt to use the registry succeeded (or not).
    pub fn set_registry_reachable(&self, reachable: bool) {
        self.registry_reachable.set(i64::from(reachable));
        self.health
            .send_modify(|health| health.registry_reachable = reachable);
    }

    /// The host's registration is live (or not): `/readyz` follows it, and
    /// the time since it was lost is `visor_agent_disconnected_seconds`.
    pub fn set_registered(&self, registered: bool) {
        self.host_registered.set(i64::from(registered));
        self.disconnected.set(!registered);
        self.ready.send_replace(registered);
    }

    /// What `/healthz` reports, following [`set_registry_reachable`](Self::set_registry_reachable).
    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    /// Whether the host is registered, for `/readyz`.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }
}

/// `visor_agent_disconnected_seconds`: how long the host has been without
/// its registration, computed when scraped (0 while registered, and
/// before the first registration, which `visor_agent_host_registered`
/// tells apart).
#[derive(Debug, Clone)]
struct Disconnected {
    gauge: Gauge,
    since: Arc<Mutex<Option<Instant>>>,
}

impl Disconnected {
    fn new() -> prometheus::Result<Self> {
        Ok(Self {
            gauge: Gauge::new(
                "visor_agent_disconnected_seconds",
                "Seconds since the host's registration was lost (0 while registered and before the first registration); the agent stops its instances once this passes its disconnect window.",
            )?,
            since: Arc::new(Mutex::new(None)),
        })
    }

    /// Starts the clock when the registration is lost, stops it when it is back.
    fn set(&self, disconnected: bool) {
        let mut since = self
            .since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match (disconnected, since.is_some()) {
            (true, false) => *since = Some(Instant::now()),
            (false, _) => *since = None,
            (true, true) => {}
        }
    }

    fn seconds(&self) -> f64 {
        let since = self
            .since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        since.map_or(0.0, |since| since.elapsed().as_secs_f64())
    }
}

impl Collector for Disconnected {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.gauge.set(self.seconds());
        self.gauge.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families(registry: &Registry) -> Vec<(String, usize)> {
        registry
            .gather()
            .iter()
            .map(|family| (family.name().to_owned(), family.get_metric().len()))
            .collect()
    }

    #[test]
    fn every_series_exists_from_registration_on() {
        let registry = Registry::new();
        let _metrics = AgentMetrics::new(&registry).expect("registered");
        assert_eq!(
            families(&registry),
            [
                ("visor_agent_disconnected_seconds".to_owned(), 1),
                ("visor_agent_host_registered".to_owned(), 1),
                ("visor_agent_instances".to_owned(), 5),
                ("visor_agent_registry_reachable".to_owned(), 1),
                ("visor_agent_restarts_total".to_owned(), 1),
                ("visor_agent_starts_total".to_owned(), 2),
                ("visor_agent_stops_total".to_owned(), 2),
                ("visor_agent_ticket_seconds".to_owned(), 2),
            ]
        );
    }

    #[test]
    fn the_standing_sets_gauges_and_endpoints_alike() {
        let registry = Registry::new();
        let metrics = AgentMetrics::new(&registry).expect("registered");
        let (health, ready) = (metrics.health(), metrics.ready());
        assert_eq!(
            (*health.borrow(), *ready.borrow()),
            (Health::default(), false)
        );
        metrics.set_registry_reachable(true);
        metrics.set_registered(true);
        assert!(health.borrow().registry_reachable);
        assert!(*ready.borrow());
        assert_eq!(metrics.registry_reachable.get(), 1);
        assert_eq!(metrics.host_registered.get(), 1);
        assert_eq!(metrics.disconnected.seconds(), 0.0);
        metrics.set_registered(false);
        assert!(!*ready.borrow());
        assert_eq!(metrics.host_registered.get(), 0);
        assert!(
            metrics
                .disconnected
                .since
                .lock()
                .expect("not poisoned")
                .is_some()
        );
        metrics.set_registered(true);
        assert_eq!(metrics.disconnected.seconds(), 0.0);
    }

    #[test]
    fn work_is_counted_by_its_typed_labels() {
        let registry = Registry::new();
        let metrics = AgentMetrics::new(&registry).expect("registered");
        metrics.started(Outcome::Ok);
        metrics.started(Outcome::Failed);
        metrics.stopped(Outcome::Ok);
        metrics.restarted();
        metrics.set_instances(InstancePhase::Running, 3);
        metrics.ticket_done(TicketOp::Start, Duration::from_millis(1500));
        assert_eq!(metrics.starts.with_label_values(&["failed"]).get(), 1);
        assert_eq!(metrics.stops.with_label_values(&["ok"]).get(), 1);
        assert_eq!(metrics.restarts.get(), 1);
        assert_eq!(metrics.instances.with_label_values(&["running"]).get(), 3);
        let histogram = metrics.ticket_seconds.with_label_values(&["start"]);
        assert_eq!(histogram.get_sample_count(), 1);
        assert_eq!(histogram.get_sample_sum(), 1.5);
    }
}
