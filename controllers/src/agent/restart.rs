//! What an agent does when an instance's process ends on its own: restart
//! it in place, give up on it (`failed`, for the controller to replace), or
//! let it end (`exited`).
//!
//! Invariants: a process is restarted at most `max_restarts` times within
//! any `window` (the budget); a clean exit is a failure unless the proc
//! type's [`RestartPolicy`] says `on-failure`; every verdict but a restart
//! carries the reason the instance will show.

use std::fmt;

use chrono::{DateTime, Duration, Utc};

use crate::model::RestartPolicy;

/// How many restarts an instance may have within a window before it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartBudget {
    /// Restarts allowed within `window`.
    pub max_restarts: u32,
    /// The window restarts are counted in.
    pub window: Duration,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
    /// Its supervisor is gone and recorded no exit.
    Unknown,
}

impl fmt::Display for ExitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exited with code {code}"),
            Self::Signal(signal) => write!(f, "killed by signal {signal}"),
            Self::Unknown => f.write_str("its supervisor is gone and recorded no exit"),
        }
    }
}

/// What to do about an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitVerdict {
    /// Start it again (after a backoff), counting a restart.
    Restart,
    /// Give up: the instance is `failed` with this reason.
    Failed(String),
    /// It ended as it may: the instance is `exited` with this reason.
    Exited(String),
}

/// The verdict on `cause`, for a proc under `policy` that was restarted at
/// `restarts` (any order) before `now`.
pub fn judge_exit(
    policy: RestartPolicy,
    cause: ExitCause,
    restarts: &[DateTime<Utc>],
    now: DateTime<Utc>,
    budget: RestartBudget,
) -> ExitVerdict {
    if policy == RestartPolicy::OnFailure && cause == ExitCause::Code(0) {
        return ExitVerdict::Exited(cause.to_string());
    }
    let recent = restarts_within(restarts, now, budget.window);
    if recent >= budget.max_restarts {
        return ExitVerdict::Failed(format!(
            "{cause}; restarted {recent} times within {}s, the most allowed",
            budget.window.num_seconds()
        ));
    }
    ExitVerdict::Restart
}

/// How many of `restarts` fall within `window` before `now`.
pub fn restarts_within(restarts: &[DateTime<Utc>], now: DateTime<Utc>, window: Duration) -> u32 {
    let since = now - window;
    let count = restarts
        .iter()
        .filter(|at| **at > since && **at <= now)
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_000_000 + secs, 0).expect("a time")
    }

    const BUDGET: RestartBudget = RestartBudget {
        max_restarts: 3,
        window: Duration::seconds(60),
    };

    #[test]
    fn exits_are_judged_by_policy_and_budget() {
        use ExitCause::*;
        use RestartPolicy::*;
        let none: &[DateTime<Utc>] = &[];
        let three_recent = [at(10), at(20), at(30)];
        let three_old = [at(-100), at(-90), at(-80)];
        let table: [(RestartPolicy, ExitCause, &[DateTime<Utc>], ExitVerdict); 7] = [
            (Always, Code(1), none, ExitVerdict::Restart),
            (Always, Code(0), none, ExitVerdict::Restart),
            (Always, Signal(9), &three_old, ExitVerdict::Restart),
            (
                OnFailure,
                Code(0),
                &three_recent,
                ExitVerdict::Exited("exited with code 0".into()),
            ),
            (OnFailure, Unknown, none, ExitVerdict::Restart),
            (
                Always,
                Code(0),
                &three_recent,
                ExitVerdict::Failed(
                    "exited with code 0; restarted 3 times within 60s, the most allowed".into(),
                ),
            ),
            (
                OnFailure,
                Signal(9),
                &three_recent,
                ExitVerdict::Failed(
                    "killed by signal 9; restarted 3 times within 60s, the most allowed".into(),
                ),
            ),
        ];
        for (policy, cause, restarts, verdict) in table {
            assert_eq!(
                judge_exit(policy, cause, restarts, at(40), BUDGET),
                verdict,
                "{policy:?} {cause:?} after {restarts:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn no_window_ever_holds_more_restarts_than_the_budget(
            gaps in proptest::collection::vec(0i64..40, 1..60),
        ) {
            // Crashes at the given gaps; every restart granted is recorded.
            let mut now = at(0);
            let mut restarts = Vec::new();
            for gap in gaps {
                now += Duration::seconds(gap);
                match judge_exit(RestartPolicy::Always, ExitCause::Code(1), &restarts, now, BUDGET) {
                    ExitVerdict::Restart => restarts.push(now),
                    ExitVerdict::Failed(_) => break,
                    ExitVerdict::Exited(_) => prop_assert!(false, "a crash never just exits"),
                }
            }
            for end in &restarts {
                prop_assert!(restarts_within(&restarts, *end, BUDGET.window) <= BUDGET.max_restarts);
            }
        }
    }
}
