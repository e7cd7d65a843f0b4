//! A fixed list of hooks, delivered in order.
//!
//! Invariant: the hooks come out exactly as given, each once; nothing is added
//! after construction.

use std::collections::VecDeque;

use super::kind::HookInfo;
use super::source::HookSource;

/// Delivers a fixed list of hooks in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListSource {
    hooks: VecDeque<HookInfo>,
}

impl ListSource {
    /// A source of `hooks`, first to last.
    pub fn new(hooks: impl IntoIterator<Item = HookInfo>) -> Self {
        Self {
            hooks: hooks.into_iter().collect(),
        }
    }

    /// The hooks not yet popped, in order.
    pub fn remaining(&self) -> impl ExactSizeIterator<Item = &HookInfo> {
        self.hooks.iter()
    }
}

impl HookSource for ListSource {
    fn next(&self) -> Option<HookInfo> {
        self.hooks.front().cloned()
    }

    fn pop(&mut self) {
        self.hooks.pop_front();
    }

    fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }
}
