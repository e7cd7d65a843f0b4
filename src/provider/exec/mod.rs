//! The built-in exec provider: runs an app's revision as plain processes.

pub mod artifact;
pub mod hook;
