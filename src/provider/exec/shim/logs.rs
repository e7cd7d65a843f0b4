//! The workload's stdout and stderr, copied into size-rotated files
//! (`stdout.log`, `stdout.log.1`, ... newest first).
//!
//! Invariants: a file never holds more than the limit's bytes (a write is
//! cut at the limit and continued in the next file), at most `keep` rotated
//! files are kept, and bytes land in the order the workload wrote them.

use std::io::{self, Write};
use std::path::PathBuf;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use crate::provider::exec::instance_dir::LogLimits;

/// How much is read from the pipe at once.
const CHUNK: usize = 64 * 1024;

/// Copies `from` into rotated files at `to` until `from` ends (every process
/// holding the pipe's write end is gone).
pub fn copy<R>(from: R, to: PathBuf, limits: LogLimits) -> JoinHandle<io::Result<()>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(run(from, to, limits))
}

async fn run<R: AsyncRead + Unpin>(mut from: R, to: PathBuf, limits: LogLimits) -> io::Result<()> {
    // FileRotate panics on a zero limit: the provider refuses one, and this
    // keeps a hand-written spec from crashing the supervisor.
    let mut file = FileRotate::new(
        &to,
        AppendCount::new(limits.keep),
        ContentLimit::Bytes(limits.max_bytes.max(1)),
        Compression::None,
        None,
    );
    let mut buf = vec![0; CHUNK];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return file.flush();
        }
        // Local disk writes: short enough to make on the runtime's thread.
        file.write_all(&buf[..n])?;
        file.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_rotates_at_the_limit_and_keeps_its_order() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let to = root.path().join("stdout.log");
        // 125 lines of 9 bytes: three full files of 300 bytes and 225 more.
        let text: String = (0..125).map(|i| format!("line {i:03}\n")).collect();
        let limits = LogLimits {
            max_bytes: 300,
            keep: 2,
        };
        let from = std::io::Cursor::new(text.clone().into_bytes());
        copy(from, to.clone(), limits)
            .await
            .expect("the copy finished")
            .expect("copied");
        let read = |name: &str| std::fs::read_to_string(root.path().join(name)).unwrap_or_default();
        let (current, first, second) = (
            read("stdout.log"),
            read("stdout.log.1"),
            read("stdout.log.2"),
        );
        for file in [&current, &first, &second] {
            assert!(file.len() <= 300, "{} bytes", file.len());
        }
        assert!(
            !root.path().join("stdout.log.3").exists(),
            "only two rotated files are kept"
        );
        // The newest output is in the current file, older in .1, then .2.
        let kept = format!("{second}{first}{current}");
        assert!(
            text.ends_with(&kept),
            "the kept output is the end of what was written, in order"
        );
        assert_eq!(kept.len(), 300 * 2 + text.len() % 300);
    }
}
