//! Connecting to the registry: the schema version is written on a fresh
//! registry and checked on every connect (a newer one is refused), roots keep
//! registries apart, and an endpoint where nothing listens is `Unavailable`
//! with that endpoint named.

use std::net::TcpListener;
use std::time::Duration;

use visor::{Error, RegistryConfig, Visor};

use visor_testkit::fixtures::{app, raw_keys, raw_value};
use visor_testkit::{TestRegistry, within};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_fresh_registry_gets_schema_version_one_and_keeps_it() {
    within(LIMIT, "etcd start or connect hangs", async {
        let t = TestRegistry::start().await;
        let stored = raw_value(&t, "/visor/schema")
            .await
            .expect("connect wrote /visor/schema");
        let schema: serde_json::Value = serde_json::from_slice(&stored).expect("schema is JSON");
        assert_eq!(schema, serde_json::json!({"version": 1}));
        assert_eq!(
            raw_keys(&t, "/").await,
            ["/visor/schema"],
            "connect writes nothing else"
        );

        let written = t.raw().get("/visor/schema", None).await.expect("raw get");
        let mod_revision = written.kvs()[0].mod_revision();
        let again = t.connect_again().await;
        assert_eq!(again.check_schema().await.expect("check").version, 1);
        let reread = t.raw().get("/visor/schema", None).await.expect("raw get");
        assert_eq!(
            reread.kvs()[0].mod_revision(),
            mod_revision,
            "a second connect does not rewrite the schema"
        );
    })
    .await;
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    within(LIMIT, "etcd start or connect hangs", async {
        let t = TestRegistry::start().await;
        t.raw()
            .put("/visor/schema", r#"{"version": 999}"#, None)
            .await
            .expect("raw put");
        match Visor::connect(&t.config()).await {
            Err(error @ Error::SchemaTooNew { .. }) => {
                assert!(error.to_string().contains("999"), "{error}");
                let Error::SchemaTooNew { found, supported } = error else {
                    unreachable!("matched above")
                };
                assert_eq!((found, supported), (999, 1));
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
        assert!(matches!(
            t.visor.check_schema().await,
            Err(Error::SchemaTooNew { found: 999, .. })
        ));
        let stored = raw_value(&t, "/visor/schema").await.expect("schema kept");
        assert_eq!(
            stored, br#"{"version": 999}"#,
            "the newer schema is left alone"
        );
    })
    .await;
}

#[tokio::test]
async fn registries_under_different_roots_are_separate() {
    within(LIMIT, "etcd start or connect hangs", async {
        let t = TestRegistry::start().await;
        let other = Visor::connect(&t.config().with_root("/other"))
            .await
            .expect("connect under /other");
        other
            .register_app("web", app("git://other"))
            .await
            .expect("register under /other");
        assert!(matches!(t.visor.app("web").await, Err(Error::NotFound(_))));
        assert!(t.visor.apps().await.expect("list").items.is_empty());
        assert_eq!(
            raw_keys(&t, "/other/").await,
            ["/other/apps/web", "/other/schema"]
        );
    })
    .await;
}

#[tokio::test]
async fn connecting_where_nothing_listens_is_unavailable_naming_the_endpoint() {
    within(LIMIT, "connect to a closed port does not give up", async {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            listener.local_addr().expect("local addr").port()
        };
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut config = RegistryConfig::new([endpoint.clone()]);
        config.connect_timeout = Duration::from_secs(2);
        match Visor::connect(&config).await {
            Err(error @ Error::Unavailable { .. }) => {
                assert!(
                    error.to_string().contains(&endpoint),
                    "message names {endpoint}: {error}"
                );
                assert!(error.is_retryable());
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn malformed_settings_are_refused_before_anything_is_dialled_or_written() {
    within(LIMIT, "etcd start or connect hangs", async {
        let t = TestRegistry::start().await;
        let live = t.server.endpoint();
        let address = live
            .strip_prefix("http://")
            .expect("a plain-text test etcd");
        // Built in code, so no flag parser saw them; etcd listens at each address.
        let fresh = |endpoints: Vec<String>| RegistryConfig::new(endpoints).with_root("/fresh");
        let table = [
            (fresh(vec![format!("ftp://{address}")]), "\"ftp\""),
            (fresh(vec![format!("{live}/v3")]), "\"/v3\""),
            (fresh(vec![live.clone(), "127.0.0.1".to_owned()]), "no port"),
            (
                fresh(vec![live.clone()]).with_root("/fresh/"),
                "root prefix",
            ),
        ];
        for (config, mention) in table {
            match visor::Registry::connect(&config).await {
                Err(Error::Config(message)) => assert!(message.contains(mention), "{message}"),
                other => panic!("{config:?}: expected a config error, got {other:?}"),
            }
            match Visor::connect(&config).await {
                Err(Error::Config(message)) => assert!(message.contains(mention), "{message}"),
                other => panic!("{config:?}: expected a config error, got {other:?}"),
            }
        }
        assert_eq!(raw_keys(&t, "/fresh").await, Vec::<String>::new());
    })
    .await;
}
