//! The `visor relation` and `visor hooks` commands end to end, run as the
//! built binary against a real etcd, in table and JSON output: adding,
//! listing, showing and removing relations (ids derived from the endpoints
//! unless `--name` gives one), unit settings with their versions, the hooks
//! the controller hands out and the state an acknowledgement leaves. Every
//! refusal exits with its code and writes nothing.

use serde_json::{Value, json};
use visor::Error;

use visor_testkit::cli::{
    self, CLOSED_PORT, Cli, LIMIT, REMOVED_FIELDS, REMOVED_HEADER, assert_fields, column, rows,
    take_time, visor,
};
use visor_testkit::fixtures::{raw_revision, register_app};
use visor_testkit::{TestRegistry, within};

const RELATION_FIELDS: &[&str] = &["id", "endpoints", "created_at", "mod_revision"];
const SETTINGS_FIELDS: &[&str] = &["relation_id", "unit", "settings", "version"];
const STATE_FIELDS: &[&str] = &[
    "relation_id",
    "unit",
    "members",
    "changed_pending",
    "mod_revision",
];
const HOOK_FIELDS: &[&str] = &[
    "unit",
    "relation_id",
    "kind",
    "remote_unit",
    "change_version",
    "mod_revision",
    "failed",
];

/// A registry with apps `web` and `db`.
async fn with_apps() -> TestRegistry {
    let t = TestRegistry::start().await;
    register_app(&t, "web").await;
    register_app(&t, "db").await;
    t
}

/// Writes `value` at `key` as the controller would, around the typed API.
async fn put_raw(t: &TestRegistry, key: &str, value: &Value) {
    t.raw()
        .put(key, value.to_string(), None)
        .await
        .expect("raw put");
}

#[tokio::test]
async fn relation_add_derives_ids_from_endpoints_or_takes_the_name_given() {
    within(LIMIT, "etcd start or visor relation add hangs", async {
        let t = with_apps().await;
        let cli = Cli::new(&t);

        let mut added = cli.json("relation add web db:sql").await.json();
        assert_fields(&added, RELATION_FIELDS);
        let stored = t.visor.relation("web-db-sql").await.expect("stored");
        assert_eq!(take_time(&mut added, "created_at"), stored.value.created_at);
        assert_eq!(
            added,
            json!({
                "id": "web-db-sql",
                "endpoints": [
                    {"app": "web", "proc": null, "name": "web"},
                    {"app": "db", "proc": "sql", "name": "db:sql"},
                ],
                "mod_revision": stored.mod_revision,
            })
        );

        let cases = [
            ("relation add web db", "web-db"),
            ("relation add web:http db:sql", "web-http-db-sql"),
            ("relation add db", "db-peers"),
            ("relation add db:sql", "db-sql-peers"),
            ("relation add web --name web-ring", "web-ring"),
            ("relation add --name cache web:http db", "cache"),
        ];
        for (line, id) in cases {
            let added = cli.json(line).await.json();
            assert_eq!(added["id"], id, "{line}");
            let stored = t.visor.relation(id).await.expect("stored under its id");
            assert_eq!(added["mod_revision"], stored.mod_revision, "{line}");
        }
        let peer = t.visor.relation("db-peers").await.expect("peer");
        assert!(peer.value.is_peer(), "one endpoint is a peer relation");
        let table = cli.run("relation add web:worker db:sql").await.table();
        assert_eq!(table[0], ["ID", "ENDPOINTS", "CREATED AT"]);
        assert_eq!(table[1][..2], ["web-worker-db-sql", "web:worker,db:sql"]);
    })
    .await;
}

#[tokio::test]
async fn relation_list_and_show_print_endpoints_and_creation_in_json_and_tables() {
    within(LIMIT, "etcd start or visor relation list hangs", async {
        let t = with_apps().await;
        let cli = Cli::new(&t);
        assert_eq!(cli.json("relation list").await.json(), json!([]));
        assert_eq!(
            cli.run("relation list").await.table(),
            rows(&[&["ID", "ENDPOINTS", "CREATED AT"]])
        );
        cli.json("relation add web db:sql").await.json();
        cli.json("relation add db").await.json();

        let list = cli.json("relation list").await.json();
        assert_eq!(column(&list, "id"), ["db-peers", "web-db-sql"], "key order");
        let mut show = cli.json("relation show web-db-sql").await.json();
        assert_fields(&show, RELATION_FIELDS);
        assert_eq!(show, list[1], "show and list agree");
        let stored = t.visor.relation("web-db-sql").await.expect("stored");
        let created = take_time(&mut show, "created_at");
        assert_eq!(created, stored.value.created_at);
        assert_eq!(
            show["endpoints"],
            json!([
                {"app": "web", "proc": null, "name": "web"},
                {"app": "db", "proc": "sql", "name": "db:sql"},
            ])
        );

        let table = cli.run("relation list").await.table();
        let peers = t.visor.relation("db-peers").await.expect("peer");
        let expected_peers = cli::second(&peers.value.created_at);
        let expected_pair = cli::second(&created);
        let expected = rows(&[
            &["ID", "ENDPOINTS", "CREATED AT"],
            &["db-peers", "db", &expected_peers],
            &["web-db-sql", "web,db:sql", &expected_pair],
        ]);
        assert_eq!(table, expected);
        let table = cli.run("relation show db-peers").await.table();
        assert_eq!(table, [expected[0].clone(), expected[1].clone()]);
    })
    .await;
}

#[tokio::test]
async fn relation_remove_deletes_it_and_a_missing_relation_exits_3() {
    within(LIMIT, "etcd start or visor relation remove hangs", async {
        let t = with_apps().await;
        let cli = Cli::new(&t);
        cli.json("relation add web db").await.json();
        cli.json("relation add db").await.json();

        let removed = cli.json("relation remove web-db").await.json();
        assert_fields(&removed, REMOVED_FIELDS);
        assert_eq!(removed["removed"], "relation web-db");
        assert_eq!(removed["revision"], raw_revision(&t).await);
        assert!(matches!(
            t.visor.relation("web-db").await,
            Err(Error::NotFound(_))
        ));
        let table = cli.run("relation remove db-peers").await.table();
        assert_eq!(table[0], REMOVED_HEADER);
        assert_eq!(table[1][0], "relation db-peers");

        let before = raw_revision(&t).await;
        for line in ["relation remove web-db", "relation show web-db"] {
            assert_eq!(cli.run(line).await.error(3), "relation web-db not found");
            assert_eq!(cli.json(line).await.error(3), "relation web-db not found");
        }
        assert_eq!(cli.json("relation list").await.json(), json!([]));
        assert_eq!(raw_revision(&t).await, before, "a failed command wrote");
    })
    .await;
}

#[tokio::test]
async fn relation_add_refusals_exit_with_their_codes_and_write_nothing() {
    within(
        LIMIT,
        "etcd start or a failing visor relation add hangs",
        async {
            let t = with_apps().await;
            let cli = Cli::new(&t);
            cli.json("relation add web db").await.json();
            let before = raw_revision(&t).await;

            assert_eq!(
                cli.run("relation add web db").await.error(4),
                "relation web-db already exists"
            );
            assert_eq!(
                cli.json("relation add db web --name web-db").await.error(4),
                "relation web-db already exists"
            );
            assert_eq!(
                cli.run("relation add web nope:sql").await.error(3),
                "app nope not found"
            );
            for line in [
                "relation add web web:http",
                "relation add web:http web:http",
            ] {
                let message = cli.run(line).await.error(2);
                assert!(
                    message.starts_with("invalid relation: endpoints web")
                        && message.contains("overlap"),
                    "{line}: {message}"
                );
            }
            let message = cli.run("relation add Web db").await.error(2);
            assert!(message.contains("invalid app name \"Web\""), "{message}");
            let message = cli.run("relation add web db --name Bad").await.error(2);
            assert!(
                message.contains("invalid relation name \"Bad\""),
                "{message}"
            );
            assert_eq!(raw_revision(&t).await, before, "a refusal wrote");

            // An app name of 60 characters makes a derived id of more than 63.
            let long = "a".repeat(60);
            register_app(&t, &long).await;
            let before = raw_revision(&t).await;
            let message = cli
                .run(&format!("relation add {long} db:sql"))
                .await
                .error(2);
            assert!(
                message.contains("--name") && message.contains("at most 63 characters"),
                "asks for --name: {message}"
            );
            cli.run("relation add web db x").await.usage_error("'x'");
            cli.run("relation add").await.usage_error("<ENDPOINT>");
            assert_eq!(raw_revision(&t).await, before, "a usage error wrote");

            let named = cli
                .json(&format!("relation add {long} db --name long-db"))
                .await
                .json();
            assert_eq!(named["id"], "long-db", "--name avoids the derived id");
            let ids: Vec<String> = t
                .visor
                .relations()
                .await
                .expect("relations")
                .items
                .iter()
                .map(|r| r.value.id.to_string())
                .collect();
            assert_eq!(
                ids,
                ["long-db", "web-db"],
                "only what succeeded was written"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn settings_set_merges_assignments_and_show_reports_the_increasing_version() {
    within(
        LIMIT,
        "etcd start or visor relation settings hangs",
        async {
            let t = with_apps().await;
            let cli = Cli::new(&t);
            cli.json("relation add web db").await.json();

            let first = cli
                .json("relation settings set web-db db-0 host=db1 url=pg://a?x=1")
                .await
                .json();
            assert_fields(&first, SETTINGS_FIELDS);
            let stored = t.visor.settings("web-db", "db-0").await.expect("stored");
            assert_eq!(
                first,
                json!({
                    "relation_id": "web-db",
                    "unit": "db-0",
                    "settings": {"host": "db1", "url": "pg://a?x=1"},
                    "version": stored.mod_revision,
                })
            );

            let second = cli
                .json("relation settings set web-db db-0 host=db2 port=5432")
                .await
                .json();
            let (v1, v2) = (
                first["version"].as_i64().expect("version"),
                second["version"].as_i64().expect("version"),
            );
            assert!(v2 > v1, "a change gets a newer version: {v1} then {v2}");
            let shown = cli.json("relation settings show web-db db-0").await.json();
            assert_eq!(shown, second, "show prints what set wrote");
            assert_eq!(
                shown["settings"],
                json!({"host": "db2", "port": "5432", "url": "pg://a?x=1"}),
                "assignments merge into what was there"
            );
            let stored = t.visor.settings("web-db", "db-0").await.expect("stored");
            assert_eq!(stored.mod_revision, v2);

            let table = cli
                .run("relation settings set web-db db-0 port=6432")
                .await
                .table();
            let v3 = t
                .visor
                .settings("web-db", "db-0")
                .await
                .expect("stored")
                .mod_revision;
            assert!(v3 > v2);
            let expected = rows(&[
                &["RELATION", "UNIT", "VERSION", "SETTINGS"],
                &[
                    "web-db",
                    "db-0",
                    &v3.to_string(),
                    "host=db2,port=6432,url=pg://a?x=1",
                ],
            ]);
            assert_eq!(table, expected);
            assert_eq!(
                cli.run("relation settings show web-db db-0").await.table(),
                expected
            );
        },
    )
    .await;
}

#[tokio::test]
async fn settings_refusals_exit_with_their_codes_and_write_nothing() {
    within(
        LIMIT,
        "etcd start or a failing visor relation settings hangs",
        async {
            let t = with_apps().await;
            let cli = Cli::new(&t);
            cli.json("relation add web db").await.json();
            cli.json("relation settings set web-db db-0 host=db1")
                .await
                .json();
            let before = raw_revision(&t).await;

            cli.run("relation settings set web-db db-0 port=1 host")
                .await
                .usage_error("'host'");
            cli.run("relation settings set web-db db-0 =db2")
                .await
                .usage_error("'=db2'");
            cli.run("relation settings set web-db db-0")
                .await
                .usage_error("<KEY=VALUE>");
            assert_eq!(
                cli.run("relation settings set nope db-0 a=1")
                    .await
                    .error(3),
                "relation nope not found"
            );
            assert_eq!(
                cli.json("relation settings show nope db-0").await.error(3),
                "relation nope not found"
            );
            assert_eq!(
                cli.run("relation settings show web-db db-9").await.error(3),
                "relation settings web-db/db-9 not found"
            );
            let message = cli
                .run("relation settings set web-db Db a=1")
                .await
                .error(2);
            assert!(message.contains("invalid unit name \"Db\""), "{message}");

            assert_eq!(raw_revision(&t).await, before, "a refusal wrote");
            let stored = t.visor.settings("web-db", "db-0").await.expect("stored");
            assert_eq!(stored.value.0.len(), 1, "{:?}", stored.value);
            assert_eq!(stored.value.0["host"], "db1");
        },
    )
    .await;
}

#[tokio::test]
async fn hooks_lists_outstanding_hooks_and_state_shows_what_their_completion_acknowledged() {
    within(LIMIT, "etcd start, a raw put or visor hooks hangs", async {
        let t = with_apps().await;
        let cli = Cli::new(&t);
        cli.json("relation add web db").await.json();
        let version = cli
            .json("relation settings set web-db db-0 host=db1")
            .await
            .json()["version"]
            .as_i64()
            .expect("version");
        assert_eq!(cli.json("hooks").await.json(), json!([]));

        // Hooks are the controller's to write: put them as it would.
        let joined = json!({"kind": "joined", "relation_id": "web-db", "remote_unit": "db-0", "change_version": version});
        put_raw(&t, "/visor/hooks/web-0/web-db", &joined).await;
        let broken = json!({"kind": "broken", "relation_id": "db-peers", "remote_unit": null, "change_version": 0});
        put_raw(&t, "/visor/hooks/db-1/db-peers", &broken).await;
        let hook = t.visor.hook("web-0", "web-db").await.expect("hook");

        let listed = cli.json("hooks").await.json();
        for row in listed.as_array().expect("array") {
            assert_fields(row, HOOK_FIELDS);
        }
        let web_hook = json!({
            "unit": "web-0",
            "relation_id": "web-db",
            "kind": "joined",
            "remote_unit": "db-0",
            "change_version": version,
            "mod_revision": hook.mod_revision,
            "failed": null,
        });
        assert_eq!(listed[1], web_hook, "key order: unit, then relation");
        assert_eq!(listed[0]["unit"], "db-1");
        assert_eq!(listed[0]["remote_unit"], Value::Null);
        assert_eq!(cli.json("hooks web-0").await.json(), json!([web_hook]));
        assert_eq!(cli.json("hooks web-9").await.json(), json!([]));
        assert_eq!(
            cli.run("hooks").await.table(),
            rows(&[
                &[
                    "UNIT",
                    "RELATION",
                    "KIND",
                    "REMOTE UNIT",
                    "VERSION",
                    "FAILED ATTEMPTS",
                    "LAST FAILURE"
                ],
                &["db-1", "db-peers", "broken", "-", "0", "-", "-"],
                &["web-0", "web-db", "joined", "db-0", &version.to_string(), "-", "-"],
            ])
        );

        // An agent's failure shows on the hook until it is acknowledged.
        let failed = t
            .visor
            .record_hook_failure("web-0", "web-db", &hook, "exited with code 1:\nno db")
            .await
            .expect("record a failure");
        let failure = failed.value.failed.clone().expect("recorded");
        let listed = cli.json("hooks web-0").await.json();
        assert_eq!(
            listed[0]["failed"],
            json!({"attempts": 1, "reason": "exited with code 1:\nno db", "at": failure.at}),
        );
        let at = failure.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert_eq!(
            cli.run("hooks web-0").await.table()[1][5..],
            [
                "1".to_owned(),
                format!("{at}: exited with code 1: no db")
            ]
        );
        assert!(
            matches!(
                t.visor
                    .record_hook_failure("web-0", "web-db", &hook, "stale")
                    .await,
                Err(Error::Conflict { .. })
            ),
            "a failure is recorded only on the hook as read"
        );

        assert_eq!(
            cli.run("relation state web-db web-0").await.error(3),
            "relation state web-db/web-0 not found"
        );
        t.visor
            .complete_hook("web-0", "web-db")
            .await
            .expect("complete joined");
        let mut state = cli.json("relation state web-db web-0").await.json();
        assert_fields(&state, STATE_FIELDS);
        let stored = t.visor.relation_state("web-db", "web-0").await.expect("state");
        assert_eq!(
            state,
            json!({
                "relation_id": "web-db",
                "unit": "web-0",
                "members": {"db-0": version},
                "changed_pending": "db-0",
                "mod_revision": stored.mod_revision,
            })
        );
        assert_eq!(column(&cli.json("hooks").await.json(), "unit"), ["db-1"]);

        let changed = json!({"kind": "changed", "relation_id": "web-db", "remote_unit": "db-0", "change_version": version + 1});
        put_raw(&t, "/visor/hooks/web-0/web-db", &changed).await;
        t.visor
            .complete_hook("web-0", "web-db")
            .await
            .expect("complete changed");
        let stored = t.visor.relation_state("web-db", "web-0").await.expect("state");
        state["members"] = json!({"db-0": version + 1});
        state["changed_pending"] = Value::Null;
        state["mod_revision"] = json!(stored.mod_revision);
        assert_eq!(cli.json("relation state web-db web-0").await.json(), state);
        assert_eq!(
            cli.run("relation state web-db web-0").await.table(),
            rows(&[
                &["RELATION", "UNIT", "MEMBERS", "CHANGED PENDING", "MOD REVISION"],
                &[
                    "web-db",
                    "web-0",
                    &format!("db-0={}", version + 1),
                    "-",
                    &stored.mod_revision.to_string(),
                ],
            ])
        );
        assert_eq!(
            cli.json("relation state nope web-0").await.error(3),
            "relation nope not found"
        );
    })
    .await;
}

#[tokio::test]
async fn relation_commands_exit_5_when_unreachable_but_usage_errors_come_first() {
    within(
        LIMIT,
        "visor against a closed port does not give up",
        async {
            let commands = [
                "relation add web db",
                "relation remove web-db",
                "relation list",
                "relation show web-db",
                "relation settings set web-db db-0 a=1",
                "relation settings show web-db db-0",
                "relation state web-db db-0",
                "hooks",
                "hooks web-0",
            ];
            let flags = format!("--endpoints {CLOSED_PORT} --connect-timeout 1s");
            for command in commands {
                let message = visor(&format!("{flags} {command}")).await.error(5);
                assert!(message.contains(CLOSED_PORT), "{command}: {message}");
            }
            let long = "a".repeat(60);
            let message = visor(&format!("{flags} relation add {long} db:sql"))
                .await
                .error(2);
            assert!(message.contains("--name"), "{message}");
            visor(&format!("{flags} relation settings set r u k"))
                .await
                .usage_error("'k'");
        },
    )
    .await;
}
