//! Reading a stream from a position on, and with `follow`, on as it is
//! written, as `tail -F` does: new bytes of the current file, and when the
//! supervisor rotates it (renames it to `.1` and creates a new one), the
//! rest of the old file, any file rotated in between, then the new file
//! from its start.
//!
//! Invariants: every byte is read once and in order, from files held open
//! (a rename does not move bytes away from under the reader), and a
//! follower stops when its stop token is cancelled, whatever it waits for.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use futures::Stream;
use tokio_util::sync::CancellationToken;

use super::files::{FileId, LogFile, Snapshot, rotated_after};
use super::tail::Position;

/// How much is read at once.
const CHUNK: usize = 64 * 1024;
/// How often a follower looks for new output when it has read everything.
/// `tail -F` polls once a second; a fifth keeps `visor logs -f` lively.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A file to read from `offset` to its end (as it is when read).
#[derive(Debug)]
struct Segment {
    file: LogFile,
    offset: u64,
    /// Where to stop; the end of the file as it is when read when `None`.
    end: Option<u64>,
}

impl Segment {
    /// The next chunk; `None` at the end.
    fn read(&mut self) -> io::Result<Option<Vec<u8>>> {
        let end = match self.end {
            Some(end) => end,
            None => self.file.len()?,
        };
        let want = end.saturating_sub(self.offset).min(CHUNK as u64);
        if want == 0 {
            return Ok(None);
        }
        // At most CHUNK: fits a usize.
        let mut chunk = vec![0; want as usize];
        let n = self.file.read_at(&mut chunk, self.offset)?;
        if n == 0 {
            return Ok(None);
        }
        chunk.truncate(n);
        self.offset += n as u64;
        Ok(Some(chunk))
    }
}

/// What a follower found on one look.
enum Look {
    /// New bytes of the current file.
    Bytes(Vec<u8>),
    /// The current file was rotated: these are to be read first.
    Rotated(Vec<Segment>),
    /// Nothing new yet.
    Idle,
}

/// The current file of a stream, read as it grows.
#[derive(Debug)]
struct Follower {
    /// The current file's path.
    path: PathBuf,
    /// The file last found there; `None` before there was one.
    file: Option<LogFile>,
    offset: u64,
}

impl Follower {
    fn look(&mut self) -> io::Result<Look> {
        if let Some(file) = &self.file {
            let len = file.len()?;
            if len < self.offset {
                // Truncated in place (not what the supervisor does): start over.
                self.offset = 0;
            }
            if len > self.offset {
                // At most CHUNK: fits a usize.
                let mut chunk = vec![0; (len - self.offset).min(CHUNK as u64) as usize];
                let n = file.read_at(&mut chunk, self.offset)?;
                chunk.truncate(n);
                self.offset += n as u64;
                if n > 0 {
                    return Ok(Look::Bytes(chunk));
                }
            }
        }
        let at_path = FileId::at(&self.path)?;
        if at_path.is_none() || at_path == self.file.as_ref().map(LogFile::id) {
            return Ok(Look::Idle);
        }
        // Another file at the path. Open it before looking for what came in
        // between, so that nothing written to it is missed.
        let Some(new) = LogFile::open(&self.path)? else {
            return Ok(Look::Idle);
        };
        let mut segments = Vec::new();
        if let Some(old) = self.file.take() {
            let between = rotated_after(&self.path, old.id(), new.id())?;
            // The old file may have been written to after the last read.
            segments.push(Segment {
                file: old,
                offset: self.offset,
                end: None,
            });
            segments.extend(between.into_iter().map(|file| Segment {
                file,
                offset: 0,
                end: None,
            }));
        }
        self.file = Some(new);
        self.offset = 0;
        Ok(Look::Rotated(segments))
    }
}

/// A stream's output from a position on: what was there when it was
/// opened, then, when following, what is written after.
#[derive(Debug)]
pub struct OutputReader {
    replay: VecDeque<Segment>,
    follow: Option<Follower>,
    stop: CancellationToken,
    failed: bool,
}

impl OutputReader {
    /// Reads `snapshot` from `start`; with `follow`, goes on with the
    /// current file (from where the snapshot ends) until `stop`.
    pub(super) fn new(
        snapshot: Snapshot,
        start: Position,
        follow: Option<PathBuf>,
        stop: CancellationToken,
    ) -> Self {
        let has_current = snapshot.has_current;
        let count = snapshot.files.len();
        let mut replay = VecDeque::with_capacity(count);
        let mut current = None;
        for (index, (file, len)) in snapshot.files.into_iter().enumerate() {
            if has_current && index + 1 == count && follow.is_some() {
                current = Some((file, len, index));
                continue;
            }
            if index >= start.file {
                let offset = if index == start.file { start.offset } else { 0 };
                replay.push_back(Segment {
                    file,
                    offset,
                    end: Some(len),
                });
            }
        }
        let follow = follow.map(|path| match current {
            // The current file is read on by the follower: from the start
            // position when it lies in it, from its start when the position
            // is in an older file, from the snapshot's end when the position
            // is the end (no lines asked for).
            Some((file, len, index)) => Follower {
                path,
                file: Some(file),
                offset: match index.cmp(&start.file) {
                    std::cmp::Ordering::Less => len,
                    std::cmp::Ordering::Equal => start.offset,
                    std::cmp::Ordering::Greater => 0,
                },
            },
            None => Follower {
                path,
                file: None,
                offset: 0,
            },
        });
        Self {
            replay,
            follow,
            stop,
            failed: false,
        }
    }

    /// The next bytes; `None` at the end (or, when following, once stopped).
    /// After an error, nothing more.
    pub async fn next_chunk(&mut self) -> Option<io::Result<Vec<u8>>> {
        if self.failed {
            return None;
        }
        let next = self.next().await;
        self.failed = matches!(next, Some(Err(_)));
        next
    }

    async fn next(&mut self) -> Option<io::Result<Vec<u8>>> {
        loop {
            if let Some(segment) = self.replay.front_mut() {
                match segment.read() {
                    Ok(Some(chunk)) => return Some(Ok(chunk)),
                    Ok(None) => {
                        self.replay.pop_front();
                        continue;
                    }
                    Err(error) => return Some(Err(error)),
                }
            }
            let follower = self.follow.as_mut()?;
            if self.stop.is_cancelled() {
                return None;
            }
            // Short reads and stats of local files: made on the runtime's thread.
            match follower.look() {
                Ok(Look::Bytes(chunk)) => return Some(Ok(chunk)),
                Ok(Look::Rotated(segments)) => self.replay.extend(segments),
                Ok(Look::Idle) => {
                    tokio::select! {
                        () = tokio::time::sleep(POLL_INTERVAL) => {}
                        () = self.stop.cancelled() => return None,
                    }
                }
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// The same as a stream of chunks.
    pub fn into_stream(self) -> impl Stream<Item = io::Result<Vec<u8>>> + Send + 'static {
        futures::stream::unfold(self, |mut reader| async move {
            let chunk = reader.next_chunk().await?;
            Some((chunk, reader))
        })
    }
}
