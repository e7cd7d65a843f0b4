//! Everything that touches the registry (etcd v3).
//!
//! Layers, bottom up: [`RegistryConfig`] says where the registry is;
//! `client` wraps etcd with timeouts and typed errors; `keys` is the layout
//! contract of `docs/registry.md`; `store` turns keys and JSON into versioned
//! objects with compare-and-set writes; `api` is the typed Visor API on top;
//! `events` turns the watch stream into typed events; `local` runs an etcd
//! process for `visor up`, the tests and the benchmarks.

mod api;
mod client;
mod config;
mod error;
mod events;
mod fence;

mod keys;
mod lease;
mod local;

mod store;

pub use api::{
    EndpointSpec, Forgotten, HostRegistration, InstanceFilter, NotificationStream, Posting,
    ScaleFactor, StopRequest, UnitWrite, Visor,
};
pub use client::Registry;
pub use config::RegistryConfig;
pub use error::{Error, Kind, ObjectRef, Result};
pub use events::{Event, EventKind, EventStream};
pub use fence::Fence;

pub use keys::{KeyPath, Keys};
pub use lease::{Lease, LeaseTimingError, MAX_LEASE_TTL};
pub use local::{LocalEtcd, LocalEtcdError, LocalEtcdOptions, ServerTls};

pub use store::{Codec, Encode, Listing, Malformed, Versioned};
pub(crate) use store::{Expected, decode};
