//! A hook as stored while it is outstanding: the [`HookInfo`] the controller
//! handed, and what the unit's agent recorded of the attempts that failed.
//!
//! The controller writes the hook and never changes it; the agent adds a
//! [`HookFailure`] each time running it fails, so that the failure shows on
//! the unit (`visor hooks`) until the hook succeeds or is withdrawn.
//! Invariant: a failure never changes which hook it is — the hook's fields
//! are written back as read — so the controller, which reads the same key
//! as a bare [`HookInfo`] (unknown fields tolerated), sees the same hook.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::kind::HookInfo;

/// The most of a failure's reason that is stored: enough for the end of a
/// hook's error output, small enough to keep the hook document small.
pub const MAX_FAILURE_REASON: usize = 1024;

/// `/hooks/<unit>/<rel-id>` as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedHook {
    /// The hook.
    #[serde(flatten)]
    pub hook: HookInfo,
    /// The last failed attempt to run it, if one failed; `None` until then.
    #[serde(default)]
    pub failed: Option<HookFailure>,
}

impl HandedHook {
    /// A hook as the controller hands it: no attempt failed yet.
    pub fn new(hook: HookInfo) -> Self {
        Self { hook, failed: None }
    }

    /// The same hook with `reason` recorded as one more failed attempt at `at`.
    #[must_use]
    pub fn failed(&self, reason: &str, at: DateTime<Utc>) -> Self {
        let attempts = self
            .failed
            .as_ref()
            .map_or(0, |failure| failure.attempts)
            .saturating_add(1);
        Self {
            hook: self.hook.clone(),
            failed: Some(HookFailure {
                attempts,
                reason: bounded(reason),
                at,
            }),
        }
    }
}

/// Why the unit's agent could not run a hook, and how often it tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookFailure {
    /// How many attempts have failed so far (1 after the first).
    pub attempts: u32,
    /// Why the last one failed, e.g. `exited with code 1: <stderr's end>`.
    pub reason: String,
    /// When the last one failed.
    pub at: DateTime<Utc>,
}

/// The end of `reason`, at most [`MAX_FAILURE_REASON`] bytes: the end of a
/// hook's output says most about why it failed.
fn bounded(reason: &str) -> String {
    if reason.len() <= MAX_FAILURE_REASON {
        return reason.to_owned();
    }
    let marker = "…";
    let mut start = reason.len() - (MAX_FAILURE_REASON - marker.len());
    while !reason.is_char_boundary(start) {
        start += 1;
    }
    format!("{marker}{}", &reason[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("a timestamp")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_handed_hook_is_the_hook_document_with_its_failure() {
        let handed = HandedHook::new(HookInfo::changed("r1", "db-0", 4));
        let text = serde_json::to_string(&handed).expect("serializable");
        assert_eq!(
            text,
            r#"{"kind":"changed","relation_id":"r1","remote_unit":"db-0","change_version":4,"failed":null}"#
        );
        let bare: HandedHook = serde_json::from_str(
            r#"{"kind":"changed","relation_id":"r1","remote_unit":"db-0","change_version":4}"#,
        )
        .expect("the controller's document");
        assert_eq!(bare, handed);
        let failed = handed.failed("exited with code 1", at());
        let text = serde_json::to_string(&failed).expect("serializable");
        let read: HookInfo = serde_json::from_str(&text).expect("still a hook");
        assert_eq!(read, handed.hook, "the controller reads the same hook");
        let back: HandedHook = serde_json::from_str(&text).expect("round trip");
        assert_eq!(back, failed);
    }

    #[test]
    fn failures_count_attempts_and_keep_the_end_of_long_reasons() {
        let handed = HandedHook::new(HookInfo::broken("r1"));
        let once = handed.failed("first", at());
        let twice = once.failed("second", at());
        let failure = twice.failed.expect("recorded");
        assert_eq!((failure.attempts, failure.reason.as_str()), (2, "second"));

        let long = format!("{}é-the-end", "x".repeat(2 * MAX_FAILURE_REASON));
        let kept = handed.failed(&long, at()).failed.expect("recorded").reason;
        assert!(kept.len() <= MAX_FAILURE_REASON, "{}", kept.len());
        assert!(
            kept.starts_with('…') && kept.ends_with("é-the-end"),
            "{kept}"
        );
    }
}
