//! The controller runtime, in the style of kube-rs / controller-runtime:
//! leader election with fencing, and the pieces reconcile loops are built from.
//!
//! A reconcile loop: caches see changes and add keys to a [`WorkQueue`], which
//! deduplicates them and backs off per key; [`run`] takes keys from it and
//! reconciles each, at most N at once and never one key twice at once;
//! [`resync()`] re-adds every key now and then. A [`ReconcileLoop`] declares
//! one loop — its keys, the changes that touch them, its reconcile — and
//! wires those pieces for it.

pub mod cache;
pub mod election;
mod error;
mod metrics;
pub mod queue;
pub mod read_your_writes;
pub mod reconcile_loop;
pub mod resync;
pub mod runner;
mod unknown_outcomes;

pub use error::{Error, Result};
pub use queue::{Key, RetryBackoff, WorkQueue};
pub use read_your_writes::{CATCH_UP_TIMEOUT, CatchUpError, ReadYourWrites};
pub use reconcile_loop::{ReconcileLoop, Touched};
pub use resync::resync;
pub use runner::{Action, run};
pub use unknown_outcomes::UnknownOutcomes;
