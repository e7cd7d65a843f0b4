//! Providers over real unix sockets and real processes: the framework, and
//! the built-in exec provider. Each test makes its own socket and data
//! directories.

mod exec_instance;
