//! The embedded registry on its own: `etcdctl` works against it unchanged,
//! a SIGKILL in the middle of acknowledged writes loses none of them and
//! half-applies nothing, and it keeps serving through bad input.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use etcd_client::{Client, EventType, PutOptions, Txn, TxnOp, WatchOptions};
use visor::embedded::{EmbeddedRegistry, ServeOptions};
use visor::registry::{LocalRegistry, LocalRegistryOptions, LocalServer};
use visor_testkit::cli::visor_binary;
use visor_testkit::{eventually, within};

const LIMIT: Duration = Duration::from_secs(60);

async fn embedded() -> LocalRegistry {
    LocalRegistry::start_with(LocalRegistryOptions {
        server: LocalServer::Embedded {
            visor: visor_binary(),
        },
        ..LocalRegistryOptions::default()
    })
    .await
    .expect("start the embedded registry")
}

/// The endpoint as etcdctl is given it: `host:port`. (With a scheme,
/// etcdctl's `endpoint status` sends the whole URL as the HTTP/2 authority,
/// which etcd's gRPC server lets pass and this registry's HTTP/2 server
/// refuses.)
fn etcdctl_endpoint(server: &LocalRegistry) -> String {
    format!("--endpoints=127.0.0.1:{}", server.metrics_port())
}

fn etcdctl(server: &LocalRegistry, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(etcdctl_endpoint(server))
        .arg("--command-timeout=5s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl (bash .ci/setup installs it)");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input
            .write_all(text.as_bytes())
            .expect("write etcdctl's input");
    }
    drop(input);
    child.wait_with_output().expect("etcdctl output")
}

/// Runs etcdctl and returns its output, failing on a failed run.
fn ok(server: &LocalRegistry, args: &[&str], stdin: Option<&str>) -> String {
    let output = etcdctl(server, args, stdin);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "etcdctl {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn etcdctl_works_against_the_embedded_registry() {
    within(LIMIT, "etcdctl hangs", async {
        let server = embedded().await;
        assert_eq!(ok(&server, &["put", "app/a", "1"], None).trim(), "OK");
        ok(&server, &["put", "app/b", "2"], None);
        ok(&server, &["put", "other", "3"], None);
        assert_eq!(
            ok(&server, &["get", "--prefix", "app/"], None),
            "app/a\n1\napp/b\n2\n"
        );
        assert_eq!(ok(&server, &["del", "app/b"], None).trim(), "1");
        let txn = "value(\"app/a\") = \"1\"\n\nput app/a won\n\nput app/a lost\n\n";
        let answered = ok(&server, &["txn"], Some(txn));
        assert!(answered.starts_with("SUCCESS"), "{answered}");
        assert_eq!(
            ok(&server, &["get", "app/a", "--print-value-only"], None),
            "won\n"
        );

        let granted = ok(&server, &["lease", "grant", "30"], None);
        let lease = granted
            .split_whitespace()
            .nth(1)
            .expect("a lease id")
            .to_owned();
        ok(
            &server,
            &["put", "leased", "x", &format!("--lease={lease}")],
            None,
        );
        let kept = ok(&server, &["lease", "keep-alive", "--once", &lease], None);
        assert!(kept.contains("keepalived with TTL(30)"), "{kept}");
        let ttl = ok(&server, &["lease", "timetolive", &lease, "--keys"], None);
        assert!(ttl.contains("attached keys([leased])"), "{ttl}");
        ok(&server, &["lease", "revoke", &lease], None);
        assert_eq!(ok(&server, &["get", "leased"], None), "");

        let health = etcdctl(&server, &["endpoint", "health"], None);
        assert!(
            String::from_utf8_lossy(&health.stderr).contains("is healthy")
                || String::from_utf8_lossy(&health.stdout).contains("is healthy"),
            "{health:?}"
        );
        let status = ok(&server, &["endpoint", "status", "-w", "json"], None);
        let status: serde_json::Value = serde_json::from_str(&status).expect("json status");
        assert!(
            status[0]["Status"]["header"]["revision"].as_i64() > Some(5),
            "{status}"
        );
        let members = ok(&server, &["member", "list", "-w", "json"], None);
        let members: serde_json::Value = serde_json::from_str(&members).expect("json members");
        assert_eq!(
            members["members"].as_array().map(Vec::len),
            Some(1),
            "{members}"
        );

        // A watch sees what is put after it starts, then compaction ends old reads.
        let mut watch = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(etcdctl_endpoint(&server))
            .args(["watch", "--prefix", "w/"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcdctl watch");
        let lines = watch_lines(watch.stdout.take().expect("watch's output"));
        let port = server.metrics_port();
        eventually(
            Duration::from_secs(10),
            "etcdctl's watch is open",
            || async move {
                let (_, metrics) = visor_testkit::controller::admin_get(port, "/metrics")?;
                metrics
                    .lines()
                    .any(|line| line == "etcd_debugging_mvcc_watcher_total 1")
                    .then_some(())
            },
        )
        .await;
        ok(&server, &["put", "w/1", "seen"], None);
        let revision = status[0]["Status"]["header"]["revision"]
            .as_i64()
            .expect("revision");
        let compacted = ok(&server, &["compaction", &revision.to_string()], None);
        assert!(
            compacted.contains(&format!("compacted revision {revision}")),
            "{compacted}"
        );
        let old = etcdctl(
            &server,
            &["get", "app/a", &format!("--rev={}", revision - 1)],
            None,
        );
        assert!(!old.status.success());
        assert!(
            String::from_utf8_lossy(&old.stderr).contains("required revision has been compacted"),
            "{old:?}"
        );
        let mut printed = Vec::new();
        while printed.len() < 3 {
            let line = lines
                .recv_timeout(Duration::from_secs(10))
                .expect("etcdctl watch prints the event");
            printed.push(line);
        }
        assert_eq!(printed, ["PUT", "w/1", "seen"]);
        let _ = watch.kill();
        let _ = watch.wait();
    })
    .await;
}

/// The lines `output` prints, as they come.
fn watch_lines(output: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(output)).map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// Writes transactions until the registry stops answering, each putting `a/<n>` and `b/<n>`
/// (values of `padding` bytes past the number), and sends the revision of each one acknowledged.
async fn write_pairs(
    writer: u32,
    mut client: Client,
    padding: usize,
    acknowledged: tokio::sync::mpsc::UnboundedSender<(String, i64)>,
) {
    let padding = ".".repeat(padding);
    for n in 0.. {
        let id = format!("{writer}-{n:06}");
        let value = format!("{n}{padding}");
        let txn = Txn::new().and_then([
            TxnOp::put(format!("a/{id}"), value.clone(), None),
            TxnOp::put(format!("b/{id}"), value, Some(PutOptions::new())),
        ]);
        match client.txn(txn).await {
            Ok(response) => {
                let revision = response.header().map_or(0, |h| h.revision());
                if acknowledged.send((id, revision)).is_err() {
                    return;
                }
            }
            // The registry was killed: what was not answered may or may not be in.
            Err(_) => return,
        }
    }
}

#[tokio::test]
async fn a_sigkill_during_acknowledged_writes_loses_none_and_half_applies_nothing() {
    sigkill_during_acknowledged_writes(0, 300).await;
}

/// With values of 64 KiB, the write-ahead log fills (`CHECKPOINT_BYTES`, 16 MiB) every 128
/// transactions and starts over once the database has synced it: a kill anywhere in that cycle
/// loses nothing either.
#[tokio::test]
async fn a_sigkill_across_write_ahead_log_checkpoints_loses_nothing() {
    sigkill_during_acknowledged_writes(64 * 1024, 700).await;
}

/// Four writers of two-key transactions (values `padding` bytes long), the registry SIGKILLed
/// once `revisions` revisions were seen on a watch; after a restart every acknowledged write is
/// there, none half, revisions go on, and a resumed watch misses nothing.
async fn sigkill_during_acknowledged_writes(padding: usize, revisions: usize) {
    within(LIMIT, "the crash test hangs", async {
        let mut server = embedded().await;
        let client = Client::connect([server.endpoint()], None)
            .await
            .expect("connect");
        let (acknowledged, mut acks) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher = client.clone();
        let mut watch = watcher
            .watch("", Some(WatchOptions::new().with_all_keys()))
            .await
            .expect("watch");
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                tokio::spawn(write_pairs(
                    writer,
                    client.clone(),
                    padding,
                    acknowledged.clone(),
                ))
            })
            .collect();
        drop(acknowledged);
        // Events seen before the crash, by revision.
        let mut seen: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
        while seen.len() < revisions {
            let response = watch.message().await.expect("watch").expect("a response");
            for event in response.events() {
                let kv = event.kv().expect("kv");
                seen.entry(kv.mod_revision())
                    .or_default()
                    .insert(String::from_utf8_lossy(kv.key()).into_owned());
            }
        }
        server.kill();
        for writer in writers {
            writer.await.expect("writer");
        }
        let mut written = Vec::new();
        while let Ok(ack) = acks.try_recv() {
            written.push(ack);
        }
        assert!(
            written.len() >= 200,
            "acknowledged before the kill: {}",
            written.len()
        );
        let last_acknowledged = written.iter().map(|(_, rev)| *rev).max().expect("acks");

        server.restart().await.expect("restart");
        let mut client = Client::connect([server.endpoint()], None)
            .await
            .expect("reconnect");
        let all = client
            .get(
                "",
                Some(
                    etcd_client::GetOptions::new()
                        .with_all_keys()
                        .with_keys_only(),
                ),
            )
            .await
            .expect("read back");
        let keys: BTreeMap<String, i64> = all
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.mod_revision(),
                )
            })
            .collect();
        for (n, revision) in &written {
            for side in ["a", "b"] {
                assert_eq!(
                    keys.get(&format!("{side}/{n}")),
                    Some(revision),
                    "acknowledged write {side}/{n} at {revision}"
                );
            }
        }
        let halves: Vec<&String> = keys
            .keys()
            .filter(|key| *key != "after")
            .filter(|key| {
                let other = match key.strip_prefix("a/") {
                    Some(n) => format!("b/{n}"),
                    None => format!("a/{}", key.trim_start_matches("b/")),
                };
                !keys.contains_key(&other)
            })
            .collect();
        assert!(halves.is_empty(), "half-applied transactions: {halves:?}");
        let after = client.put("after", "restart", None).await.expect("put");
        let now = after.header().map_or(0, |h| h.revision());
        assert!(
            now > last_acknowledged,
            "revisions continue: {now} after {last_acknowledged}"
        );

        // A watch resumed after the last revision seen misses nothing.
        let last_seen = *seen.keys().last().expect("events seen");
        let mut resumed = client
            .watch(
                "",
                Some(
                    WatchOptions::new()
                        .with_all_keys()
                        .with_start_revision(last_seen + 1),
                ),
            )
            .await
            .expect("resume the watch");
        while !seen.contains_key(&now) {
            let response = resumed.message().await.expect("watch").expect("a response");
            for event in response.events() {
                assert_eq!(event.event_type(), EventType::Put);
                let kv = event.kv().expect("kv");
                seen.entry(kv.mod_revision())
                    .or_default()
                    .insert(String::from_utf8_lossy(kv.key()).into_owned());
            }
        }
        let first = *seen.keys().next().expect("a first revision");
        let revisions: Vec<i64> = seen.keys().copied().collect();
        let expected: Vec<i64> = (first..=now).collect();
        assert_eq!(
            revisions, expected,
            "every revision from the first seen on, once"
        );
        for (n, revision) in &written {
            if *revision >= first {
                let keys = &seen[revision];
                assert!(
                    keys.contains(&format!("a/{n}")) && keys.contains(&format!("b/{n}")),
                    "both halves of txn {n} at {revision}: {keys:?}"
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn automatic_compaction_keeps_the_history_asked_for() {
    within(LIMIT, "compaction hangs", async {
        let dir = tempfile::tempdir().expect("dir");
        let shutdown = tokio_util::sync::CancellationToken::new();
        let options = ServeOptions {
            history: 5,
            compaction_interval: Duration::from_millis(50),
            ..ServeOptions::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().expect("addr"))
        };
        let registry = EmbeddedRegistry::start(options, &shutdown).await.expect("serve");
        let mut client = Client::connect([registry.endpoint()], None).await.expect("connect");
        for n in 0..20 {
            client.put("k", n.to_string(), None).await.expect("put");
        }
        // Revision 21 now: history from 16 on is kept, before it compacted.
        eventually(Duration::from_secs(10), "history before 16 is compacted", || {
            let mut client = client.clone();
            async move {
                let old = client
                    .get("k", Some(etcd_client::GetOptions::new().with_revision(15)))
                    .await;
                matches!(old, Err(etcd_client::Error::GRpcStatus(status)) if status.message().contains("compacted")).then_some(())
            }
        })
        .await;
        let kept = client
            .get("k", Some(etcd_client::GetOptions::new().with_revision(16)))
            .await
            .expect("a read within the history kept");
        assert_eq!(kept.kvs()[0].value(), b"14");
        registry.stop().await.expect("stop");
    })
    .await;
}

#[tokio::test]
async fn it_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().expect("dir");
    let output = Command::new(visor_binary())
        .args(["registry", "serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run visor registry serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("refusing to serve the embedded registry on 0.0.0.0:0")
            && stderr.contains("loopback only"),
        "{stderr}"
    );
    assert!(
        std::fs::read_dir(dir.path())
            .expect("list")
            .next()
            .is_none(),
        "nothing written before refusing"
    );
}

#[tokio::test]
async fn a_registry_killed_before_its_first_write_starts_again() {
    within(LIMIT, "restart hangs", async {
        let mut server = embedded().await;
        server.kill();
        server
            .restart()
            .await
            .expect("restart with nothing written");
        let mut client = Client::connect([server.endpoint()], None)
            .await
            .expect("connect");
        let put = client.put("first", "write", None).await.expect("put");
        assert_eq!(put.header().map(|h| h.revision()), Some(2));
    })
    .await;
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_refused_and_it_keeps_serving() {
    within(LIMIT, "bad input hangs", async {
        let server = embedded().await;
        let port = server.metrics_port();
        // Bytes that are not HTTP/2 (nor HTTP/1) on the gRPC port.
        for garbage in [
            &b"\x00\x01\x02garbage that is not a gRPC request\r\n\r\n"[..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            let _ = stream.write_all(garbage);
        }
        let mut client = Client::connect([server.endpoint()], None).await.expect("connect");
        // Over gRPC's own limit (etcd's request limit plus its overhead):
        // etcd answers ResourceExhausted, this registry's gRPC OutOfRange.
        let huge = "x".repeat(3 * 1024 * 1024);
        let refused = client.put("huge", huge, None).await;
        assert!(
            matches!(&refused, Err(etcd_client::Error::GRpcStatus(status)) if status.message().contains("too large")),
            "{refused:?}"
        );
        let put = client.put("still", "serving", None).await.expect("a put after bad input");
        assert!(put.header().is_some_and(|h| h.revision() > 1));
    })
    .await;
}
