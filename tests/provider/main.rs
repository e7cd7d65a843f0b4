//! Providers over real unix sockets: the framework (routing, fallback,
//! acknowledgements, timeouts, malformed frames, stop), its interoperation
//! with peers written in Python from `docs/providers.md`, a provider program
//! (`examples/greeter_provider.rs`), the `visor provider` commands, and the
//! built-in exec provider's instance tasks over real processes. Each test
//! uses its own socket (and data) directory; none needs etcd.

mod cli;
mod exec_instance;
mod framework;
mod interop;
mod program;
mod support;
