//! The repository's own material, checked without a registry: the
//! deployment files (alert rules, dashboard), the lock file, and the app
//! spec's published schema and example.

mod deploy;
mod lockfile;
mod schema;
