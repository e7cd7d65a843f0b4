//! Visor's functional core.
//!
//! Everything here is pure: model types as they are stored in the registry,
//! validation of names, and the decisions the controller and agents make
//! (instance life cycle, and later scale, placement, liveness and relation hooks).
//! No I/O, no async runtime, no etcd: inputs are snapshots, outputs are values,
//! so every rule can be table- and property-tested on its own.

mod lifecycle;
mod model;
mod name;

pub use lifecycle::{Actor, TransitionError};
pub use model::{
    App, Host, Instance, InstanceState, Limits, ProcType, Revision, Scale, SchemaVersion, Ticket,
    TicketOp,
};
pub use name::{EnvKey, InvalidName, Name};
