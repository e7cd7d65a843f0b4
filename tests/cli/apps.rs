//! The `visor app` commands end to end: `app register|unregister|list|show`
//! run as the built binary against a real etcd, in table and JSON output,
//! including their error exits (which must write nothing).

use serde_json::json;
use visor::Error;

use visor_testkit::cli::{
    APP_FIELDS, Cli, LIMIT, PROC_FIELDS, REMOVED_FIELDS, REMOVED_HEADER, REV_FIELDS, as_array,
    assert_fields, column, rows, second, take_time,
};
use visor_testkit::fixtures::{portless_proc_type, raw_revision, register_app, revision};
use visor_testkit::{TestRegistry, within};

#[tokio::test]
async fn app_commands_in_json() {
    within(LIMIT, "etcd start or a visor app command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);

        let mut web = cli
            .json("app register web --repo-url https://git.example/web --stack base")
            .await
            .json();
        assert_fields(&web, APP_FIELDS);
        let stored = t.visor.app("web").await.expect("the CLI registered web");
        assert_eq!(take_time(&mut web, "created_at"), stored.value.created_at);
        assert_eq!(
            web,
            json!({"name": "web", "repo_url": "https://git.example/web", "stack": "base",
                   "deploy_type": "lxc", "mod_revision": stored.mod_revision})
        );

        // `-o` is global: it may follow the subcommand.
        let api = cli
            .run(
                "app register api --repo-url https://git.example/api --stack jvm \
                 --deploy-type docker -o json",
            )
            .await
            .json();
        assert_eq!(api["deploy_type"], "docker");
        assert_eq!(api["stack"], "jvm");
        assert_eq!(
            t.visor.app("api").await.expect("api").value.deploy_type,
            "docker"
        );

        let list = cli.json("app list").await.json();
        assert_eq!(column(&list, "name"), ["api", "web"], "apps in name order");
        for app in as_array(&list) {
            assert_fields(app, APP_FIELDS);
        }
        let mut listed_web = list[1].clone();
        assert_eq!(
            take_time(&mut listed_web, "created_at"),
            stored.value.created_at
        );
        assert_eq!(listed_web, web);

        // Everything `show` gathers, written through the typed API.
        t.visor
            .set_env("web", "PORT", "8080")
            .await
            .expect("set env");
        t.visor
            .set_env("web", "MODE", "prod")
            .await
            .expect("set env");
        let mut http = portless_proc_type("bin/http --port 8080");
        http.port = Some(8080);
        http.limits.memory_mb = Some(256);
        http.host_labels.insert("zone".into(), "a".into());
        let http = t
            .visor
            .register_proc("web", "http", http)
            .await
            .expect("proc");
        let v1 = t
            .visor
            .register_rev("web", "v1", revision("s3://b/v1.tgz"))
            .await
            .expect("rev");
        t.visor
            .set_scale("web", "v1", "http", 3)
            .await
            .expect("scale");

        let mut show = cli.json("app show web").await.json();
        assert_fields(
            &show,
            &[APP_FIELDS, &["env", "procs", "revs", "scale"]].concat(),
        );
        assert_fields(&show["procs"][0], PROC_FIELDS);
        assert_fields(&show["revs"][0], REV_FIELDS);
        assert_eq!(take_time(&mut show, "created_at"), stored.value.created_at);
        let proc_time = take_time(&mut show["procs"][0], "created_at");
        assert_eq!(proc_time, http.value.created_at);
        let rev_time = take_time(&mut show["revs"][0], "created_at");
        assert_eq!(rev_time, v1.value.created_at);
        assert_eq!(
            show,
            json!({
                "name": "web", "repo_url": "https://git.example/web", "stack": "base",
                "deploy_type": "lxc", "mod_revision": stored.mod_revision,
                "env": {"MODE": "prod", "PORT": "8080"},
                "procs": [{"app": "web", "name": "http", "command": "bin/http --port 8080",
                           "port": 8080, "limits": {"memory_mb": 256, "cpu_shares": null},
                           "host_labels": {"zone": "a"}, "kill_timeout_secs": 10,
                           "restart": "always", "readiness": null, "service": null}],
                "revs": [{"app": "web", "name": "v1", "archive_url": "s3://b/v1.tgz"}],
                "scale": [{"app": "web", "rev": "v1", "proc": "http", "replicas": 3}],
            })
        );

        let removed = cli.json("app unregister web").await.json();
        assert_fields(&removed, REMOVED_FIELDS);
        let revision = raw_revision(&t).await;
        assert_eq!(removed, json!({"removed": "app web", "revision": revision}));
        assert!(matches!(t.visor.app("web").await, Err(Error::NotFound(_))));
        assert!(t.visor.envs("web").await.expect("envs").items.is_empty());
        assert!(t.visor.procs("web").await.expect("procs").items.is_empty());
        assert!(t.visor.revs("web").await.expect("revs").items.is_empty());
        let scales = t.visor.scales(Some("web")).await.expect("scales");
        assert!(
            scales.items.is_empty(),
            "unregister cascades to scale factors"
        );
        assert_eq!(column(&cli.json("app list").await.json(), "name"), ["api"]);
    })
    .await;
}

#[tokio::test]
async fn app_commands_as_tables() {
    within(LIMIT, "etcd start or a visor app command hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let header = ["NAME", "STACK", "DEPLOY TYPE", "REPO URL", "CREATED AT"];

        assert_eq!(
            cli.run("app list").await.table(),
            [header],
            "an empty listing is its header"
        );

        let run = cli
            .run("app register web --repo-url https://git.example/web --stack base")
            .await;
        let raw = visor_testkit::cli::cells(run.ok());
        assert_eq!(
            raw[0].last().map(String::as_str),
            Some("AGE"),
            "a table of records with a time ends in their AGE: {raw:?}"
        );
        assert!(
            visor_testkit::cli::is_age(&raw[1][5]) && raw[1][5].ends_with('s'),
            "an app registered just now is seconds old: {raw:?}"
        );
        let registered = run.table();
        let web = t.visor.app("web").await.expect("registered");
        let web_row = ["web", "base", "lxc", "https://git.example/web"];
        assert_eq!(registered.len(), 2, "{registered:?}");
        assert_eq!(registered[0], header);
        assert_eq!(registered[1][..4], web_row);
        assert_eq!(registered[1][4], second(&web.value.created_at));

        register_app(&t, "api").await;
        let list = cli.run("app list").await.table();
        assert_eq!(list.len(), 3, "{list:?}");
        assert_eq!(list[0], header);
        assert_eq!(
            list[1][..4],
            ["api", "base", "lxc", "https://git.example/api"]
        );
        assert_eq!(list[2][..4], web_row);

        let show_header: &[&str] = &[
            "NAME",
            "STACK",
            "DEPLOY TYPE",
            "REPO URL",
            "ENV",
            "PROCS",
            "REVS",
            "SCALE",
        ];
        let bare = cli.run("app show web").await.table();
        let bare_row: &[&str] = &[
            "web",
            "base",
            "lxc",
            "https://git.example/web",
            "-",
            "-",
            "-",
            "-",
        ];
        assert_eq!(
            bare,
            rows(&[show_header, bare_row]),
            "absent parts show as -"
        );
        seed_parts(&t).await;
        let show = cli.run("app show web").await.table();
        let full_row: &[&str] = &[
            "web",
            "base",
            "lxc",
            "https://git.example/web",
            "MODE=prod,PORT=8080",
            "http,worker",
            "v1,v2",
            "v1/http=3,v2/worker=1",
        ];
        assert_eq!(show, rows(&[show_header, full_row]));

        let removed = cli.run("app unregister web").await.table();
        let revision = raw_revision(&t).await.to_string();
        assert_eq!(removed, rows(&[REMOVED_HEADER, &["app web", &revision]]));
        assert!(matches!(t.visor.app("web").await, Err(Error::NotFound(_))));
    })
    .await;
}

/// Env vars, two proc types, two revisions and two scale factors for app `web`.
async fn seed_parts(t: &TestRegistry) {
    t.visor.set_env("web", "PORT", "8080").await.expect("env");
    t.visor.set_env("web", "MODE", "prod").await.expect("env");
    for proc in ["http", "worker"] {
        t.visor
            .register_proc("web", proc, portless_proc_type(proc))
            .await
            .expect("proc");
    }
    for rev in ["v1", "v2"] {
        t.visor
            .register_rev("web", rev, revision(rev))
            .await
            .expect("rev");
    }
    t.visor
        .set_scale("web", "v1", "http", 3)
        .await
        .expect("scale");
    t.visor
        .set_scale("web", "v2", "worker", 1)
        .await
        .expect("scale");
}

#[tokio::test]
async fn app_errors_exit_with_their_codes_and_write_nothing() {
    within(
        LIMIT,
        "etcd start or a failing visor app command hangs",
        async {
            let t = TestRegistry::start().await;
            let cli = Cli::new(&t);
            register_app(&t, "web").await;
            let web = t.visor.app("web").await.expect("web");
            let before = raw_revision(&t).await;

            let again = "app register web --repo-url https://other.example --stack base";
            assert_eq!(cli.run(again).await.error(4), "app web already exists");
            assert_eq!(
                cli.json(again).await.error(4),
                "app web already exists",
                "errors are one plain line in JSON mode too"
            );
            let after = t.visor.app("web").await.expect("web is still there");
            assert_eq!(after.value.repo_url, "https://git.example/web");
            assert_eq!(after.mod_revision, web.mod_revision);

            let message = cli
                .run("app register 'Bad Name' --repo-url u --stack base")
                .await
                .error(2);
            assert!(
                message.contains("invalid app name \"Bad Name\""),
                "{message}"
            );
            let message = cli
                .run("app register ok --repo-url u --stack 'Bad Stack'")
                .await
                .error(2);
            assert!(
                message.contains("invalid stack name \"Bad Stack\""),
                "{message}"
            );

            assert_eq!(
                cli.run("app show nope").await.error(3),
                "app nope not found"
            );
            assert_eq!(
                cli.json("app show nope").await.error(3),
                "app nope not found"
            );
            assert_eq!(
                cli.run("app unregister nope").await.error(3),
                "app nope not found"
            );
            let message = cli.run("app unregister 'Bad Name'").await.error(2);
            assert!(
                message.contains("invalid app name \"Bad Name\""),
                "{message}"
            );

            cli.run("app register x --stack base")
                .await
                .usage_error("--repo-url");
            cli.run("app register").await.usage_error("<NAME>");
            cli.run("app show").await.usage_error("<NAME>");
            cli.run("app frobnicate").await.usage_error("frobnicate");

            assert_eq!(raw_revision(&t).await, before, "a failed command wrote");
            assert_eq!(t.visor.apps().await.expect("apps").items.len(), 1);
        },
    )
    .await;
}
