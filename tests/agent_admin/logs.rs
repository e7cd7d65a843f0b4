//! `/logs/<instance>`: tails across rotated files, streams, followers that
//! see what is written after the request and across a rotation, and ends
//! when the client goes or the server stops; unknown instances and bad
//! parameters refused with what was wrong.

use reqwest::StatusCode;
use visor_testkit::{eventually, within};

use crate::support::{LIMIT, OUTPUT_WAIT, Stream, Streamed, TestAgent, get, raw_get};

#[tokio::test]
async fn the_tail_spans_rotated_files() {
    within(LIMIT, "a /logs request hangs", async {
        let agent = TestAgent::start().await;
        let files = agent.instance("i-1");
        files.write_rotated(Stream::Stdout, 2, "1\n2\n");
        files.write_rotated(Stream::Stdout, 1, "3\n4\n");
        files.append(Stream::Stdout, "5\n");
        for (query, want) in [
            ("?tail=3", "3\n4\n5\n"),
            ("?tail=1", "5\n"),
            ("?tail=0", ""),
            ("", "1\n2\n3\n4\n5\n"),
            ("?tail=100&stream=stdout&follow=false", "1\n2\n3\n4\n5\n"),
        ] {
            let (status, body) = get(&agent.at(&format!("/logs/i-1{query}"))).await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, want), "{query}");
        }
    })
    .await;
}

#[tokio::test]
async fn stderr_is_read_on_its_own() {
    within(LIMIT, "a /logs request hangs", async {
        let agent = TestAgent::start().await;
        let files = agent.instance("i-1");
        files.append(Stream::Stdout, "out\n");
        files.append(Stream::Stderr, "err 1\nerr 2\n");
        let (status, body) = get(&agent.at("/logs/i-1?stream=stderr&tail=1")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "err 2\n"));
        // An instance that has written nothing yet has empty streams.
        agent.instance("i-2");
        let (status, body) = get(&agent.at("/logs/i-2?stream=stderr")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    })
    .await;
}

#[tokio::test]
async fn a_follower_sees_new_lines_across_a_rotation_until_the_server_stops() {
    within(LIMIT, "a followed /logs response hangs", async {
        let mut agent = TestAgent::start().await;
        let files = agent.instance("i-1");
        files.append(Stream::Stdout, "old\nbefore\n");
        let mut followed = Streamed::open(&agent.at("/logs/i-1?tail=1&follow=true")).await;
        followed.until("before\n").await;
        // Written after the response started.
        files.append(Stream::Stdout, "after\n");
        followed.until("after\n").await;
        files.append(Stream::Stdout, "last of the old file\n");
        files.rotate(Stream::Stdout);
        files.append(Stream::Stdout, "first of the new file\n");
        followed.until("first of the new file\n").await;
        assert_eq!(
            followed.text, "before\nafter\nlast of the old file\nfirst of the new file\n",
            "every line once, in order"
        );
        // Shutting down ends the followed response, which ends the server.
        agent.stop().await;
        assert_eq!(
            followed.end().await,
            "before\nafter\nlast of the old file\nfirst of the new file\n"
        );
    })
    .await;
}

#[tokio::test]
async fn a_follower_stops_reading_when_its_client_goes() {
    within(LIMIT, "a followed /logs response hangs", async {
        let agent = TestAgent::start().await;
        let files = agent.instance("i-1");
        files.append(Stream::Stderr, "line\n");
        let mut followed = Streamed::open(&agent.at("/logs/i-1?stream=stderr&follow=true")).await;
        followed.until("line\n").await;
        assert!(
            files.open_descriptors() > 0,
            "the follower holds the file open"
        );
        drop(followed);
        eventually(
            OUTPUT_WAIT,
            "the follower closes its file after its client went",
            || async { (files.open_descriptors() == 0).then_some(()) },
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn an_unknown_instance_is_not_found() {
    within(LIMIT, "a /logs request hangs", async {
        let agent = TestAgent::start().await;
        agent.instance("i-1");
        let (status, body) = get(&agent.at("/logs/i-2?follow=true")).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, "no instance i-2 on this host\n")
        );
    })
    .await;
}

#[tokio::test]
async fn a_bad_instance_id_or_parameter_is_refused_naming_it() {
    within(LIMIT, "a /logs request hangs", async {
        let agent = TestAgent::start().await;
        agent.instance("i-1");
        for (path, mention) in [
            // Percent-encoded so that it reaches the server as one segment.
            (
                "/logs/..%2F..%2Fetc%2Fpasswd",
                "invalid instance name \"../../etc/passwd\"",
            ),
            ("/logs/%2E%2E", "invalid instance name \"..\""),
            ("/logs/I-1", "invalid instance name \"I-1\""),
            (
                "/logs/i-1?tail=-3",
                "parameter tail: expected a number of lines (0 or more), got \"-3\"",
            ),
            (
                "/logs/i-1?stream=both",
                "parameter stream: expected stdout or stderr, got \"both\"",
            ),
            (
                "/logs/i-1?follow=1",
                "parameter follow: expected true or false, got \"1\"",
            ),
            ("/logs/i-1?lines=3", "unknown parameter \"lines\""),
            (
                "/logs/i-1?tail=1&tail=2",
                "parameter tail is given more than once",
            ),
        ] {
            let (status, body) = raw_get(agent.addr, path).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert!(body.contains(mention), "{path}: {body}");
        }
    })
    .await;
}
