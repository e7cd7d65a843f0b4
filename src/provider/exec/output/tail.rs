//! Where the last N lines of a stream start, found by reading its files
//! backwards from the end: only as much as those lines take is read.
//!
//! A stream is the concatenation of its files, oldest first (a line may
//! span two files: the supervisor cuts a write at the size limit). A final
//! line without a newline counts as a line; the newline that ends the
//! stream does not start one.

use std::io;

use super::files::LogFile;

/// How much is read at once.
const CHUNK: usize = 64 * 1024;

/// A place in a stream: a file (an index into its files) and an offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Position {
    pub(super) file: usize,
    pub(super) offset: u64,
}

impl Position {
    /// The start of the stream.
    pub(super) const START: Self = Self { file: 0, offset: 0 };
}

/// What the backward scan reads: bytes at an offset.
pub(super) trait ReadAt {
    /// Fills `buf` from `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for LogFile {
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }
}

/// Where the last `lines` lines of `files` (each with the length to read
/// up to) start; the end of the stream for 0 lines, its start when it has
/// fewer.
pub(super) fn start_of_last_lines<F: ReadAt>(
    files: &[(F, u64)],
    lines: u64,
) -> io::Result<Position> {
    if lines == 0 {
        return Ok(Position {
            file: files.len(),
            offset: 0,
        });
    }
    let mut buf = vec![0; CHUNK];
    let mut newlines = 0;
    let mut at_stream_end = true;
    for (index, (file, len)) in files.iter().enumerate().rev() {
        let mut end = *len;
        while end > 0 {
            let start = end.saturating_sub(CHUNK as u64);
            // At most CHUNK: the difference fits a usize.
            let chunk = &mut buf[..(end - start) as usize];
            file.read_exact_at(chunk, start)?;
            for (i, byte) in chunk.iter().enumerate().rev() {
                let last_byte = std::mem::replace(&mut at_stream_end, false);
                if *byte == b'\n' && !last_byte {
                    newlines += 1;
                    if newlines == lines {
                        return Ok(Position {
                            file: index,
                            offset: start + i as u64 + 1,
                        });
                    }
                }
            }
            end = start;
        }
    }
    Ok(Position::START)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    impl ReadAt for Vec<u8> {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let offset = offset as usize;
            buf.copy_from_slice(&self[offset..offset + buf.len()]);
            Ok(())
        }
    }

    fn files(contents: &[&str]) -> Vec<(Vec<u8>, u64)> {
        contents
            .iter()
            .map(|text| (text.as_bytes().to_vec(), text.len() as u64))
            .collect()
    }

    /// The stream from `position` on.
    fn from(files: &[(Vec<u8>, u64)], position: Position) -> String {
        let mut text = String::new();
        for (index, (bytes, _)) in files.iter().enumerate().skip(position.file) {
            let start = if index == position.file {
                position.offset as usize
            } else {
                0
            };
            text.push_str(std::str::from_utf8(&bytes[start..]).expect("UTF-8"));
        }
        text
    }

    #[test]
    fn the_last_lines_are_found_across_files() {
        let cases: &[(&[&str], u64, &str)] = &[
            (&[], 3, ""),
            (&[""], 3, ""),
            (&["a\nb\nc\n"], 2, "b\nc\n"),
            (&["a\nb\nc\n"], 3, "a\nb\nc\n"),
            (&["a\nb\nc\n"], 9, "a\nb\nc\n"),
            (&["a\nb\nc\n"], 0, ""),
            // A last line without its newline is a line.
            (&["a\nb\nc"], 1, "c"),
            (&["a\nb\nc"], 2, "b\nc"),
            // Lines across rotated files, one of them cut by the size limit.
            (&["a\nb\nc", "c\nd\n", "e\n"], 2, "d\ne\n"),
            (&["a\nb\nc", "c\nd\n", "e\n"], 3, "cc\nd\ne\n"),
            (&["a\nb\nc", "c\nd\n", "e\n"], 4, "b\ncc\nd\ne\n"),
            // An empty current file: the lines are in the rotated ones.
            (&["a\nb\n", ""], 1, "b\n"),
            (&["\n\n\n"], 2, "\n\n"),
        ];
        for (contents, lines, want) in cases {
            let files = files(contents);
            let position = start_of_last_lines(&files, *lines).expect("read");
            assert_eq!(from(&files, position), *want, "{contents:?}, {lines} lines");
        }
    }

    #[test]
    fn only_the_length_given_is_read() {
        // The current file grew after its length was taken: the growth is not part of the tail.
        let files = vec![(b"a\nb\nc\nlater\n".to_vec(), 6)];
        let position = start_of_last_lines(&files, 1).expect("read");
        assert_eq!(position, Position { file: 0, offset: 4 });
    }

    #[test]
    fn lines_longer_than_a_chunk_are_found() {
        let long = "x".repeat(CHUNK * 2 + 7);
        let text = format!("first\n{long}\nlast\n");
        let files = files(&[&text[..CHUNK], &text[CHUNK..]]);
        let position = start_of_last_lines(&files, 2).expect("read");
        assert_eq!(from(&files, position), format!("{long}\nlast\n"));
    }

    proptest! {
        #[test]
        fn the_tail_is_the_last_lines_of_the_whole_stream(
            lines in prop::collection::vec("[a-c]{0,3}", 0..12),
            cuts in prop::collection::vec(0usize..40, 0..4),
            trailing_newline in any::<bool>(),
            n in 0u64..15,
        ) {
            let mut text = lines.join("\n");
            if trailing_newline && !text.is_empty() {
                text.push('\n');
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut at = 0;
            for cut in cuts {
                pieces.push(&text[at..cut]);
                at = cut;
            }
            pieces.push(&text[at..]);
            let files = files(&pieces);
            let got = from(&files, start_of_last_lines(&files, n).expect("read"));
            // The model: split into lines (keeping their newlines), take the last n.
            let all: Vec<&str> = text.split_inclusive('\n').collect();
            let want: String = all[all.len().saturating_sub(n as usize)..].concat();
            prop_assert_eq!(got, want);
        }
    }
}
