//! The real `visor controller` binary as a child process against a real
//! etcd: its reconcile loops, leadership and failover, its life cycle and
//! recovery from registry trouble, writes of unknown outcome, large values,
//! relation hooks, rollouts and the services loop. One module per concern; each test
//! starts its own etcd and controllers.

mod ambiguous_writes;
mod failover;
mod large_values;
mod lifecycle;
mod reconcile;
mod recovery;
mod relations;
mod rollout;
mod services;
mod services_acceptance;
