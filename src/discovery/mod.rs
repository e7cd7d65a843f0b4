//! Service discovery, as Scalingo's etcd-discovery offered it, on Visor's registry.
//!
//! A process [`register`]s an endpoint of a service (`endpoints/<svc>/<uuid>`,
//! lease-bound, re-registered under the same uuid after a loss) and gets a
//! [`Registration`] handle; clients [`get`] a [`Service`] and pick an
//! endpoint or a URL from it, or subscribe to endpoints that appear
//! ([`subscribe_new`]) and die ([`subscribe_down`]). The service definition
//! (`services/<svc>`) is written by the first registration if absent.
//!
//! Invariant shared by every part: a clean stop leaves a `departed`
//! tombstone, so only the deletion of a live endpoint is a death — the rule
//! `docs/registry.md` states for every reader of the registry.
//!
//! Entry points are free functions taking the [`Visor`](crate::Visor) API,
//! as etcd-discovery's `Register(service, host)` and `Get(service)` were.

mod error;
mod query;
mod registration;
mod request;
mod subscribe;

pub use error::{DiscoveryError, Result};
pub use query::{Service, get};
pub use registration::{Registration, Status, register};
pub use request::{DEFAULT_TTL, RegisterRequest};
pub use subscribe::{
    DEFAULT_BUFFER, EndpointEvent, Interest, SubscribeOptions, Subscription, subscribe,
    subscribe_down, subscribe_new,
};
pub use visor_controllers::{ServiceDef, ServiceEndpoint};
