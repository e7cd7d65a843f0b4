//! What the relation hooks runner counts: every attempt at a hook by kind
//! and result, and how long hooks ran.
//!
//! Invariant: every attempt that ran (or tried to run) a hook is counted
//! exactly once, with one of the four results.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use visor_controllers::HookKind;

/// How long hooks run: from a few milliseconds up to the longest timeout
/// anyone should configure.
const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0,
];

/// How an attempt at a hook ended: the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookResult {
    /// The hook exited 0 and was acknowledged.
    Ok,
    /// The revision has no such hook: acknowledged without running anything.
    Missing,
    /// It failed: exited non-zero, was killed, could not run, or could not
    /// be acknowledged.
    Failed,
    /// It ran past its timeout.
    TimedOut,
}

impl HookResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Missing => "missing",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
        }
    }
}

/// The runner's metrics, registered on the agent's registry.
#[derive(Debug, Clone)]
pub struct HookMetrics {
    /// `visor_agent_hook_runs_total{kind,result}`
    runs: IntCounterVec,
    /// `visor_agent_hook_duration_seconds{kind}`
    duration: HistogramVec,
}

impl HookMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let runs = IntCounterVec::new(
            Opts::new(
                "visor_agent_hook_runs_total",
                "Attempts at relation hooks, by hook kind and result (ok, missing, failed, timed_out).",
            ),
            &["kind", "result"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "visor_agent_hook_duration_seconds",
                "How long relation hooks ran, by hook kind.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["kind"],
        )?;
        registry.register(Box::new(runs.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        // Every series from the start, so a dashboard shows zeros, not gaps.
        for kind in HookKind::ALL {
            for result in [
                HookResult::Ok,
                HookResult::Missing,
                HookResult::Failed,
                HookResult::TimedOut,
            ] {
                runs.with_label_values(&[kind.as_str(), result.as_str()]);
            }
        }
        Ok(Self { runs, duration })
    }

    /// Counts one attempt at a `kind` hook that ended with `result`.
    pub fn attempted(&self, kind: HookKind, result: HookResult) {
        self.runs
            .with_label_values(&[kind.as_str(), result.as_str()])
            .inc();
    }

    /// Records that a `kind` hook ran for `took`.
    pub fn ran(&self, kind: HookKind, took: Duration) {
        self.duration
            .with_label_values(&[kind.as_str()])
            .observe(took.as_secs_f64());
    }
}
