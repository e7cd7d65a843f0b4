//! Providers over real unix sockets: the framework (routing, fallback,
//! acknowledgements, timeouts, malformed frames, stop), its interoperation
//! with peers written in Python from `docs/providers.md`, a provider program
//! (`examples/greeter_provider.rs`), and the `visor provider` commands. Each
//! test uses its own socket directory; none needs etcd.

mod cli;
mod framework;
mod interop;
mod program;
mod support;
