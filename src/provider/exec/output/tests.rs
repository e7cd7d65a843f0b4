//! Reading real files: tails across rotated files, and followers across
//! rotations, on a paused clock (a follower's polls take no time).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use super::files::rotated_path;
use super::*;

fn id(text: &str) -> Name {
    Name::parse("instance", text).expect("a valid id")
}

/// An instances directory with instance `i-1` and its logs directory.
fn instances() -> (tempfile::TempDir, InstanceOutput) {
    let root = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir_all(root.path().join("i-1/logs")).expect("created");
    let output = InstanceOutput::find(root.path(), &id("i-1")).expect("found");
    (root, output)
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("opened");
    file.write_all(text.as_bytes()).expect("written");
}

/// What the supervisor does at a rotation: `.1` → `.2`, ..., current →
/// `.1`, and a new current file.
fn rotate(current: &Path, keep: usize) {
    for n in (1..keep).rev() {
        let from = rotated_path(current, n);
        if from.exists() {
            std::fs::rename(&from, rotated_path(current, n + 1)).expect("renamed");
        }
    }
    std::fs::rename(current, rotated_path(current, 1)).expect("renamed");
    std::fs::File::create(current).expect("created");
}

async fn read_all(mut reader: OutputReader) -> String {
    let mut text = Vec::new();
    while let Some(chunk) = reader.next_chunk().await {
        text.extend(chunk.expect("read"));
    }
    String::from_utf8(text).expect("UTF-8")
}

/// Reads chunks until `want` bytes came.
async fn read_exactly(reader: &mut OutputReader, want: usize) -> String {
    let mut text = Vec::new();
    while text.len() < want {
        let chunk = reader
            .next_chunk()
            .await
            .expect("not the end")
            .expect("read");
        text.extend(chunk);
    }
    String::from_utf8(text).expect("UTF-8")
}

fn options(tail: Option<u64>, follow: bool) -> ReadOptions {
    ReadOptions { tail, follow }
}

#[tokio::test]
async fn an_unknown_instance_is_not_found() {
    let (root, _output) = instances();
    match InstanceOutput::find(root.path(), &id("i-2")) {
        Err(OutputError::NoInstance { instance }) => assert_eq!(instance.as_str(), "i-2"),
        other => panic!("expected NoInstance, got {other:?}"),
    }
}

#[tokio::test]
async fn the_tail_spans_rotated_files_and_each_stream_is_its_own() {
    let (_root, output) = instances();
    let stdout = output.current_file(OutputStream::Stdout);
    append(&rotated_path(&stdout, 2), "1\n2\n");
    append(&rotated_path(&stdout, 1), "3\n");
    append(&stdout, "4\n");
    append(&output.current_file(OutputStream::Stderr), "oops\n");
    let stop = CancellationToken::new();
    let read = |stream, tail| {
        let stop = stop.clone();
        let output = output.clone();
        async move {
            let reader = output
                .read(stream, options(tail, false), stop)
                .await
                .expect("opened");
            read_all(reader).await
        }
    };
    assert_eq!(read(OutputStream::Stdout, Some(3)).await, "2\n3\n4\n");
    assert_eq!(read(OutputStream::Stdout, Some(1)).await, "4\n");
    assert_eq!(read(OutputStream::Stdout, None).await, "1\n2\n3\n4\n");
    assert_eq!(read(OutputStream::Stdout, Some(0)).await, "");
    assert_eq!(read(OutputStream::Stderr, None).await, "oops\n");
}

#[tokio::test(start_paused = true)]
async fn a_follower_reads_on_across_rotations() {
    let (_root, output) = instances();
    let stdout = output.current_file(OutputStream::Stdout);
    append(&stdout, "old\nlast\n");
    let mut reader = output
        .read(
            OutputStream::Stdout,
            options(Some(1), true),
            CancellationToken::new(),
        )
        .await
        .expect("opened");
    assert_eq!(read_exactly(&mut reader, 5).await, "last\n");
    append(&stdout, "appended\n");
    assert_eq!(read_exactly(&mut reader, 9).await, "appended\n");
    // Written just before a rotation, after the follower's last read.
    append(&stdout, "before\n");
    rotate(&stdout, 3);
    append(&stdout, "after\n");
    assert_eq!(read_exactly(&mut reader, 13).await, "before\nafter\n");
    // Two rotations between two looks: the file in between is read too.
    append(&stdout, "a\n");
    rotate(&stdout, 3);
    append(&stdout, "b\n");
    rotate(&stdout, 3);
    append(&stdout, "c\n");
    assert_eq!(read_exactly(&mut reader, 6).await, "a\nb\nc\n");
}

#[tokio::test(start_paused = true)]
async fn a_follower_waits_for_the_first_file_and_ends_when_stopped() {
    let (_root, output) = instances();
    let stop = CancellationToken::new();
    let mut reader = output
        .read(OutputStream::Stderr, options(Some(10), true), stop.clone())
        .await
        .expect("opened");
    append(&output.current_file(OutputStream::Stderr), "first\n");
    assert_eq!(read_exactly(&mut reader, 6).await, "first\n");
    stop.cancel();
    assert!(reader.next_chunk().await.is_none(), "stopped");
}

#[tokio::test(start_paused = true)]
async fn a_follower_of_no_lines_starts_at_the_end() {
    let (_root, output) = instances();
    let stdout = output.current_file(OutputStream::Stdout);
    append(&stdout, "before\n");
    let mut reader = output
        .read(
            OutputStream::Stdout,
            options(Some(0), true),
            CancellationToken::new(),
        )
        .await
        .expect("opened");
    append(&stdout, "new\n");
    assert_eq!(read_exactly(&mut reader, 4).await, "new\n");
}
