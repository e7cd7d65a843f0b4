//! Everything that touches the registry (etcd v3).
//!
//! Layers, bottom up: [`RegistryConfig`] says where the registry is;
//! `client` wraps etcd with timeouts and typed errors; `keys` is the layout
//! contract of `docs/registry.md`; `store` turns keys and JSON into versioned
//! objects with compare-and-set writes; `api` is the typed Visor API on top;
//! `backoff` is the one retry policy of long-running steps; `watch` is the
//! one resumable prefix watch every follower of a prefix drives; `events`
//! turns it into typed events; `local` runs an etcd
//! process for `visor up`, the tests and the benchmarks.

mod api;
pub mod backoff;
mod client;
mod config;
mod error;
mod events;
mod fence;

mod keys;
mod lease;
mod local;

mod store;
pub mod watch;

pub use api::{
    AppState, Applied, EndpointSpec, FactorAsRead, Forgotten, HostRegistration, InstanceFilter,
    NotificationStream, PendingHook, Posting, PostingSubject, ScaleFactor, Visor,
};
pub use backoff::{Backoff, BackoffPolicy};
pub use client::Registry;
pub use config::RegistryConfig;
pub use error::{Error, ObjectRef, Result};
pub use events::{Event, EventKind, EventStream};
pub use fence::Fence;

pub use keys::{KeyPath, Keys, Kind};
pub use lease::{Lease, LeaseTimingError, MAX_LEASE_TTL};
pub use local::{LocalRegistry, LocalRegistryError, LocalRegistryOptions, LocalServer, ServerTls};

pub use store::{Codec, Encode, Listing, Malformed, Versioned};
pub(crate) use store::{Expected, decode};
