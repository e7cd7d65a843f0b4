//! The host agent's admin endpoint as a real server on a loopback port:
//! `/logs` over instance directories laid out as the exec provider's
//! supervisor leaves them (rotated files included), `/metrics`, `/healthz`
//! and `/readyz`, TLS; and `visor logs`, the built binary, finding the
//! endpoint through a host registered in the test kit's etcd.

mod cli;
mod endpoints;
mod logs;
mod support;
mod tls;
