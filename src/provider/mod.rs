//! Providers: programs that offer named tasks on unix sockets, and the
//! built-in exec provider.

pub mod exec;
