//! A sha256 digest as it travels in task arguments and results (64
//! lower-case hex digits), and the reader that computes one on the way.
//!
//! Invariant: a [`Sha256`] always holds exactly 64 lower-case hex digits, so
//! two digests compare equal exactly when their bytes do.

use std::fmt::{self, Write as _};
use std::io::{self, Read};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// A sha256 digest, written as 64 hex digits (upper-case ones are accepted
/// and kept lower-case).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256(String);

/// Why a text is not a sha256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sha256 {value:?} is not 64 hex digits")]
pub struct InvalidSha256 {
    /// The refused text.
    pub value: String,
}

impl Sha256 {
    /// Validates `value` as a digest.
    pub fn parse(value: &str) -> Result<Self, InvalidSha256> {
        if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(value.to_ascii_lowercase()))
        } else {
            Err(InvalidSha256 {
                value: value.to_owned(),
            })
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(sha2::Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: sha2::Sha256) -> Self {
        let mut hex = String::with_capacity(64);
        for byte in hasher.finalize() {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
        }
        Self(hex)
    }

    /// The 64 lower-case hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Sha256 {
    type Error = InvalidSha256;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Sha256> for String {
    fn from(digest: Sha256) -> Self {
        digest.0
    }
}

/// Hashes every byte read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: sha2::Sha256::new(),
        }
    }

    /// Reads what is left of the input, then gives the digest of all of it:
    /// the unpacker may stop before the end (tar's zero blocks, gzip's
    /// trailer), but the digest is of the whole file.
    pub(crate) fn finish(mut self) -> io::Result<Sha256> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(Sha256::from_hasher(self.hasher))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::{HashingReader, Sha256};

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digests_are_64_hex_digits_kept_lower_case() {
        assert_eq!(Sha256::of(b"").as_str(), EMPTY);
        let upper = EMPTY.to_ascii_uppercase();
        assert_eq!(Sha256::parse(&upper), Ok(Sha256::of(b"")));
        for bad in ["", "e3b0", &format!("{EMPTY}0"), &EMPTY.replace('e', "g")] {
            let refused = Sha256::parse(bad).expect_err("refused");
            assert_eq!(
                refused.to_string(),
                format!("sha256 {bad:?} is not 64 hex digits")
            );
        }
    }

    #[test]
    fn a_hashing_reader_digests_what_was_read_and_what_was_left() {
        let mut reader = HashingReader::new(&b"hello world"[..]);
        let mut first = [0u8; 5];
        reader.read_exact(&mut first).expect("read");
        assert_eq!(&first, b"hello");
        assert_eq!(reader.finish().expect("digest"), Sha256::of(b"hello world"));
    }
}
