//! The framework over real unix sockets: priority routing, fallback when the
//! best provider is dead or refuses, no fallback after an ack, enforced
//! timeouts, malformed frames refused while the provider keeps serving,
//! concurrent requests, and stopping with requests in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{Barrier, Notify, Semaphore};
use visor::provider::wire::{self, Ack, Request, ResponseHook};
use visor::provider::{
    AttemptFailure, CallError, Ending, Liveness, Provider, ProviderConfig, TaskConfig,
};
use visor_testkit::{eventually, within};

use crate::support::{LIMIT, Running, SocketDir};

/// A provider named `name` whose `echo` says who answered, counting its runs.
fn echo(config: ProviderConfig, runs: Arc<AtomicUsize>) -> Provider {
    let name = config.service_name.clone();
    Provider::new(config).task("echo", move |args: Value| {
        let name = name.clone();
        runs.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, String>(json!({"provider": name, "args": args})) }
    })
}

fn answered_by(reply: &visor::provider::Reply) -> String {
    let result = reply.response.clone().into_result().expect("a successful response");
    result["provider"].as_str().expect("provider name").to_owned()
}

/// What a crashed provider leaves: its socket (nobody listening) and its
/// lock file (nobody holding it).
fn leave_stale_socket(dir: &SocketDir, task: &str, priority: u32, name: &str) {
    let socket = dir.socket(task, priority, name);
    std::fs::create_dir_all(socket.parent().expect("task dir")).expect("task dir");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    std::fs::write(socket.with_extension("lock"), b"").expect("lock file");
}

#[tokio::test]
async fn a_task_goes_to_the_highest_numeric_priority_ties_broken_by_name() {
    within(LIMIT, "a provider or the call hangs", async {
        let dir = SocketDir::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut running = Vec::new();
        for (name, priority) in [("nine", 9), ("fifty-b", 50), ("hundred", 100), ("fifty-a", 50)] {
            running.push(Running::start(echo(dir.config(name, priority), Arc::clone(&runs))).await);
        }
        let caller = dir.caller().await;
        let order: Vec<String> = caller
            .candidates("echo")
            .expect("list")
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(order, ["100-hundred", "50-fifty-a", "50-fifty-b", "9-nine"]);
        assert!(caller.candidates("echo").expect("list").iter().all(|c| c.liveness == Liveness::Live));

        let reply = caller.call("echo", json!({"n": 1})).await.expect("call");
        assert_eq!(answered_by(&reply), "hundred");
        assert_eq!(reply.response.result["args"], json!({"n": 1}));
        assert_eq!(reply.ending, Ending::Responded);

        // The best one stops: its socket goes with it, and the tie is next.
        running.remove(2).stop().await;
        let reply = caller.call("echo", json!(null)).await.expect("call");
        assert_eq!(answered_by(&reply), "fifty-a");
        assert_eq!(runs.load(Ordering::SeqCst), 2, "each call ran once");
    })
    .await;
}

#[tokio::test]
async fn a_dead_best_provider_is_passed_over_stale_without_being_dialled() {
    within(LIMIT, "the call dials a dead socket forever", async {
        let dir = SocketDir::new();
        leave_stale_socket(&dir, "echo", 100, "crashed");
        // A dead provider that kept no lock: dialling it is refused at once.
        let unlocked = dir.socket("echo", 90, "lockless");
        drop(std::os::unix::net::UnixListener::bind(&unlocked).expect("bind"));
        let _alive = Running::start(echo(dir.config("alive", 50), Arc::default())).await;

        let caller = dir.caller().await;
        let liveness: Vec<(String, Liveness)> = caller
            .candidates("echo")
            .expect("list")
            .iter()
            .map(|c| (c.to_string(), c.liveness))
            .collect();
        assert_eq!(
            liveness,
            [
                ("100-crashed".to_owned(), Liveness::Stale),
                ("90-lockless".to_owned(), Liveness::Unlocked),
                ("50-alive".to_owned(), Liveness::Live)
            ]
        );
        let reply = caller.call("echo", json!(null)).await.expect("call");
        assert_eq!(answered_by(&reply), "alive");
    })
    .await;
}

#[tokio::test]
async fn a_provider_restarting_replaces_its_stale_socket() {
    within(LIMIT, "binding over a stale socket hangs", async {
        let dir = SocketDir::new();
        leave_stale_socket(&dir, "echo", 50, "p");
        let _p = Running::start(echo(dir.config("p", 50), Arc::default())).await;
        let caller = dir.caller().await;
        let candidates = caller.candidates("echo").expect("list");
        assert_eq!(candidates.len(), 1);
        assert_eq!(candidates[0].liveness, Liveness::Live);
        assert_eq!(answered_by(&caller.call("echo", json!(null)).await.expect("call")), "p");
        // A second live provider of the same name and priority is refused.
        let error = echo(dir.config("p", 50), Arc::default())
            .bind()
            .await
            .expect_err("the socket is served");
        assert!(error.to_string().contains("cannot serve task \"echo\""), "{error}");
    })
    .await;
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "read only to refuse other args")]
struct Strict {
    only: u32,
}

#[tokio::test]
async fn a_refusal_falls_back_to_the_next_provider_and_its_handler_never_runs() {
    within(LIMIT, "a provider or the call hangs", async {
        let dir = SocketDir::new();
        let strict_runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&strict_runs);
        let _strict = Running::start(Provider::new(dir.config("strict", 100)).task(
            "echo",
            move |_: Strict| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, String>(json!("strict")) }
            },
        ))
        .await;
        let _lenient = Running::start(echo(dir.config("lenient", 50), Arc::default())).await;
        let caller = dir.caller().await;
        let reply = caller.call("echo", json!({"other": 1})).await.expect("call");
        assert_eq!(answered_by(&reply), "lenient");
        assert_eq!(strict_runs.load(Ordering::SeqCst), 0);

        // Args the strict provider takes go to it.
        let reply = caller.call("echo", json!({"only": 1})).await.expect("call");
        assert_eq!(reply.response.result, json!("strict"));
    })
    .await;
}

#[tokio::test]
async fn when_every_provider_fails_to_acknowledge_the_error_lists_each() {
    within(LIMIT, "the call hangs", async {
        let dir = SocketDir::new();
        leave_stale_socket(&dir, "echo", 60, "dead");
        let _strict = Running::start(
            Provider::new(dir.config("strict", 10))
                .task("echo", |_: Strict| async { Ok::<_, String>(()) }),
        )
        .await;
        let caller = dir.caller().await;
        let error = caller.call("echo", json!("x")).await.expect_err("nobody acknowledges");
        let CallError::NotAcknowledged { attempts, .. } = &error else {
            panic!("{error:?}");
        };
        assert!(matches!(attempts[0].failure, AttemptFailure::Stale), "{error}");
        assert!(matches!(&attempts[1].failure, AttemptFailure::Refused(why) if why.contains("invalid args")), "{error}");
        let text = error.to_string();
        assert!(text.contains("60-dead: stale socket") && text.contains("10-strict: refused"), "{text}");

        let none = caller.call("absent", json!(null)).await.expect_err("no provider");
        assert!(matches!(none, CallError::NoProvider { .. }), "{none:?}");
    })
    .await;
}

#[tokio::test]
async fn after_an_ack_there_is_no_fallback_even_when_the_task_fails() {
    within(LIMIT, "a provider or the call hangs", async {
        let dir = SocketDir::new();
        let failing_runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&failing_runs);
        let mut config = dir.config("failing", 100);
        config.tasks.insert(
            "slow".into(),
            TaskConfig {
                timeout: Some(Duration::from_millis(200)),
                ..TaskConfig::default()
            },
        );
        let _failing = Running::start(
            Provider::new(config)
                .task("echo", move |_: Value| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async { Err::<(), _>("disk full") }
                })
                .task("slow", |_: Value| futures::future::pending::<Result<(), String>>()),
        )
        .await;
        let backup_runs = Arc::new(AtomicUsize::new(0));
        let backup = Provider::new(dir.config("backup", 50))
            .task("slow", {
                let runs = Arc::clone(&backup_runs);
                move |_: Value| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, String>(()) }
                }
            });
        let _backup = Running::start(echo_into(backup, Arc::clone(&backup_runs))).await;

        let caller = dir.caller().await;
        let reply = caller.call("echo", json!(null)).await.expect("call");
        assert_eq!(reply.provider.provider, "failing");
        assert_eq!(reply.response.error.as_deref(), Some("disk full"));
        let reply = caller.call("slow", json!(null)).await.expect("call");
        assert_eq!(reply.provider.provider, "failing");
        assert_eq!(reply.response.error.as_deref(), Some("task slow timed out after 200ms"));
        assert_eq!(failing_runs.load(Ordering::SeqCst), 1);
        assert_eq!(backup_runs.load(Ordering::SeqCst), 0, "the backup never ran a task acknowledged elsewhere");
    })
    .await;
}

/// Adds an `echo` task to `provider`, counted in `runs`.
fn echo_into(provider: Provider, runs: Arc<AtomicUsize>) -> Provider {
    provider.task("echo", move |_: Value| {
        runs.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, String>(json!({"provider": "backup"})) }
    })
}

/// Sets a flag when dropped: shows a handler's future was dropped.
struct DropFlag(Arc<Notify>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

#[tokio::test]
async fn a_task_past_its_timeout_is_dropped_and_answered_with_a_timeout() {
    within(LIMIT, "the timeout is not enforced", async {
        let dir = SocketDir::new();
        let dropped = Arc::new(Notify::new());
        let flag = Arc::clone(&dropped);
        let config = dir.config("p", 50).task(
            "hang",
            TaskConfig {
                timeout: Some(Duration::from_millis(100)),
                ..TaskConfig::default()
            },
        );
        let _p = Running::start(Provider::new(config).task("hang", move |_: Value| {
            let guard = DropFlag(Arc::clone(&flag));
            async move {
                let _guard = guard;
                futures::future::pending::<Result<(), String>>().await
            }
        }))
        .await;
        let caller = dir.caller().await;
        let reply = caller.call("hang", json!(null)).await.expect("call");
        assert_eq!(reply.ending, Ending::Responded, "the provider's own timeout response");
        assert_eq!(reply.response.error.as_deref(), Some("task hang timed out after 100ms"));
        within(Duration::from_secs(5), "the handler's future is never dropped", dropped.notified()).await;
    })
    .await;
}

#[tokio::test]
async fn a_caller_ends_an_unanswered_request_at_its_timeout() {
    within(LIMIT, "the caller waits past its timeout", async {
        let dir = SocketDir::new();
        // A provider that acknowledges and never answers.
        let socket = dir.socket("mute", 50, "mute");
        std::fs::create_dir_all(socket.parent().expect("dir")).expect("dir");
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        let mute = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (stream, _) = listener.accept().await.expect("accept");
                let mut frames = wire::framed(stream, wire::DEFAULT_MAX_FRAME);
                let request: Request = wire::receive(&mut frames).await.expect("read").expect("a request");
                wire::send(&mut frames, &Ack::accepted(request.id)).await.expect("ack");
                held.push(frames);
            }
        });
        let caller = dir
            .caller_with(|mut config| {
                config.request_timeout = Duration::from_millis(300);
                config
            })
            .await;
        let reply = caller.call("mute", json!(null)).await.expect("call");
        assert_eq!(reply.ending, Ending::TimedOut);
        assert_eq!(reply.response.error.as_deref(), Some("no response within 300ms"));
        assert_eq!(caller.in_flight(), 0);
        mute.abort();
    })
    .await;
}

/// Sends raw bytes on a fresh connection to `socket` and reads the ack.
async fn raw_exchange(socket: &std::path::Path, bytes: &[u8], close_write: bool) -> Ack {
    let mut stream = UnixStream::connect(socket).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    if close_write {
        stream.shutdown().await.expect("shutdown");
    }
    let mut frames = wire::framed(stream, wire::DEFAULT_MAX_FRAME);
    wire::receive(&mut frames).await.expect("an ack").expect("an ack before close")
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len()).expect("small").to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn malformed_requests_are_refused_with_a_clear_error_while_the_provider_keeps_serving() {
    within(LIMIT, "a malformed request hangs the provider", async {
        let dir = SocketDir::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let provider = echo(dir.config("p", 50), Arc::clone(&runs))
            .max_frame(1024)
            .read_timeout(Duration::from_millis(300));
        let _p = Running::start(provider).await;
        let socket = dir.socket("echo", 50, "p");
        let hook = "\"responsehook\":\"unix:///nowhere.sock\"";
        let mut short = 100u32.to_be_bytes().to_vec();
        short.extend_from_slice(b"{\"id\":");
        let cases: Vec<(&str, Vec<u8>, bool, &str)> = vec![
            ("short", short, true, "connection closed in the middle of a frame"),
            ("short header", vec![0, 0], true, "connection closed in the middle of a frame"),
            ("oversized", 1_000_000u32.to_be_bytes().to_vec(), false, "frame longer than the maximum of 1024 bytes"),
            ("not JSON", frame(b"hello"), false, "request is not JSON"),
            ("not an object", frame(b"[1,2]"), false, "request is not a JSON object"),
            ("no id", frame(format!("{{\"task\":\"echo\",{hook}}}").as_bytes()), false, "request has no \"id\""),
            ("no hook", frame(br#"{"id":"r","task":"echo"}"#), false, "request has no \"responsehook\""),
            ("bad hook", frame(br#"{"id":"r","task":"echo","responsehook":"http://x/"}"#), false, "scheme \"http\" is not supported"),
            ("unknown task", frame(format!("{{\"id\":\"r\",\"task\":\"nope\",{hook}}}").as_bytes()), false, "unknown task \"nope\": this socket serves \"echo\""),
            ("silence", Vec::new(), false, "no request within 300ms"),
        ];
        for (what, bytes, close_write, expected) in cases {
            let ack = within(Duration::from_secs(5), what, raw_exchange(&socket, &bytes, close_write)).await;
            let error = ack.error.unwrap_or_else(|| panic!("{what}: accepted"));
            assert!(error.contains(expected), "{what}: {error:?} does not say {expected:?}");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 0, "no refused request ran");
        let caller = dir.caller().await;
        let reply = caller.call("echo", json!("still here")).await.expect("call");
        assert_eq!(reply.response.result["args"], json!("still here"));
    })
    .await;
}

#[tokio::test]
async fn the_ack_echoes_the_id_and_comes_before_the_handler_runs() {
    within(LIMIT, "the ack or the response never comes", async {
        let dir = SocketDir::new();
        let gate = Arc::new(Semaphore::new(0));
        let opened = Arc::clone(&gate);
        let _p = Running::start(Provider::new(dir.config("p", 50)).task("gated", move |_: Value| {
            let gate = Arc::clone(&opened);
            async move {
                let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(json!("done"))
            }
        }))
        .await;
        // Our own hook, to see the response arrive after the ack.
        let hook_path = dir.path().join("hook.sock");
        let hook_listener = tokio::net::UnixListener::bind(&hook_path).expect("bind hook");
        let request = Request::new("gated", ResponseHook::unix(&hook_path).expect("absolute"), json!(null));
        let stream = UnixStream::connect(dir.socket("gated", 50, "p")).await.expect("connect");
        let mut frames = wire::framed(stream, wire::DEFAULT_MAX_FRAME);
        wire::send(&mut frames, &request).await.expect("send");
        let ack: Ack = wire::receive(&mut frames).await.expect("read").expect("ack");
        assert_eq!(ack, Ack::accepted(request.id.clone()), "acknowledged while the handler waits");
        gate.add_permits(1);
        let (hook_stream, _) = hook_listener.accept().await.expect("the response comes");
        let mut hook_frames = wire::framed(hook_stream, wire::DEFAULT_MAX_FRAME);
        let response: wire::Response = wire::receive(&mut hook_frames).await.expect("read").expect("response");
        assert_eq!(response.id, request.id);
        assert_eq!(response.into_result(), Ok(json!("done")));
        wire::send(&mut hook_frames, &Ack::accepted(request.id)).await.expect("ack the response");
    })
    .await;
}

#[tokio::test]
async fn concurrent_requests_run_concurrently_and_each_gets_its_own_response() {
    const CALLS: usize = 32;
    within(LIMIT, "the calls do not all run at once (a barrier waits)", async {
        let dir = SocketDir::new();
        let barrier = Arc::new(Barrier::new(CALLS));
        let _p = Running::start(Provider::new(dir.config("p", 50)).task("meet", move |n: u64| {
            let barrier = Arc::clone(&barrier);
            async move {
                barrier.wait().await;
                Ok::<_, String>(n * 2)
            }
        }))
        .await;
        let caller = dir.caller().await;
        let calls = (0..CALLS as u64).map(|n| {
            let caller = caller.clone();
            async move { (n, caller.call("meet", json!(n)).await.expect("call")) }
        });
        for (n, reply) in futures::future::join_all(calls).await {
            assert_eq!(reply.response.into_result(), Ok(json!(n * 2)));
        }
        assert_eq!(caller.in_flight(), 0);
    })
    .await;
}

#[tokio::test]
async fn stopping_removes_the_sockets_and_lets_requests_in_flight_finish() {
    within(LIMIT, "stop does not wait for, or never ends, requests in flight", async {
        let dir = SocketDir::new();
        let started = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Semaphore::new(0));
        let (s, r) = (Arc::clone(&started), Arc::clone(&release));
        let p = Running::start(Provider::new(dir.config("p", 50)).task("work", move |n: u64| {
            s.fetch_add(1, Ordering::SeqCst);
            let release = Arc::clone(&r);
            async move {
                let _permit = release.acquire().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(n)
            }
        }))
        .await;
        let caller = dir.caller().await;
        let calls: Vec<_> = (0..3u64)
            .map(|n| {
                let caller = caller.clone();
                tokio::spawn(async move { caller.call("work", json!(n)).await })
            })
            .collect();
        eventually(Duration::from_secs(5), "three requests in flight", || async {
            (started.load(Ordering::SeqCst) == 3).then_some(())
        })
        .await;
        p.shutdown.cancel();
        eventually(Duration::from_secs(5), "the socket is removed on stop", || async {
            (!dir.socket("work", 50, "p").exists()).then_some(())
        })
        .await;
        let refused = caller.call("work", json!(9)).await.expect_err("no longer served");
        assert!(matches!(refused, CallError::NoProvider { .. }), "{refused:?}");
        release.add_permits(3);
        for (n, call) in calls.into_iter().enumerate() {
            let reply = call.await.expect("call task").expect("call");
            assert_eq!(reply.response.into_result(), Ok(json!(n)));
        }
        p.stopped().await;
    })
    .await;
}

#[tokio::test]
async fn stopping_past_the_drain_timeout_answers_what_still_runs_with_an_error() {
    within(LIMIT, "stop waits for a handler that never ends", async {
        let dir = SocketDir::new();
        let started = Arc::new(Notify::new());
        let s = Arc::clone(&started);
        let provider = Provider::new(dir.config("p", 50))
            .task("forever", move |_: Value| {
                s.notify_one();
                futures::future::pending::<Result<(), String>>()
            })
            .drain_timeout(Duration::from_millis(200));
        let p = Running::start(provider).await;
        let caller = dir.caller().await;
        let call = tokio::spawn({
            let caller = caller.clone();
            async move { caller.call("forever", json!(null)).await }
        });
        started.notified().await;
        p.stop().await;
        let reply = call.await.expect("call task").expect("call");
        assert_eq!(reply.ending, Ending::Responded);
        assert_eq!(
            reply.response.error.as_deref(),
            Some("provider p stopped before task forever finished")
        );
    })
    .await;
}
