//! `hook.run`.
