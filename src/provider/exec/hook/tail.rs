//! The bounded capture of a hook's output: the last bytes of a stream, and
//! how many came before them.
//!
//! Invariant: a [`Tail`] never holds more than its limit, whatever the hook
//! writes, and `dropped + tail.len()` is everything it was given.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// What a hook wrote to one stream, as much as was kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// The last bytes written, as UTF-8 (invalid sequences replaced, as a
    /// tail cut inside a character is).
    pub tail: String,
    /// How many bytes came before the tail and were not kept.
    pub dropped_bytes: u64,
}

/// The last `limit` bytes pushed.
#[derive(Debug)]
pub(crate) struct Tail {
    kept: VecDeque<u8>,
    limit: usize,
    dropped: u64,
}

impl Tail {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            kept: VecDeque::with_capacity(limit.min(64 * 1024)),
            limit,
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        // Only the last `limit` bytes of this write can be kept at all.
        let skip = bytes.len().saturating_sub(self.limit);
        self.dropped += skip as u64;
        let bytes = &bytes[skip..];
        let overflow = (self.kept.len() + bytes.len()).saturating_sub(self.limit);
        self.kept.drain(..overflow);
        self.dropped += overflow as u64;
        self.kept.extend(bytes);
    }

    pub(crate) fn into_output(self) -> Output {
        let kept: Vec<u8> = self.kept.into();
        Output {
            tail: String::from_utf8_lossy(&kept).into_owned(),
            dropped_bytes: self.dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Tail;

    #[test]
    fn a_tail_keeps_the_last_bytes_and_counts_the_rest() {
        let cases: &[(usize, &[&str], &str, u64)] = &[
            (8, &[], "", 0),
            (8, &["hello"], "hello", 0),
            (8, &["hello", " world"], "lo world", 3),
            (4, &["a very long line"], "line", 12),
            (4, &["ab", "cd", "ef"], "cdef", 2),
            (0, &["gone"], "", 4),
        ];
        for (limit, writes, tail, dropped) in cases {
            let mut capture = Tail::new(*limit);
            for write in *writes {
                capture.push(write.as_bytes());
            }
            let output = capture.into_output();
            assert_eq!(
                (output.tail.as_str(), output.dropped_bytes),
                (*tail, *dropped),
                "{writes:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn a_tail_is_the_end_of_everything_written(
            limit in 0usize..64,
            writes in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 0..10),
        ) {
            let mut capture = Tail::new(limit);
            for write in &writes {
                capture.push(write);
            }
            let all: Vec<u8> = writes.concat();
            let start = all.len().saturating_sub(limit);
            prop_assert_eq!(capture.dropped, start as u64);
            prop_assert_eq!(Vec::from(capture.kept), all[start..].to_vec());
        }
    }
}
