//! The library in-process against a real etcd: the typed API (desired and
//! observed state, scale, names, life cycle, concurrency, malformed values,
//! connecting), the event and notification streams, the runtime primitives
//! built on them (caches, election) and service discovery. One module per
//! concern; each test starts its own etcd.

mod cache;
mod concurrency;
mod conformance;
mod connect;
mod connect_secure;
mod desired;
mod discovery;
mod discovery_subscribe;
mod election;
mod embedded;
mod events;
mod events_resume;
mod hosts;
mod lifecycle;
mod malformed;
mod names;
mod notifications_follow;
mod observed;
mod scale;
