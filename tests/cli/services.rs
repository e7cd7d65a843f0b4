//! The `visor service`, `visor endpoints` and `visor notifications` commands
//! end to end, run as the built binary against a real etcd, in table and
//! JSON output: service definitions registered, listed, shown with their
//! endpoints counted and unregistered (endpoints stay); a service's
//! endpoints, live and departed, with the password never printed; the
//! controller's notifications listed in sequence order, after `--since`, and
//! followed as they are posted until SIGTERM. Every refusal exits with its
//! code and writes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use visor::discovery::{self, RegisterRequest, Registration};
use visor::model::{Name, NotificationKind};
use visor::registry::{Posting, PostingSubject};

use visor_testkit::cli::{
    self, CLOSED_PORT, Cli, Follower, LIMIT, REMOVED_FIELDS, REMOVED_HEADER, assert_fields, column,
    rows, take_time, visor,
};
use visor_testkit::fixtures::raw_revision;
use visor_testkit::{TestRegistry, within};

const SERVICE_FIELDS: &[&str] = &[
    "name",
    "critical",
    "public",
    "min_endpoints",
    "app",
    "proc",
    "created_at",
    "mod_revision",
];
const SERVICE_HEADER: &[&str] = &[
    "NAME",
    "CRITICAL",
    "PUBLIC",
    "MIN ENDPOINTS",
    "APP",
    "PROC",
    "CREATED AT",
];
const ENDPOINT_FIELDS: &[&str] = &[
    "service",
    "id",
    "state",
    "hostname",
    "ports",
    "private_hostname",
    "private_ports",
    "user",
    "password",
    "critical",
    "host",
    "instance",
    "registered_at",
    "departed_at",
];
const ENDPOINT_HEADER: &[&str] = &[
    "ID",
    "STATE",
    "HOSTNAME",
    "PORTS",
    "PRIVATE HOSTNAME",
    "PRIVATE PORTS",
    "CREDENTIALS",
    "HOST",
    "INSTANCE",
    "REGISTERED AT",
];
const NOTIFICATION_FIELDS: &[&str] = &[
    "seq",
    "kind",
    "service",
    "endpoint",
    "hostname",
    "app",
    "revision",
    "reason",
    "detected_at",
];
const NOTIFICATION_HEADER: &[&str] = &[
    "SEQ",
    "KIND",
    "SERVICE",
    "ENDPOINT",
    "HOSTNAME",
    "APP",
    "REVISION",
    "REASON",
    "DETECTED AT",
];

fn name(value: &str) -> Name {
    Name::parse("test", value).expect("test names are valid")
}

fn request(hostname: &str) -> RegisterRequest {
    RegisterRequest {
        hostname: hostname.to_owned(),
        ports: BTreeMap::from([("pg".to_owned(), "5432".to_owned())]),
        // Long enough that no lease expires while a test runs.
        ttl: Duration::from_secs(30),
        ..RegisterRequest::default()
    }
}

async fn register(t: &TestRegistry, service: &str, request: RegisterRequest) -> Registration {
    discovery::register(&t.visor, service, request)
        .await
        .expect("register an endpoint")
}

/// A `service-down` of `endpoint` in `service`, settling nothing (the
/// controller's postings also consume its records; these only number).
fn down(service: &str, endpoint: &str) -> Posting {
    Posting {
        kind: NotificationKind::ServiceDown,
        subject: PostingSubject::Service {
            service: name(service),
            endpoint: Some(endpoint.to_owned()),
            hostname: Some(format!("{endpoint}.example")),
            tracked: None,
            endpoint_key: None,
            status: None,
        },
        reason: "its registration expired or was deleted".to_owned(),
    }
}

fn degraded(service: &str) -> Posting {
    Posting {
        kind: NotificationKind::ServiceDegraded,
        subject: PostingSubject::Service {
            service: name(service),
            endpoint: None,
            hostname: None,
            tracked: None,
            endpoint_key: None,
            status: None,
        },
        reason: "0 live endpoints, fewer than its minimum of 1".to_owned(),
    }
}

async fn post(t: &TestRegistry, postings: &[Posting]) {
    t.visor
        .post_notifications(postings)
        .await
        .expect("post notifications");
}

#[tokio::test]
async fn service_register_list_show_and_unregister_in_json_and_tables() {
    within(LIMIT, "etcd start or visor service hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        assert_eq!(cli.json("service list").await.json(), json!([]));
        assert_eq!(
            cli.run("service list").await.table(),
            rows(&[SERVICE_HEADER])
        );

        let line = "service register db --critical --public --min-endpoints 2 --app web --proc sql";
        let mut registered = cli.json(line).await.json();
        assert_fields(&registered, SERVICE_FIELDS);
        let stored = t.visor.service("db").await.expect("defined");
        assert_eq!(
            take_time(&mut registered, "created_at"),
            stored.value.created_at
        );
        assert_eq!(
            registered,
            json!({"name": "db", "critical": true, "public": true, "min_endpoints": 2,
                   "app": "web", "proc": "sql", "mod_revision": stored.mod_revision})
        );
        assert_eq!(stored.value.min_endpoints, 2);
        assert_eq!(stored.value.app, Some(name("web")));

        let table = cli.run("service register cache").await.table();
        let cache = t.visor.service("cache").await.expect("defined");
        let cache_created = cli::second(&cache.value.created_at);
        let cache_row = ["cache", "false", "false", "1", "-", "-", &cache_created];
        assert_eq!(table, rows(&[SERVICE_HEADER, &cache_row]), "defaults");

        let list = cli.json("service list").await.json();
        assert_eq!(column(&list, "name"), ["cache", "db"], "name order");
        let db_created = cli::second(&stored.value.created_at);
        let db_row = ["db", "true", "true", "2", "web", "sql", &db_created];
        assert_eq!(
            cli.run("service list").await.table(),
            rows(&[SERVICE_HEADER, &cache_row, &db_row])
        );

        // Two endpoints, one stopped cleanly: one live, one tombstone.
        let live = register(&t, "db", request("db1")).await;
        register(&t, "db", request("db2"))
            .await
            .stop()
            .await
            .expect("stop cleanly");
        let mut show = cli.json("service show db").await.json();
        let mut fields = SERVICE_FIELDS.to_vec();
        fields.extend(["live_endpoints", "tombstones"]);
        assert_fields(&show, &fields);
        take_time(&mut show, "created_at");
        assert_eq!(
            show,
            json!({"name": "db", "critical": true, "public": true, "min_endpoints": 2,
                   "app": "web", "proc": "sql", "mod_revision": stored.mod_revision,
                   "live_endpoints": 1, "tombstones": 1}),
            "the definition is not replaced by the registrations"
        );
        let table = cli.run("service show db").await.table();
        assert_eq!(
            table,
            rows(&[
                &[
                    "NAME",
                    "CRITICAL",
                    "PUBLIC",
                    "MIN ENDPOINTS",
                    "APP",
                    "PROC",
                    "LIVE ENDPOINTS",
                    "TOMBSTONES",
                    "CREATED AT"
                ],
                &[
                    "db",
                    "true",
                    "true",
                    "2",
                    "web",
                    "sql",
                    "1",
                    "1",
                    &db_created
                ],
            ])
        );

        let removed = cli.json("service unregister db").await.json();
        assert_fields(&removed, REMOVED_FIELDS);
        assert_eq!(removed["removed"], "service db");
        assert_eq!(removed["revision"], raw_revision(&t).await);
        let endpoints = t.visor.service_endpoints("db").await.expect("endpoints");
        assert_eq!(endpoints.items.len(), 2, "endpoints stay");
        assert!(live.ready(), "the live one is still registered");
        assert_eq!(
            cli.run("service show db").await.error(3),
            "service db not found"
        );
        let table = cli.run("service unregister cache").await.table();
        assert_eq!(table[0], REMOVED_HEADER);
        assert_eq!(table[1][0], "service cache");
        assert_eq!(cli.json("service list").await.json(), json!([]));
    })
    .await;
}

#[tokio::test]
async fn service_refusals_exit_with_their_codes_and_write_nothing() {
    within(
        LIMIT,
        "etcd start or a failing visor service hangs",
        async {
            let t = TestRegistry::start().await;
            let cli = Cli::new(&t);
            cli.json("service register db").await.json();
            let before = raw_revision(&t).await;

            assert_eq!(
                cli.run("service register db --critical").await.error(4),
                "service db already exists"
            );
            assert_eq!(
                cli.json("service register db").await.error(4),
                "service db already exists"
            );
            for line in [
                "service unregister nope",
                "service show nope",
                "endpoints nope",
            ] {
                assert_eq!(
                    cli.run(line).await.error(3),
                    "service nope not found",
                    "{line}"
                );
                assert_eq!(
                    cli.json(line).await.error(3),
                    "service nope not found",
                    "{line}"
                );
            }
            let invalid = [
                (
                    "service register 'Bad Name'",
                    "invalid service name \"Bad Name\"",
                ),
                ("service register db2 --app Web", "invalid app name \"Web\""),
                (
                    "service register db2 --app web --proc s_q_l",
                    "invalid proc name \"s_q_l\"",
                ),
                (
                    "service unregister 'Bad Name'",
                    "invalid service name \"Bad Name\"",
                ),
                ("service show DB", "invalid service name \"DB\""),
                ("endpoints DB", "invalid service name \"DB\""),
            ];
            for (line, mention) in invalid {
                let message = cli.run(line).await.error(2);
                assert!(message.contains(mention), "{line}: {message}");
            }
            for bad in ["many", "0", "-1", "1.5", "4294967296"] {
                cli.run(&format!("service register db2 --min-endpoints {bad}"))
                    .await
                    .usage_error(bad);
            }
            cli.run("service register db2 --proc sql")
                .await
                .usage_error("--app");
            cli.run("notifications --since -1").await.usage_error("-1");
            cli.run("notifications --since x").await.usage_error("x");
            assert_eq!(raw_revision(&t).await, before, "a refusal wrote");

            let flags = format!("--endpoints {CLOSED_PORT} --connect-timeout 1s");
            for command in ["service list", "endpoints db", "notifications"] {
                let message = visor(&format!("{flags} {command}")).await.error(5);
                assert!(message.contains(CLOSED_PORT), "{command}: {message}");
            }
        },
    )
    .await;
}

#[tokio::test]
async fn endpoints_lists_live_and_departed_ones_and_never_prints_a_password() {
    within(LIMIT, "etcd start or visor endpoints hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let live = register(
            &t,
            "db",
            RegisterRequest {
                private_hostname: "db1.internal".to_owned(),
                private_ports: BTreeMap::from([("pg".to_owned(), "6432".to_owned())]),
                user: "admin".to_owned(),
                password: "s3cret-pw".to_owned(),
                host: Some("h1".to_owned()),
                instance: Some("i1".to_owned()),
                ..request("db1.example")
            },
        )
        .await;
        let stopping = register(&t, "db", request("db2.example")).await;
        let stopped_id = stopping.id().to_owned();
        stopping.stop().await.expect("stop cleanly");
        let stored = t.visor.service_endpoints("db").await.expect("endpoints");
        let registered_at = |id: &str| {
            let found = stored.items.iter().find(|e| e.name() == id);
            found.expect("stored").value.registered_at
        };

        let run = cli.json("endpoints db").await;
        assert!(!run.stdout.contains("s3cret-pw"), "{}", run.context());
        let mut listed = run.json();
        let mut ids = [live.id().to_owned(), stopped_id.clone()];
        ids.sort();
        assert_eq!(column(&listed, "id"), ids, "uuid order");
        let rows_json = listed.as_array_mut().expect("an array");
        let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
        for row in rows_json.iter_mut() {
            assert_fields(row, ENDPOINT_FIELDS);
            let id = row["id"].as_str().expect("id").to_owned();
            assert_eq!(take_time(row, "registered_at"), registered_at(&id));
            by_id.insert(id, row.clone());
        }
        assert_eq!(
            by_id[live.id()],
            json!({"service": "db", "id": live.id(), "state": "live",
                   "hostname": "db1.example", "ports": {"pg": "5432"},
                   "private_hostname": "db1.internal", "private_ports": {"pg": "6432"},
                   "user": "admin", "password": "***", "critical": false,
                   "host": "h1", "instance": "i1", "departed_at": null})
        );
        let mut departed = by_id[&stopped_id].clone();
        assert!(departed["departed_at"].is_string(), "{departed}");
        take_time(&mut departed, "departed_at");
        assert_eq!(
            departed,
            json!({"service": "db", "id": stopped_id, "state": "departed",
                   "hostname": "db2.example", "ports": {"pg": "5432"},
                   "private_hostname": "db2.example", "private_ports": {"pg": "5432"},
                   "user": null, "password": null, "critical": false,
                   "host": null, "instance": null})
        );

        let run = cli.run("endpoints db").await;
        assert!(!run.stdout.contains("s3cret-pw"), "{}", run.context());
        let table = run.table();
        assert_eq!(table[0], ENDPOINT_HEADER);
        let live_row = table.iter().find(|r| r[0] == live.id()).expect("live row");
        let live_at = cli::second(&registered_at(live.id()));
        assert_eq!(
            live_row,
            &[
                live.id(),
                "live",
                "db1.example",
                "pg=5432",
                "db1.internal",
                "pg=6432",
                "admin:***",
                "h1",
                "i1",
                &live_at
            ]
        );
        let gone_row = table.iter().find(|r| r[0] == stopped_id).expect("gone row");
        assert_eq!(
            gone_row[1..=6],
            [
                "departed",
                "db2.example",
                "pg=5432",
                "db2.example",
                "pg=5432",
                "-"
            ]
        );

        // A defined service without endpoints is an empty listing, not an error.
        cli.json("service register idle").await.json();
        assert_eq!(cli.json("endpoints idle").await.json(), json!([]));
        assert_eq!(
            cli.run("endpoints idle").await.table(),
            rows(&[ENDPOINT_HEADER])
        );
    })
    .await;
}

#[tokio::test]
async fn notifications_list_in_sequence_order_and_since_skips_the_older_ones() {
    within(LIMIT, "etcd start or visor notifications hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        assert_eq!(cli.json("notifications").await.json(), json!([]));
        assert_eq!(
            cli.run("notifications").await.table(),
            rows(&[NOTIFICATION_HEADER])
        );
        post(&t, &[down("db", "u1"), degraded("db")]).await;
        post(&t, &[down("cache", "u2")]).await;
        let stored = t.visor.notifications(0).await.expect("notifications");
        let detected: Vec<String> = stored
            .items
            .iter()
            .map(|n| cli::second(&n.value.detected_at))
            .collect();

        let mut listed = cli.json("notifications").await.json();
        for (row, stored) in listed
            .as_array_mut()
            .expect("array")
            .iter_mut()
            .zip(&stored.items)
        {
            assert_fields(row, NOTIFICATION_FIELDS);
            assert_eq!(take_time(row, "detected_at"), stored.value.detected_at);
        }
        assert_eq!(
            listed,
            json!([
                {"seq": 1, "kind": "service-down", "service": "db", "endpoint": "u1",
                 "hostname": "u1.example", "app": null, "revision": null,
                 "reason": "its registration expired or was deleted"},
                {"seq": 2, "kind": "service-degraded", "service": "db", "endpoint": null,
                 "hostname": null, "app": null, "revision": null,
                 "reason": "0 live endpoints, fewer than its minimum of 1"},
                {"seq": 3, "kind": "service-down", "service": "cache", "endpoint": "u2",
                 "hostname": "u2.example", "app": null, "revision": null,
                 "reason": "its registration expired or was deleted"},
            ])
        );
        let since: Vec<i64> = cli
            .json("notifications --since 1")
            .await
            .json()
            .as_array()
            .expect("array")
            .iter()
            .map(|n| n["seq"].as_i64().expect("seq"))
            .collect();
        assert_eq!(since, [2, 3]);
        assert_eq!(cli.json("notifications --since 3").await.json(), json!([]));

        let reason_down = "its registration expired or was deleted";
        let reason_degraded = "0 live endpoints, fewer than its minimum of 1";
        assert_eq!(
            cli.run("notifications --since 1").await.table(),
            rows(&[
                NOTIFICATION_HEADER,
                &[
                    "2",
                    "service-degraded",
                    "db",
                    "-",
                    "-",
                    "-",
                    "-",
                    reason_degraded,
                    &detected[1]
                ],
                &[
                    "3",
                    "service-down",
                    "cache",
                    "u2",
                    "u2.example",
                    "-",
                    "-",
                    reason_down,
                    &detected[2]
                ],
            ])
        );
    })
    .await;
}

/// The `seq` of the next notification `follower` prints as JSON.
async fn seq(follower: &mut Follower, what: &str) -> i64 {
    let line = follower.line(what).await;
    let value: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("{line:?} is not one JSON object ({e})"));
    assert_fields(&value, NOTIFICATION_FIELDS);
    value["seq"].as_i64().expect("seq")
}

#[tokio::test]
async fn notifications_follow_prints_new_ones_as_they_are_posted_until_sigterm() {
    within(
        LIMIT,
        "etcd start, or visor notifications --follow never printing",
        async {
            let t = TestRegistry::start().await;
            post(&t, &[down("db", "u1"), down("db", "u2")]).await;
            let mut follower = Follower::spawn(
                &t,
                &["-o", "json", "notifications", "--follow", "--since", "1"],
            );
            // Its listing comes first; what is posted after it was read, it watches for.
            assert_eq!(
                seq(&mut follower, "the retained notification after --since").await,
                2
            );
            post(&t, &[degraded("db")]).await;
            assert_eq!(
                seq(&mut follower, "a notification posted while following").await,
                3
            );
            post(&t, &[down("cache", "u3"), down("cache", "u4")]).await;
            assert_eq!(
                seq(&mut follower, "the first of two posted at once").await,
                4
            );
            assert_eq!(
                seq(&mut follower, "the second of two posted at once").await,
                5
            );
            follower.terminate().await;
        },
    )
    .await;
}

#[tokio::test]
async fn notifications_follow_in_a_table_prints_a_header_then_one_line_each() {
    within(
        LIMIT,
        "etcd start, or visor notifications --follow never printing",
        async {
            let t = TestRegistry::start().await;
            post(&t, &[down("db", "u1")]).await;
            let mut follower = Follower::spawn(&t, &["notifications", "--follow"]);
            let header = follower.line("the header").await;
            let mut aged_header = NOTIFICATION_HEADER.to_vec();
            aged_header.push("AGE");
            assert_eq!(cli::cells(&header), [aged_header]);
            let first = cli::cells(&follower.line("the retained notification").await);
            assert_eq!(
                first[0][..5],
                ["1", "service-down", "db", "u1", "u1.example"]
            );
            post(&t, &[degraded("db")]).await;
            let line = follower.line("a notification posted while following").await;
            let next = cli::without_age([cli::cells(&header), cli::cells(&line)].concat());
            let detected = cli::second(
                &t.visor.notifications(1).await.expect("listed").items[0]
                    .value
                    .detected_at,
            );
            assert_eq!(
                next[1..],
                [[
                    "2",
                    "service-degraded",
                    "db",
                    "-",
                    "-",
                    "-",
                    "-",
                    "0 live endpoints, fewer than its minimum of 1",
                    &detected
                ]]
            );
            follower.terminate().await;
        },
    )
    .await;
}
