//! The `visor proc` and `visor rev` commands end to end:
//! `proc register|unregister|list` and `rev register|unregister|list` run as
//! the built binary against a real etcd, in table and JSON output, including
//! their error exits (which must write nothing) and the removal of scale
//! factors along with an unregistered proc type or revision.

use serde_json::json;
use visor::Error;

use visor_testkit::cli::{
    Cli, LIMIT, PROC_FIELDS, REMOVED_FIELDS, REMOVED_HEADER, REV_FIELDS, assert_fields, column,
    rows, second, take_time, visor_with_env,
};
use visor_testkit::fixtures::{portless_proc_type, raw_revision, register_app, revision};
use visor_testkit::{TestRegistry, within};

// ---------------------------------------------------------------------------
// proc
// ---------------------------------------------------------------------------

#[tokio::test]
async fn proc_commands_in_json() {
    within(LIMIT, "etcd start or a visor proc command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;

        let mut http = cli
            .json(
                "proc register web http --command 'bin/http --port 8080' --port 8080 \
                 --memory-mb 256 --cpu-shares 512 --host-label zone=a --host-label disk=ssd",
            )
            .await
            .json();
        assert_fields(&http, PROC_FIELDS);
        let stored = t
            .visor
            .proc("web", "http")
            .await
            .expect("the CLI registered http");
        assert_eq!(take_time(&mut http, "created_at"), stored.value.created_at);
        let http_json = json!({
            "app": "web", "name": "http", "command": "bin/http --port 8080", "port": 8080,
            "limits": {"memory_mb": 256, "cpu_shares": 512},
            "host_labels": {"disk": "ssd", "zone": "a"},
            "kill_timeout_secs": 10, "restart": "always", "readiness": null, "service": null,
        });
        assert_eq!(http, http_json);
        assert_eq!(stored.value.command, "bin/http --port 8080");
        assert_eq!(stored.value.port, Some(8080));
        assert_eq!(stored.value.limits.memory_mb, Some(256));
        assert_eq!(stored.value.limits.cpu_shares, Some(512));
        let labels: Vec<(&str, &str)> = stored
            .value
            .host_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, [("disk", "ssd"), ("zone", "a")]);

        let mut worker = cli
            .json("proc register web worker --command bin/worker")
            .await
            .json();
        take_time(&mut worker, "created_at");
        let worker_json = json!({
            "app": "web", "name": "worker", "command": "bin/worker", "port": null,
            "limits": {"memory_mb": null, "cpu_shares": null}, "host_labels": {},
            "kill_timeout_secs": 10, "restart": "always", "readiness": null, "service": null,
        });
        assert_eq!(worker, worker_json, "absent options are null or empty");

        register_app(&t, "jobs").await;
        let mut run = cli
            .json(
                "proc register jobs run --command './bin/run \"a b\"' --kill-timeout 1m \
                 --restart on-failure --ready-http /healthz --ready-timeout 5s \
                 --service websvc --service-scheme http --service-scheme h2c",
            )
            .await
            .json();
        take_time(&mut run, "created_at");
        assert_eq!(run["kill_timeout_secs"], 60);
        assert_eq!(run["restart"], "on-failure");
        assert_eq!(
            run["readiness"],
            json!({"check": "http", "path": "/healthz", "timeout_secs": 5})
        );
        assert_eq!(
            run["service"],
            json!({"name": "websvc", "schemes": ["http", "h2c"]})
        );
        let tcp = cli
            .json("proc register jobs tcp --command c --ready-tcp")
            .await
            .json();
        assert_eq!(
            tcp["readiness"],
            json!({"check": "tcp", "timeout_secs": 30})
        );

        let mut list = cli.json("proc list web").await.json();
        for row in list.as_array_mut().expect("array") {
            assert_fields(row, PROC_FIELDS);
            take_time(row, "created_at");
        }
        assert_eq!(list, json!([http_json, worker_json]), "procs in name order");

        t.visor
            .register_rev("web", "v1", revision("v1"))
            .await
            .expect("rev");
        t.visor
            .set_scale("web", "v1", "http", 2)
            .await
            .expect("scale");
        t.visor
            .set_scale("web", "v1", "worker", 1)
            .await
            .expect("scale");
        let removed = cli.json("proc unregister web http").await.json();
        assert_fields(&removed, REMOVED_FIELDS);
        let revision = raw_revision(&t).await;
        assert_eq!(
            removed,
            json!({"removed": "proc type web/http", "revision": revision})
        );
        assert!(matches!(
            t.visor.proc("web", "http").await,
            Err(Error::NotFound(_))
        ));
        assert!(
            matches!(
                t.visor.scale("web", "v1", "http").await,
                Err(Error::NotFound(_))
            ),
            "unregistering a proc type removes its scale factors"
        );
        let kept = t.visor.scale("web", "v1", "worker").await.expect("kept");
        assert_eq!(kept.value.replicas, 1);
        assert_eq!(
            column(&cli.json("proc list web").await.json(), "name"),
            ["worker"]
        );
    })
    .await;
}

#[tokio::test]
async fn proc_commands_as_tables() {
    within(LIMIT, "etcd start or a visor proc command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        let header: &[&str] = &["APP", "NAME", "COMMAND", "PORT", "HOST LABELS"];

        assert_eq!(cli.run("proc list web").await.table(), rows(&[header]));
        let http = cli
            .run(
                "proc register web http --command 'bin/http -v' --port 80 \
                 --host-label zone=a --host-label disk=ssd",
            )
            .await
            .table();
        let http_row: &[&str] = &["web", "http", "bin/http -v", "80", "disk=ssd,zone=a"];
        assert_eq!(http, rows(&[header, http_row]));
        let worker = cli
            .run("proc register web worker --command bin/worker")
            .await
            .table();
        let worker_row: &[&str] = &["web", "worker", "bin/worker", "-", "-"];
        assert_eq!(
            worker,
            rows(&[header, worker_row]),
            "absent port and labels show as -"
        );

        let list = cli.run("proc list web").await.table();
        assert_eq!(list, rows(&[header, http_row, worker_row]));

        let removed = cli.run("proc unregister web worker").await.table();
        let revision = raw_revision(&t).await.to_string();
        assert_eq!(
            removed,
            rows(&[REMOVED_HEADER, &["proc type web/worker", &revision]])
        );
        assert!(matches!(
            t.visor.proc("web", "worker").await,
            Err(Error::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn proc_errors_exit_with_their_codes_and_write_nothing() {
    within(
        LIMIT,
        "etcd start or a failing visor proc command hangs",
        async {
            let t = TestRegistry::start().await;
            let cli = Cli::new(&t);
            register_app(&t, "web").await;
            let http = t
                .visor
                .register_proc("web", "http", portless_proc_type("bin/http"))
                .await
                .expect("http");
            let before = raw_revision(&t).await;

            let register =
                |app: &str, proc: &str| format!("proc register {app} {proc} --command other");
            assert_eq!(
                cli.run(&register("nope", "http")).await.error(3),
                "app nope not found"
            );
            assert_eq!(
                cli.run(&register("web", "http")).await.error(4),
                "proc type web/http already exists"
            );
            let message = cli.run(&register("web", "Bad_Proc")).await.error(2);
            assert!(
                message.contains("invalid proc name \"Bad_Proc\""),
                "{message}"
            );
            let message = cli.run(&register("Bad", "http")).await.error(2);
            assert!(message.contains("invalid app name \"Bad\""), "{message}");
            assert_eq!(
                cli.json("proc unregister web nope").await.error(3),
                "proc type web/nope not found"
            );
            assert_eq!(
                cli.run("proc unregister nope http").await.error(3),
                "proc type nope/http not found"
            );

            let base = "proc register web x --command c";
            cli.run(&format!("{base} --port 70000"))
                .await
                .usage_error("70000");
            cli.run(&format!("{base} --host-label nolabel"))
                .await
                .usage_error("nolabel");
            cli.run(&format!("{base} --memory-mb lots"))
                .await
                .usage_error("lots");
            cli.run(&format!("{base} --cpu-shares -1"))
                .await
                .usage_error("-1");
            cli.run("proc register web x")
                .await
                .usage_error("--command");
            let endpoint = t.server.endpoint();
            let unbalanced = [
                "--endpoints",
                &endpoint,
                "proc",
                "register",
                "web",
                "x",
                "--command",
                "sh -c 'unclosed",
            ];
            visor_with_env(unbalanced.iter().map(|a| (*a).to_owned()).collect(), &[])
                .await
                .usage_error("unbalanced quotes");
            cli.run(&format!("{base} --kill-timeout 1500ms"))
                .await
                .usage_error("whole number of seconds");
            cli.run(&format!("{base} --restart sometimes"))
                .await
                .usage_error("expected always or on-failure");
            cli.run(&format!("{base} --ready-http healthz"))
                .await
                .usage_error("must start with /");
            cli.run(&format!("{base} --ready-timeout 5s"))
                .await
                .usage_error("--ready-timeout needs --ready-tcp or --ready-http");
            cli.run(&format!("{base} --service-scheme http"))
                .await
                .usage_error("--service");
            cli.run(&format!("{base} --service web --service-scheme 1x"))
                .await
                .usage_error("is not a scheme");

            assert_eq!(raw_revision(&t).await, before, "a failed command wrote");
            let stored = t
                .visor
                .proc("web", "http")
                .await
                .expect("http is still there");
            assert_eq!(stored.value.command, "bin/http");
            assert_eq!(stored.mod_revision, http.mod_revision);
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// rev
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rev_commands_in_json() {
    within(LIMIT, "etcd start or a visor rev command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        t.visor
            .register_proc("web", "http", portless_proc_type("bin/http"))
            .await
            .expect("http");

        let mut v1 = cli
            .json("rev register web v1 --archive-url s3://b/web/v1.tgz")
            .await
            .json();
        assert_fields(&v1, REV_FIELDS);
        let stored = t
            .visor
            .rev("web", "v1")
            .await
            .expect("the CLI registered v1");
        assert_eq!(take_time(&mut v1, "created_at"), stored.value.created_at);
        assert_eq!(
            v1,
            json!({"app": "web", "name": "v1", "archive_url": "s3://b/web/v1.tgz"})
        );
        assert_eq!(stored.value.archive_url, "s3://b/web/v1.tgz");

        cli.json("rev register web v2 --archive-url s3://b/web/v2.tgz")
            .await
            .json();
        let mut list = cli.json("rev list web").await.json();
        for row in list.as_array_mut().expect("array") {
            assert_fields(row, REV_FIELDS);
            take_time(row, "created_at");
        }
        assert_eq!(
            list,
            json!([
                {"app": "web", "name": "v1", "archive_url": "s3://b/web/v1.tgz"},
                {"app": "web", "name": "v2", "archive_url": "s3://b/web/v2.tgz"},
            ])
        );

        t.visor
            .set_scale("web", "v1", "http", 2)
            .await
            .expect("scale");
        t.visor
            .set_scale("web", "v2", "http", 1)
            .await
            .expect("scale");
        let removed = cli.json("rev unregister web v1").await.json();
        assert_fields(&removed, REMOVED_FIELDS);
        let revision = raw_revision(&t).await;
        assert_eq!(
            removed,
            json!({"removed": "revision web/v1", "revision": revision})
        );
        assert!(matches!(
            t.visor.rev("web", "v1").await,
            Err(Error::NotFound(_))
        ));
        assert!(
            matches!(
                t.visor.scale("web", "v1", "http").await,
                Err(Error::NotFound(_))
            ),
            "unregistering a revision removes its scale factors"
        );
        let kept = t.visor.scale("web", "v2", "http").await.expect("kept");
        assert_eq!(kept.value.replicas, 1);
        assert_eq!(
            column(&cli.json("rev list web").await.json(), "name"),
            ["v2"]
        );
    })
    .await;
}

#[tokio::test]
async fn rev_commands_as_tables() {
    within(LIMIT, "etcd start or a visor rev command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        let header = ["APP", "NAME", "ARCHIVE URL", "CREATED AT"];

        assert_eq!(cli.run("rev list web").await.table(), [header]);
        let v1 = cli
            .run("rev register web v1 --archive-url s3://b/v1.tgz")
            .await
            .table();
        assert_eq!(v1.len(), 2, "{v1:?}");
        assert_eq!(v1[0], header);
        assert_eq!(v1[1][..3], ["web", "v1", "s3://b/v1.tgz"]);
        let stored = t.visor.rev("web", "v1").await.expect("v1");
        assert_eq!(v1[1][3], second(&stored.value.created_at));
        t.visor
            .register_rev("web", "v2", revision("s3://b/v2.tgz"))
            .await
            .expect("v2");

        let list = cli.run("rev list web").await.table();
        assert_eq!(list.len(), 3, "{list:?}");
        assert_eq!(list[0], header);
        assert_eq!(list[1][..3], ["web", "v1", "s3://b/v1.tgz"]);
        assert_eq!(list[2][..3], ["web", "v2", "s3://b/v2.tgz"]);

        let removed = cli.run("rev unregister web v2").await.table();
        let revision = raw_revision(&t).await.to_string();
        assert_eq!(
            removed,
            rows(&[REMOVED_HEADER, &["revision web/v2", &revision]])
        );
        assert!(matches!(
            t.visor.rev("web", "v2").await,
            Err(Error::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn rev_errors_exit_with_their_codes_and_write_nothing() {
    within(
        LIMIT,
        "etcd start or a failing visor rev command hangs",
        async {
            let t = TestRegistry::start().await;
            let cli = Cli::new(&t);
            register_app(&t, "web").await;
            let v1 = t
                .visor
                .register_rev("web", "v1", revision("s3://b/v1.tgz"))
                .await
                .expect("v1");
            let before = raw_revision(&t).await;

            let register =
                |app: &str, rev: &str| format!("rev register {app} {rev} --archive-url s3://x");
            assert_eq!(
                cli.run(&register("nope", "v1")).await.error(3),
                "app nope not found"
            );
            assert_eq!(
                cli.run(&register("web", "v1")).await.error(4),
                "revision web/v1 already exists"
            );
            let message = cli.run(&register("web", "V1")).await.error(2);
            assert!(message.contains("invalid rev name \"V1\""), "{message}");
            assert_eq!(
                cli.run("rev unregister web v9").await.error(3),
                "revision web/v9 not found"
            );
            assert_eq!(
                cli.json("rev unregister web v9").await.error(3),
                "revision web/v9 not found"
            );
            cli.run("rev register web v2")
                .await
                .usage_error("--archive-url");
            cli.run("rev list").await.usage_error("<APP>");

            assert_eq!(raw_revision(&t).await, before, "a failed command wrote");
            let stored = t.visor.rev("web", "v1").await.expect("v1 is still there");
            assert_eq!(stored.value.archive_url, "s3://b/v1.tgz");
            assert_eq!(stored.mod_revision, v1.mod_revision);
        },
    )
    .await;
}
