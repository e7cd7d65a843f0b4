//! The standard controller-runtime metrics of a work queue (label `name`) and
//! of a controller (label `controller`), on a registry the caller passes in.
//!
//! Names, types and buckets follow controller-runtime so that its dashboards
//! and alerts work unchanged. Each queue or controller registers its own
//! collector with its name as a const label, so many can share a registry;
//! a [`Registration`] removes them again when its owner goes, so a queue of
//! the same name can be made again (e.g. after a leader re-campaigns).

use std::sync::Arc;
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use super::error::{Error, Result};

/// client-go's work queue buckets: 10 ns × 10^k for k in 0..12
/// (k8s.io/component-base/metrics/prometheus/workqueue).
const QUEUE_BUCKETS: [f64; 12] = [
    1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0,
];

/// controller-runtime's reconcile time buckets (pkg/internal/controller/metrics).
const RECONCILE_BUCKETS: [f64; 40] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0,
];

/// Builds one metric, naming it in the error.
fn checked<T>(metric: &'static str, made: prometheus::Result<T>) -> Result<T> {
    made.map_err(|source| Error::CreateMetric { metric, source })
}

/// What the queue knows only when asked: read at every scrape.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snapshot {
    pub(crate) depth: usize,
    pub(crate) unfinished: Duration,
    pub(crate) longest: Duration,
}

type Probe = Arc<dyn Fn() -> Option<Snapshot> + Send + Sync>;

/// The metrics of one work queue.
#[derive(Clone)]
pub(crate) struct QueueMetrics {
    pub(crate) depth: IntGauge,
    pub(crate) adds: IntCounter,
    pub(crate) queue_duration: Histogram,
    pub(crate) work_duration: Histogram,
    pub(crate) retries: IntCounter,
    unfinished: Gauge,
    longest: Gauge,
    /// Refreshes the gauges above at scrape; `None` once the queue is gone.
    probe: Probe,
}

impl QueueMetrics {
    pub(crate) fn new(queue: &str, probe: Probe) -> Result<Self> {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("name", queue);
        let seconds = |name: &'static str, help: &str| {
            let opts = HistogramOpts::from(opts(name, help)).buckets(QUEUE_BUCKETS.to_vec());
            checked(name, Histogram::with_opts(opts))
        };
        let int_gauge = |name, help| checked(name, IntGauge::with_opts(opts(name, help)));
        let gauge = |name, help| checked(name, Gauge::with_opts(opts(name, help)));
        let counter = |name, help| checked(name, IntCounter::with_opts(opts(name, help)));
        Ok(Self {
            depth: int_gauge("workqueue_depth", "Current depth of workqueue")?,
            adds: counter(
                "workqueue_adds_total",
                "Total number of adds handled by workqueue",
            )?,
            queue_duration: seconds(
                "workqueue_queue_duration_seconds",
                "How long in seconds an item stays in workqueue before being requested",
            )?,
            work_duration: seconds(
                "workqueue_work_duration_seconds",
                "How long in seconds processing an item from workqueue takes",
            )?,
            retries: counter(
                "workqueue_retries_total",
                "Total number of retries handled by workqueue",
            )?,
            unfinished: gauge(
                "workqueue_unfinished_work_seconds",
                "How many seconds of work has been done that is in progress and hasn't been \
                 observed by work_duration",
            )?,
            longest: gauge(
                "workqueue_longest_running_processor_seconds",
                "How many seconds has the longest running processor for workqueue been running",
            )?,
            probe,
        })
    }

    fn parts(&self) -> [&dyn Collector; 7] {
        [
            &self.depth,
            &self.adds,
            &self.queue_duration,
            &self.work_duration,
            &self.retries,
            &self.unfinished,
            &self.longest,
        ]
    }
}

impl Collector for QueueMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.parts().into_iter().flat_map(Collector::desc).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Some(now) = (self.probe)() {
            self.depth.set(i64::try_from(now.depth).unwrap_or(i64::MAX));
            self.unfinished.set(now.unfinished.as_secs_f64());
            self.longest.set(now.longest.as_secs_f64());
        }
        self.parts()
            .into_iter()
            .flat_map(Collector::collect)
            .collect()
    }
}

/// Outcome label values of `controller_runtime_reconcile_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Error,
    RequeueAfter,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::RequeueAfter => "requeue_after",
        }
    }
}

/// The metrics of one controller (one runner).
#[derive(Clone)]
pub(crate) struct ControllerMetrics {
    reconciles: IntCounterVec,
    errors: IntCounter,
    pub(crate) reconcile_time: Histogram,
    pub(crate) max_concurrent: IntGauge,
    pub(crate) active_workers: IntGauge,
}

impl ControllerMetrics {
    pub(crate) fn new(controller: &str) -> Result<Self> {
        let opts =
            |name: &str, help: &str| Opts::new(name, help).const_label("controller", controller);
        let int_gauge = |name, help| checked(name, IntGauge::with_opts(opts(name, help)));
        let name = "controller_runtime_reconcile_time_seconds";
        let time = HistogramOpts::from(opts(
            name,
            "Length of time per reconciliation per controller",
        ))
        .buckets(RECONCILE_BUCKETS.to_vec());
        Ok(Self {
            reconcile_time: checked(name, Histogram::with_opts(time))?,
            reconciles: checked(
                "controller_runtime_reconcile_total",
                IntCounterVec::new(
                    opts(
                        "controller_runtime_reconcile_total",
                        "Total number of reconciliations per controller",
                    ),
                    &["result"],
                ),
            )?,
            errors: checked(
                "controller_runtime_reconcile_errors_total",
                IntCounter::with_opts(opts(
                    "controller_runtime_reconcile_errors_total",
                    "Total number of reconciliation errors per controller",
                )),
            )?,
            max_concurrent: int_gauge(
                "controller_runtime_max_concurrent_reconciles",
                "Maximum number of concurrent reconciles per controller",
            )?,
            active_workers: int_gauge(
                "controller_runtime_active_workers",
                "Number of currently used workers per controller",
            )?,
        })
    }

    /// Counts one finished reconcile.
    pub(crate) fn reconciled(&self, outcome: Outcome) {
        self.reconciles.with_label_values(&[outcome.label()]).inc();
        if outcome == Outcome::Error {
            self.errors.inc();
        }
    }

    fn parts(&self) -> [&dyn Collector; 5] {
        [
            &self.reconciles,
            &self.errors,
            &self.reconcile_time,
            &self.max_concurrent,
            &self.active_workers,
        ]
    }
}

impl Collector for ControllerMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.parts().into_iter().flat_map(Collector::desc).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.parts()
            .into_iter()
            .flat_map(Collector::collect)
            .collect()
    }
}

/// A collector registered on a registry until this is dropped.
pub(crate) struct Registration {
    registry: Registry,
    /// A copy with the same descriptors: what `unregister` matches on.
    collector: Option<Box<dyn Collector>>,
}

impl Registration {
    /// Registers `collector`; `refused` turns the registry's refusal into an error.
    pub(crate) fn new<C>(
        registry: &Registry,
        collector: C,
        refused: impl FnOnce(prometheus::Error) -> Error,
    ) -> Result<Self>
    where
        C: Collector + Clone + 'static,
    {
        registry
            .register(Box::new(collector.clone()))
            .map_err(refused)?;
        Ok(Self {
            registry: registry.clone(),
            collector: Some(Box::new(collector)),
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(collector) = self.collector.take()
            && let Err(error) = self.registry.unregister(collector)
        {
            tracing::warn!(%error, "unregistering work queue or controller metrics");
        }
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").finish_non_exhaustive()
    }
}

/// Reads one sample back from the registry's text exposition, e.g.
/// `sample(&registry, r#"workqueue_adds_total{name="q"}"#)`.
#[cfg(test)]
pub(crate) fn sample(registry: &Registry, series: &str) -> Option<f64> {
    use prometheus::{Encoder, TextEncoder};
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .expect("text encoding of gathered metrics");
    let text = String::from_utf8(text).expect("exposition is UTF-8");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_metrics_register_once_per_name_and_unregister_on_drop() {
        let registry = Registry::new();
        let metrics = ControllerMetrics::new("c").expect("valid metrics");
        let refused = |source| Error::RegisterControllerMetrics {
            controller: "c".into(),
            source,
        };
        let registration = Registration::new(&registry, metrics.clone(), refused);
        let registration = registration.expect("first registration");
        assert!(Registration::new(&registry, metrics.clone(), refused).is_err());
        let other = ControllerMetrics::new("d").expect("valid metrics");
        let _other = Registration::new(&registry, other, refused).expect("other name");

        metrics.reconciled(Outcome::Error);
        let series = r#"controller_runtime_reconcile_total{controller="c",result="error"}"#;
        assert_eq!(sample(&registry, series), Some(1.0));
        let errors = r#"controller_runtime_reconcile_errors_total{controller="c"}"#;
        assert_eq!(sample(&registry, errors), Some(1.0));

        drop(registration);
        assert_eq!(sample(&registry, series), None);
        assert!(
            Registration::new(&registry, metrics, refused).is_ok(),
            "name free again"
        );
    }
}
