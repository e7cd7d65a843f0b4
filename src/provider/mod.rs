//! Providers: programs that offer named tasks on unix sockets, found through
//! the filesystem, after mistify's provider/acomm design and wire-compatible
//! with it (see `docs/providers.md`).

pub mod exec;
pub mod wire;
