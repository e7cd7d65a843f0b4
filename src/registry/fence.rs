//! Fencing tokens: a write made on behalf of a leader carries, in the same
//! transaction, the condition that the leader's election key still exists at
//! the revision its campaign created it.
//!
//! Invariant: once that key is gone (resigned, lease expired, deleted) or
//! re-created by another campaign, every fenced write fails with
//! [`Error::Deposed`](super::Error::Deposed) and writes nothing.

use std::fmt;

/// The leader key and its create revision, as the campaign returned them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The election key this leader owns.
    pub key: String,
    /// The revision that created it.
    pub create_revision: i64,
}

impl fmt::Display for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "leader key {} created at revision {}",
            self.key, self.create_revision
        )
    }
}
