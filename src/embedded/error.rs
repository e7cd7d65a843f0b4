//! What the embedded registry refuses, with the gRPC status etcd gives.
//!
//! Clients match on etcd's codes and messages (etcd-client surfaces them,
//! `etcdctl` prints them), so each variant carries etcd's exact text
//! (`api/v3rpc/rpctypes`) and maps to etcd's status code.

use tonic::{Code, Status};

use super::mvcc::RevisionError;

/// A request the registry refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A put, delete or compare without a key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A value given with `ignore_value`.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// A lease given with `ignore_lease`.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A transaction branch or compare list over the limit.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// One branch of a transaction writes a key twice.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A revision compacted away or not reached yet.
    #[error("etcdserver: {0}")]
    Revision(#[from] RevisionError),
    /// A lease that does not exist (never granted, revoked or expired).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A grant with an id already in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A grant over etcd's largest TTL.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// A request over the size limit.
    #[error("etcdserver: request is too large")]
    TooLarge,
    /// A sort order or target outside the protocol's.
    #[error("etcdserver: {0}")]
    Invalid(&'static str),
}

impl From<RequestError> for Status {
    fn from(error: RequestError) -> Self {
        let code = match &error {
            RequestError::Revision(_) | RequestError::LeaseTtlTooLarge => Code::OutOfRange,
            RequestError::LeaseNotFound => Code::NotFound,
            RequestError::LeaseExists => Code::FailedPrecondition,
            RequestError::EmptyKey
            | RequestError::KeyNotFound
            | RequestError::ValueProvided
            | RequestError::LeaseProvided
            | RequestError::TooManyOps
            | RequestError::DuplicateKey
            | RequestError::TooLarge
            | RequestError::Invalid(_) => Code::InvalidArgument,
        };
        Status::new(code, error.to_string())
    }
}
