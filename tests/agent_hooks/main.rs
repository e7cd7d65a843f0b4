//! The host agent's relation hooks against a real etcd, the real controller,
//! a real `visor provider exec` running the hook files, and the real
//! `visor` binary as the hook tools: Juju's ordering in the hooks units
//! run, settings passed through `relation-set` / `relation-get`, failures
//! shown and retried, missing hooks acknowledged, the tools refused outside
//! a hook; and the registry calls an agent makes, on their own. Each test
//! deploys its own (see `support`), bounded by `LIMIT`.

mod acknowledgement;
mod failures;
mod ordering;
mod support;
mod tools;
