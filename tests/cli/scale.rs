//! The `visor scale` command end to end: setting and showing scale factors,
//! run as the built binary against a real etcd, in table and JSON output,
//! including its error exits (which must write nothing). Several assignments
//! are all or nothing.

use serde_json::json;
use visor::Error;

use visor_testkit::cli::{Cli, LIMIT, as_array, assert_fields, rows};
use visor_testkit::fixtures::{raw_revision, revision, seed_app};
use visor_testkit::{TestRegistry, within};

#[tokio::test]
async fn scale_sets_and_shows_factors_in_json() {
    within(LIMIT, "etcd start or visor scale hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        seed_app(&t, "web").await;
        t.visor
            .register_rev("web", "v2", revision("v2"))
            .await
            .expect("v2");

        assert_eq!(
            cli.json("scale web v1").await.json(),
            json!([]),
            "nothing set yet"
        );

        let set = cli.json("scale web v1 worker=1 http=3").await.json();
        for row in as_array(&set) {
            assert_fields(row, &["app", "rev", "proc", "replicas"]);
        }
        assert_eq!(
            set,
            json!([
                {"app": "web", "rev": "v1", "proc": "worker", "replicas": 1},
                {"app": "web", "rev": "v1", "proc": "http", "replicas": 3},
            ]),
            "rows in argument order"
        );
        let http = t.visor.scale("web", "v1", "http").await.expect("http");
        assert_eq!(http.value.replicas, 3);
        let worker = t.visor.scale("web", "v1", "worker").await.expect("worker");
        assert_eq!(worker.value.replicas, 1);
        t.visor
            .set_scale("web", "v2", "http", 7)
            .await
            .expect("v2 scale");

        let show = cli.json("scale web v1").await.json();
        assert_eq!(
            show,
            json!([
                {"app": "web", "rev": "v1", "proc": "http", "replicas": 3},
                {"app": "web", "rev": "v1", "proc": "worker", "replicas": 1},
            ]),
            "only v1's factors, in proc order"
        );

        let zero = cli.json("scale web v1 http=0").await.json();
        assert_eq!(
            zero,
            json!([{"app": "web", "rev": "v1", "proc": "http", "replicas": 0}])
        );
        let http = t.visor.scale("web", "v1", "http").await.expect("http");
        assert_eq!(http.value.replicas, 0);
        let show = cli.json("scale web v2").await.json();
        assert_eq!(
            show,
            json!([{"app": "web", "rev": "v2", "proc": "http", "replicas": 7}])
        );
    })
    .await;
}

#[tokio::test]
async fn scale_sets_and_shows_factors_as_tables() {
    within(LIMIT, "etcd start or visor scale hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        seed_app(&t, "web").await;
        let header: &[&str] = &["APP", "REV", "PROC", "REPLICAS"];

        assert_eq!(cli.run("scale web v1").await.table(), rows(&[header]));
        let set = cli.run("scale web v1 http=3 worker=12").await.table();
        let expected = rows(&[
            header,
            &["web", "v1", "http", "3"],
            &["web", "v1", "worker", "12"],
        ]);
        assert_eq!(set, expected);
        assert_eq!(cli.run("scale web v1").await.table(), expected);
    })
    .await;
}

#[tokio::test]
async fn scale_errors_exit_with_their_codes_and_write_nothing() {
    within(LIMIT, "etcd start or a failing visor scale hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        seed_app(&t, "web").await;
        t.visor
            .set_scale("web", "v1", "http", 2)
            .await
            .expect("scale");
        let before = raw_revision(&t).await;

        cli.run("scale web v1 http=x").await.usage_error("http=x");
        cli.run("scale web v1 http=-1").await.usage_error("http=-1");
        cli.run("scale web v1 http=1.5")
            .await
            .usage_error("http=1.5");
        cli.run("scale web v1 http").await.usage_error("http");
        cli.run("scale web v1 http=99999999999")
            .await
            .usage_error("99999999999");
        cli.run("scale web").await.usage_error("<REV>");

        assert_eq!(
            cli.run("scale web v1 nope=1").await.error(3),
            "proc type web/nope not found"
        );
        assert_eq!(
            cli.json("scale web v9 http=1").await.error(3),
            "revision web/v9 not found"
        );
        assert_eq!(
            cli.run("scale nope v1 http=1").await.error(3),
            "app nope not found"
        );
        assert_eq!(
            cli.run("scale web v9").await.error(3),
            "revision web/v9 not found"
        );
        assert_eq!(
            cli.json("scale nope v1").await.error(3),
            "revision nope/v1 not found"
        );
        let message = cli.run("scale web v1 Bad=1").await.error(2);
        assert!(message.contains("invalid proc name \"Bad\""), "{message}");

        assert_eq!(raw_revision(&t).await, before, "a failed command wrote");
        let http = t.visor.scale("web", "v1", "http").await.expect("http");
        assert_eq!(http.value.replicas, 2);
        assert_eq!(
            t.visor
                .scales(Some("web"))
                .await
                .expect("scales")
                .items
                .len(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn scale_with_one_bad_assignment_sets_none() {
    within(LIMIT, "etcd start or visor scale hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        seed_app(&t, "web").await;
        let before = raw_revision(&t).await;

        let message = cli.run("scale web v1 http=3 nope=1").await.error(3);
        assert_eq!(message, "proc type web/nope not found");
        assert!(
            matches!(
                t.visor.scale("web", "v1", "http").await,
                Err(Error::NotFound(_))
            ),
            "scale failed, yet set http"
        );
        assert_eq!(raw_revision(&t).await, before);
    })
    .await;
}

#[tokio::test]
async fn a_proc_given_twice_is_a_usage_error_naming_it_and_sets_none() {
    within(LIMIT, "etcd start or visor scale hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        seed_app(&t, "web").await;
        let before = raw_revision(&t).await;

        for line in [
            "scale web v1 http=3 http=4",
            "scale web v1 http=3 worker=1 http=3",
        ] {
            let message = cli.run(line).await.usage_error("proc http");
            assert_eq!(message, "proc http is given more than once", "{line}");
            cli.json(line).await.usage_error("proc http");
        }
        assert!(
            matches!(
                t.visor.scale("web", "v1", "http").await,
                Err(Error::NotFound(_))
            ),
            "a refused scale set http"
        );
        assert_eq!(raw_revision(&t).await, before, "a refusal wrote");
    })
    .await;
}
