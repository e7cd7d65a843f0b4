//! The `visor watch` command end to end: `watch [--from] [--count]` run as the
//! built binary against a real etcd, replaying history in JSON and as lines,
//! streaming only new events without `--from`, and its error exits.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use visor::model::TicketOp;
use visor::registry::HostRegistration;

use visor_testkit::cli::{Cli, INHERITED_VARS, LIMIT};
use visor_testkit::fixtures::{
    app, host_spec, instance_spec, portless_proc_type, raw_revision, register_app, register_host,
    revision, ticket_spec,
};
use visor_testkit::{TestRegistry, within};

/// History for `watch`: an unrelated earlier write, then one event of every
/// family, then a later write. Returns the expected events as JSON (the first
/// one's revision is where to watch from) and the host registration to keep.
async fn seed_events(t: &TestRegistry) -> (Vec<Value>, HostRegistration) {
    register_app(t, "early").await;

    let web = t
        .visor
        .register_app("web", app("https://git.example/web"))
        .await
        .expect("web");
    let env = t.visor.set_env("web", "PORT", "80").await.expect("env");
    let proc = t
        .visor
        .register_proc("web", "http", portless_proc_type("bin/http"))
        .await
        .expect("proc");
    let rev = t
        .visor
        .register_rev("web", "v1", revision("v1"))
        .await
        .expect("rev");
    let scale = t
        .visor
        .set_scale("web", "v1", "http", 2)
        .await
        .expect("scale");
    let unset = t.visor.unset_env("web", "PORT").await.expect("unset");
    let instance = t
        .visor
        .create_instance(instance_spec("web", "v1", "http", Some("h1")))
        .await
        .expect("instance");
    let id = instance.name().to_owned();
    let host = register_host(t, "h1", host_spec("10.0.0.1:7000", 8, &["base"], &[])).await;
    let ticket = t
        .visor
        .create_ticket("h1", ticket_spec(TicketOp::Start, &id, "web", "v1", "http"))
        .await
        .expect("ticket");
    let tid = ticket.name().to_owned();
    let claimed = t
        .visor
        .claim_instance(&id, "h1")
        .await
        .expect("claim instance");
    let taken = t
        .visor
        .claim_ticket("h1", &tid, "h1")
        .await
        .expect("claim ticket");
    let removed = t
        .visor
        .unregister_rev("web", "v1")
        .await
        .expect("unregister rev");

    let events = vec![
        json!({"revision": web.mod_revision, "index": 0, "type": "app-registered", "app": "web"}),
        json!({"revision": env.mod_revision, "index": 0, "type": "env-set",
               "app": "web", "key": "PORT"}),
        json!({"revision": proc.mod_revision, "index": 0, "type": "proc-registered",
               "app": "web", "proc": "http"}),
        json!({"revision": rev.mod_revision, "index": 0, "type": "rev-registered",
               "app": "web", "rev": "v1"}),
        json!({"revision": scale.mod_revision, "index": 0, "type": "scale-changed",
               "app": "web", "rev": "v1", "proc": "http", "replicas": 2}),
        json!({"revision": unset, "index": 0, "type": "env-unset", "app": "web", "key": "PORT"}),
        json!({"revision": instance.mod_revision, "index": 0, "type": "instance-registered",
               "id": id, "app": "web", "rev": "v1", "proc": "http", "host": "h1"}),
        json!({"revision": host.host().mod_revision, "index": 0, "type": "host-up", "host": "h1"}),
        json!({"revision": ticket.mod_revision, "index": 0, "type": "ticket-created",
               "host": "h1", "ticket": tid, "op": "start", "instance": id}),
        json!({"revision": claimed.mod_revision, "index": 0, "type": "instance-claimed",
               "id": id, "host": "h1"}),
        json!({"revision": taken.mod_revision, "index": 0, "type": "ticket-claimed",
               "host": "h1", "ticket": tid, "by": "h1"}),
        // One transaction removes the revision and its scale factor.
        json!({"revision": removed, "index": 0, "type": "rev-unregistered",
               "app": "web", "rev": "v1"}),
        json!({"revision": removed, "index": 1, "type": "scale-changed",
               "app": "web", "rev": "v1", "proc": "http", "replicas": null}),
    ];
    // History after the expected events: --count must stop before it.
    register_app(t, "late").await;
    (events, host)
}

#[tokio::test]
async fn watch_replays_events_from_a_revision_in_json() {
    let what = "etcd start or visor watch (waiting for more events than exist) hangs";
    within(LIMIT, what, async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let (expected, _host) = seed_events(&t).await;

        let from = &expected[0]["revision"];
        let run = cli
            .json(&format!("watch --from {from} --count {}", expected.len()))
            .await;
        let events = run.json_lines();
        for event in &events {
            let object = event.as_object().expect("an object per line");
            for field in ["revision", "index", "type"] {
                assert!(
                    object.contains_key(field),
                    "every event has {field:?}: {event}"
                );
            }
        }
        assert_eq!(events, expected, "{}", run.context());

        // Starting mid-history skips what came before.
        let from = &expected[5]["revision"];
        let tail = cli
            .json(&format!("watch --from {from} --count 2"))
            .await
            .json_lines();
        assert_eq!(tail, expected[5..7]);
    })
    .await;
}

#[tokio::test]
async fn watch_replays_events_from_a_revision_as_lines() {
    let what = "etcd start or visor watch (waiting for more events than exist) hangs";
    within(LIMIT, what, async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let (expected, _host) = seed_events(&t).await;
        let rev = |i: usize| expected[i]["revision"].as_i64().expect("revision");
        let id = expected[6]["id"].as_str().expect("id");
        let tid = expected[8]["ticket"].as_str().expect("ticket");

        let run = cli
            .run(&format!(
                "watch --from {} --count {}",
                rev(0),
                expected.len()
            ))
            .await;
        let lines: Vec<&str> = run.ok().lines().collect();
        let want = [
            format!("{}  app-registered app=web", rev(0)),
            format!("{}  env-set app=web key=PORT", rev(1)),
            format!("{}  proc-registered app=web proc=http", rev(2)),
            format!("{}  rev-registered app=web rev=v1", rev(3)),
            format!(
                "{}  scale-changed app=web proc=http replicas=2 rev=v1",
                rev(4)
            ),
            format!("{}  env-unset app=web key=PORT", rev(5)),
            format!(
                "{}  instance-registered app=web host=h1 id={id} proc=http rev=v1",
                rev(6)
            ),
            format!("{}  host-up host=h1", rev(7)),
            format!(
                "{}  ticket-created host=h1 instance={id} op=start ticket={tid}",
                rev(8)
            ),
            format!("{}  instance-claimed host=h1 id={id}", rev(9)),
            format!("{}  ticket-claimed by=h1 host=h1 ticket={tid}", rev(10)),
            format!("{}  rev-unregistered app=web rev=v1", rev(11)),
            format!("{}  scale-changed app=web proc=http rev=v1", rev(12)),
        ];
        assert_eq!(
            lines, want,
            "one line per event, no header, null fields left out"
        );
    })
    .await;
}

#[tokio::test]
async fn watch_without_from_streams_new_events_only() {
    within(LIMIT, "etcd start, or visor watch never seeing a new event", async {
        let t = TestRegistry::start().await;
        register_app(&t, "web").await;
        let before = raw_revision(&t).await;

        let endpoint = t.server.endpoint();
        let args = ["--endpoints", &endpoint, "-o", "json", "watch", "--count", "1"];
        let mut command = tokio::process::Command::new(assert_cmd::cargo::cargo_bin("visor"));
        for var in INHERITED_VARS {
            command.env_remove(var);
        }
        let mut child = command
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn visor watch");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();

        // The CLI cannot tell when its watch is in place: write until it reports a write.
        let mut written = Vec::new();
        let read = loop {
            let key = format!("K{}", written.len());
            let set = t.visor.set_env("web", &key, "1").await.expect("set env");
            written.push((key, set.mod_revision));
            // `next_line` is cancel safe: a read that times out loses nothing.
            let next = tokio::time::timeout(Duration::from_millis(200), lines.next_line());
            if let Ok(read) = next.await {
                break read.expect("read visor's stdout");
            }
        };
        let Some(line) = read else {
            let output = child.wait_with_output().await.expect("wait for visor watch");
            panic!("visor watch exited before printing an event: {output:?}");
        };
        let event: Value = serde_json::from_str(&line).expect("a JSON event");
        let revision = event["revision"].as_i64().expect("revision");
        assert!(revision > before, "history before the watch is not replayed: {event}");
        let (key, _) = written
            .iter()
            .find(|(_, r)| *r == revision)
            .unwrap_or_else(|| panic!("{event} is none of the writes {written:?}"));
        assert_eq!(
            event,
            json!({"revision": revision, "index": 0, "type": "env-set", "app": "web", "key": key})
        );

        let status = child.wait().await.expect("wait for visor watch");
        assert!(status.success(), "watch --count 1 exits 0 after one event: {status}");
        let rest = lines.next_line().await.expect("read stdout");
        assert_eq!(rest, None, "exactly one line");
    })
    .await;
}

#[tokio::test]
async fn watch_errors_exit_with_their_codes() {
    within(
        LIMIT,
        "etcd start, compaction or visor watch hangs",
        async {
            let t = TestRegistry::start().await;
            let cli = Cli::new(&t);
            for app in ["a", "b", "c"] {
                register_app(&t, app).await;
            }
            let now = raw_revision(&t).await;
            t.raw().compact(now, None).await.expect("compact");

            let message = cli.json("watch --from 2 --count 1").await.error(1);
            assert!(
                message.contains("compacted") && message.contains(&now.to_string()),
                "the error names the compaction: {message}"
            );
            let message = cli.run("watch --from 2 --count 1").await.error(1);
            assert!(message.contains("compacted"), "{message}");

            cli.run("watch --from abc").await.usage_error("abc");
            cli.run("watch --count -1").await.usage_error("-1");
            cli.run("watch --count many").await.usage_error("many");
        },
    )
    .await;
}
