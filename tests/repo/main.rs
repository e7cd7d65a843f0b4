//! The repository's own material, checked without a registry: the
//! deployment files (alert rules, dashboard) and the lock file.

mod deploy;
mod lockfile;
