//! The `visor env` commands end to end: `env set|get|unset|list` run as the
//! built binary against a real etcd, in table and JSON output, including their
//! error exits (which must write nothing). Commands with several assignments
//! or keys are all or nothing.

use serde_json::json;
use visor::Error;

use visor_testkit::cli::{
    CLOSED_PORT, Cli, LIMIT, REMOVED_FIELDS, REMOVED_HEADER, as_array, assert_fields, rows, visor,
};
use visor_testkit::fixtures::{raw_revision, register_app};
use visor_testkit::{TestRegistry, within};

#[tokio::test]
async fn env_commands_in_json() {
    within(LIMIT, "etcd start or a visor env command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;

        let set = cli
            .json("env set web PORT=80 URL=http://x/?a=b EMPTY=")
            .await
            .json();
        for row in as_array(&set) {
            assert_fields(row, &["app", "key", "value"]);
        }
        assert_eq!(
            set,
            json!([
                {"app": "web", "key": "PORT", "value": "80"},
                {"app": "web", "key": "URL", "value": "http://x/?a=b"},
                {"app": "web", "key": "EMPTY", "value": ""},
            ]),
            "rows in argument order; values may contain '=' or be empty"
        );
        assert_eq!(
            t.visor.env("web", "URL").await.expect("URL").value,
            "http://x/?a=b"
        );
        assert_eq!(t.visor.env("web", "EMPTY").await.expect("EMPTY").value, "");

        let replaced = cli.json("env set web PORT=8080").await.json();
        assert_eq!(
            replaced,
            json!([{"app": "web", "key": "PORT", "value": "8080"}])
        );
        assert_eq!(
            t.visor.env("web", "PORT").await.expect("PORT").value,
            "8080"
        );

        let list = cli.json("env list web").await.json();
        assert_eq!(
            list,
            json!([
                {"app": "web", "key": "EMPTY", "value": ""},
                {"app": "web", "key": "PORT", "value": "8080"},
                {"app": "web", "key": "URL", "value": "http://x/?a=b"},
            ]),
            "env vars in key order"
        );

        // Both removals happen in one transaction, at one revision.
        let unset = cli.json("env unset web PORT URL").await.json();
        for row in as_array(&unset) {
            assert_fields(row, REMOVED_FIELDS);
        }
        let last = raw_revision(&t).await;
        assert_eq!(
            unset,
            json!([
                {"removed": "env var web/PORT", "revision": last},
                {"removed": "env var web/URL", "revision": last},
            ])
        );
        let left = t.visor.envs("web").await.expect("envs");
        assert_eq!(left.items.len(), 1);
        assert_eq!(left.items[0].name(), "EMPTY");

        cli.json("env unset web EMPTY").await.json();
        assert_eq!(cli.json("env list web").await.json(), json!([]));
    })
    .await;
}

#[tokio::test]
async fn env_commands_as_tables() {
    within(LIMIT, "etcd start or a visor env command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        let header: &[&str] = &["APP", "KEY", "VALUE"];

        assert_eq!(cli.run("env list web").await.table(), rows(&[header]));
        let set = cli.run("env set web PORT=80 'MODE=prod run'").await.table();
        assert_eq!(
            set,
            rows(&[header, &["web", "PORT", "80"], &["web", "MODE", "prod run"]])
        );
        let list = cli.run("env list web").await.table();
        assert_eq!(
            list,
            rows(&[header, &["web", "MODE", "prod run"], &["web", "PORT", "80"]])
        );
        let unset = cli.run("env unset web MODE").await.table();
        let revision = raw_revision(&t).await.to_string();
        assert_eq!(
            unset,
            rows(&[REMOVED_HEADER, &["env var web/MODE", &revision]])
        );
        assert!(matches!(
            t.visor.env("web", "MODE").await,
            Err(Error::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn env_errors_exit_with_their_codes_and_write_nothing() {
    within(
        LIMIT,
        "etcd start or a failing visor env command hangs",
        async {
            let t = TestRegistry::start().await;
            let cli = Cli::new(&t);
            register_app(&t, "web").await;
            t.visor.set_env("web", "PORT", "80").await.expect("env");
            let before = raw_revision(&t).await;

            assert_eq!(
                cli.run("env set nope PORT=80").await.error(3),
                "app nope not found"
            );
            assert_eq!(
                cli.run("env unset web NOPE").await.error(3),
                "env var web/NOPE not found"
            );

            let message = cli.run("env set web 1BAD=x").await.error(2);
            assert!(message.contains("invalid env name \"1BAD\""), "{message}");
            let message = cli.run("env set 'Bad Name' PORT=1").await.error(2);
            assert!(
                message.contains("invalid app name \"Bad Name\""),
                "{message}"
            );

            cli.run("env set web NOEQUALS")
                .await
                .usage_error("NOEQUALS");
            cli.run("env set web =value").await.usage_error("=value");
            cli.run("env set web").await.usage_error("<VARS>");
            cli.run("env unset web").await.usage_error("<KEYS>");

            assert_eq!(raw_revision(&t).await, before, "a failed command wrote");
            assert_eq!(t.visor.env("web", "PORT").await.expect("PORT").value, "80");
            assert_eq!(t.visor.envs("web").await.expect("envs").items.len(), 1);
        },
    )
    .await;
}

#[tokio::test]
async fn env_set_with_one_bad_assignment_writes_none() {
    within(LIMIT, "etcd start or visor env set hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        let before = raw_revision(&t).await;

        let message = cli.run("env set web GOOD=1 1BAD=2").await.error(2);
        assert!(message.contains("invalid env name \"1BAD\""), "{message}");
        assert!(
            matches!(t.visor.env("web", "GOOD").await, Err(Error::NotFound(_))),
            "env set failed, yet wrote GOOD"
        );
        assert_eq!(raw_revision(&t).await, before);
    })
    .await;
}

#[tokio::test]
async fn env_unset_with_one_missing_key_removes_none() {
    within(LIMIT, "etcd start or visor env unset hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        t.visor.set_env("web", "PORT", "80").await.expect("env");
        let before = raw_revision(&t).await;

        let message = cli.run("env unset web PORT NOPE").await.error(3);
        assert_eq!(message, "env var web/NOPE not found");
        assert!(
            t.visor.env("web", "PORT").await.is_ok(),
            "env unset failed, yet removed PORT"
        );
        assert_eq!(raw_revision(&t).await, before);
    })
    .await;
}

#[tokio::test]
async fn env_get_prints_one_var_or_fails() {
    within(LIMIT, "etcd start or visor env get hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        t.visor
            .set_env("web", "URL", "http://x/?a=b")
            .await
            .expect("env");
        t.visor
            .set_env("web", "MODE", "prod run")
            .await
            .expect("env");

        let get = cli.json("env get web URL").await.json();
        assert_fields(&get, &["app", "key", "value"]);
        assert_eq!(
            get,
            json!({"app": "web", "key": "URL", "value": "http://x/?a=b"})
        );
        let get = cli.run("env get web MODE").await.table();
        assert_eq!(
            get,
            rows(&[&["APP", "KEY", "VALUE"], &["web", "MODE", "prod run"]])
        );

        let before = raw_revision(&t).await;
        assert_eq!(
            cli.json("env get web NOPE").await.error(3),
            "env var web/NOPE not found"
        );
        assert_eq!(
            cli.run("env get nope URL").await.error(3),
            "env var nope/URL not found"
        );
        let message = cli.run("env get web BAD-KEY").await.error(2);
        assert!(
            message.contains("invalid env name \"BAD-KEY\""),
            "{message}"
        );
        cli.run("env get web").await.usage_error("<KEY>");
        let line = format!("--endpoints {CLOSED_PORT} --connect-timeout 1s env get web URL");
        assert!(
            visor(&line)
                .await
                .error(5)
                .starts_with("registry unavailable")
        );
        assert_eq!(raw_revision(&t).await, before, "env get wrote");
    })
    .await;
}

#[tokio::test]
async fn a_variable_given_twice_is_a_usage_error_naming_it_and_changes_none() {
    within(LIMIT, "etcd start or visor env hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        register_app(&t, "web").await;
        t.visor.set_env("web", "A", "0").await.expect("A");
        let before = raw_revision(&t).await;

        for line in [
            "env set web A=1 A=2",
            "env set web A=1 B=1 A=1",
            "env unset web A A",
        ] {
            let message = cli.run(line).await.usage_error("env var A");
            assert_eq!(message, "env var A is given more than once", "{line}");
        }
        assert_eq!(t.visor.env("web", "A").await.expect("A").value, "0");
        assert!(matches!(
            t.visor.env("web", "B").await,
            Err(Error::NotFound(_))
        ));
        assert_eq!(raw_revision(&t).await, before, "a refusal wrote");
    })
    .await;
}
