//! The controller runtime, in the style of kube-rs / controller-runtime:
//! leader election with fencing, and the pieces reconcile loops are built from.

pub mod cache;
pub mod election;
