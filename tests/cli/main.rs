//! The `visor` command line as the built binary against a real etcd: one
//! module per command family, plus failures shared by every command, closed
//! pipes, and `visor up`. Each test starts its own etcd (or `visor up`).

mod apps;
mod env;
mod errors;
mod generate;
mod observed;
mod pipe;
mod procs;
mod relations;
mod scale;
mod services;
mod specs;
mod status;
mod up;
mod watch;
