//! The real `visor agent` binary against a real etcd and the real
//! `visor controller`, running real processes: tickets to running
//! instances, supervision and restarts, re-attachment after a SIGKILL,
//! crash safety of half-executed tickets, lease loss and the disconnect
//! window, draining, endpoints, and bad input. Each test starts its own
//! etcd, controller and agents; every process they start is killed when the
//! test ends.

mod bad_input;
mod lifecycle;
mod lost_lease;
mod quick_start;
mod reattach;
mod rollout;
mod support;
