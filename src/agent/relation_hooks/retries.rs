//! When each unit's failing hook may run again: one delay sequence per
//! unit under the configured [`BackoffPolicy`], for the hook that failed.
//!
//! Invariants: a hook is never run again before its delay is over, however
//! often its unit is woken meanwhile; a sequence belongs to one hook (its
//! relation and the create revision of its key) and starts over for any
//! other, so a hook withdrawn while it was retried takes its delays with it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use visor_controllers::Name;

use crate::registry::{Backoff, BackoffPolicy};

/// One handed hook: its relation and the create revision of its key (a hook
/// withdrawn and handed again is another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookId {
    /// The relation.
    pub relation: Name,
    /// The create revision of `/hooks/<unit>/<relation>`.
    pub created: i64,
}

#[derive(Debug)]
struct Retry {
    hook: HookId,
    delays: Backoff,
    due: Instant,
}

/// The retry schedule of every unit whose hook failed and did not succeed since.
#[derive(Debug)]
pub struct Retries {
    policy: BackoffPolicy,
    units: Mutex<HashMap<Name, Retry>>,
}

impl Retries {
    /// No unit failing yet.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            units: Mutex::default(),
        }
    }

    /// How long `hook` of `unit` must still wait; `None` if it may run now
    /// (it never failed, its delay is over, or the unit's failing hook was
    /// another).
    pub fn wait_left(&self, unit: &Name, hook: &HookId) -> Option<Duration> {
        let units = self.lock();
        let retry = units.get(unit).filter(|retry| retry.hook == *hook)?;
        let left = retry.due.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Records that `hook` of `unit` failed; returns how long until it may
    /// run again.
    pub fn failed(&self, unit: &Name, hook: &HookId) -> Duration {
        let mut units = self.lock();
        let retry = units
            .entry(unit.clone())
            .and_modify(|retry| {
                if retry.hook != *hook {
                    *retry = self.fresh(hook);
                }
            })
            .or_insert_with(|| self.fresh(hook));
        // Attempts are not "healthy" however long they ran: see DEFAULT_RETRY.
        let delay = retry.delays.next_delay(Duration::ZERO);
        retry.due = Instant::now() + delay;
        delay
    }

    /// Forgets `unit`'s failures: its hook succeeded, or it has none.
    pub fn forget(&self, unit: &Name) {
        self.lock().remove(unit);
    }

    fn fresh(&self, hook: &HookId) -> Retry {
        Retry {
            hook: hook.clone(),
            delays: self.policy.start(),
            due: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Name, Retry>> {
        // Each critical section replaces whole entries: never half-updated.
        self.units.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn name(value: &str) -> Name {
        Name::parse("test", value).expect("a name")
    }

    fn hook(relation: &str, created: i64) -> HookId {
        HookId {
            relation: name(relation),
            created,
        }
    }

    fn retries() -> Retries {
        Retries::new(BackoffPolicy {
            min: SEC,
            max: 8 * SEC,
            healthy: Duration::MAX,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_hook_waits_its_growing_delay() {
        let (retries, unit, first) = (retries(), name("u"), hook("r1", 5));
        assert_eq!(retries.wait_left(&unit, &first), None, "never failed");
        let one = retries.failed(&unit, &first);
        assert!((SEC..2 * SEC).contains(&one), "{one:?}");
        assert_eq!(retries.wait_left(&unit, &first), Some(one));
        tokio::time::advance(one).await;
        assert_eq!(retries.wait_left(&unit, &first), None, "due");
        let two = retries.failed(&unit, &first);
        assert!(two >= 2 * SEC, "doubled: {two:?}");
        for _ in 0..5 {
            assert!(retries.failed(&unit, &first) <= 8 * SEC, "capped");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn another_hook_or_a_success_starts_over() {
        let (retries, unit) = (retries(), name("u"));
        for _ in 0..4 {
            retries.failed(&unit, &hook("r1", 5));
        }
        assert_eq!(
            retries.wait_left(&unit, &hook("r1", 9)),
            None,
            "withdrawn and handed again: another hook"
        );
        let fresh = retries.failed(&unit, &hook("r1", 9));
        assert!(fresh < 2 * SEC, "starts at the minimum: {fresh:?}");
        retries.forget(&unit);
        assert_eq!(retries.wait_left(&unit, &hook("r1", 9)), None);
        assert!(retries.failed(&unit, &hook("r1", 9)) < 2 * SEC);
    }
}
