//! Providers over real unix sockets and real processes: the framework
//! (routing, fallback, acknowledgements, timeouts, malformed frames, stop),
//! its interoperation with peers written in Python from `docs/providers.md`,
//! a provider program (`examples/greeter_provider.rs`), the `visor provider`
//! commands, and the built-in exec provider's tasks (instances, artifacts,
//! hooks). Each test uses its own socket and data directories; none needs
//! etcd.

mod archives;
mod artifact;
mod cli;
mod exec_instance;
mod framework;
mod hook;
mod interop;
mod program;
mod support;
