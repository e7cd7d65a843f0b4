//! The desired-state objects of the typed API against a real etcd: apps, env
//! vars, proc types and revisions — every call, with its not-found and
//! already-exists cases, and a stale app update refused as a conflict.

use std::time::Duration;

use visor::Error;
use visor::registry::Kind;

use visor_testkit::fixtures::{
    app, assert_already_exists, assert_not_found, object, proc_type, raw_keys, raw_revision,
    revision,
};
use visor_testkit::{TestRegistry, within};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn apps_register_get_list_update_and_unregister() {
    within(LIMIT, "etcd start or an app call hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;

        let web = v
            .register_app("web", app("git://web"))
            .await
            .expect("register web");
        assert_eq!(web.key, "/visor/apps/web");
        assert_eq!(web.name(), "web");
        assert_eq!(web.create_revision, web.mod_revision);
        let api = v
            .register_app("api", app("git://api"))
            .await
            .expect("register api");
        assert!(api.mod_revision > web.mod_revision);

        let read = v.app("web").await.expect("get web");
        assert_eq!(read.value, web.value);
        assert_eq!(
            (read.create_revision, read.mod_revision),
            (web.create_revision, web.mod_revision)
        );
        assert!(
            read.revision >= api.mod_revision,
            "read at a revision after both writes"
        );

        let listing = v.apps().await.expect("list apps");
        let names: Vec<&str> = listing.items.iter().map(|a| a.name()).collect();
        assert_eq!(names, ["api", "web"], "apps list in name order");
        assert!(listing.skipped.is_empty());
        assert!(listing.revision >= api.mod_revision);
        assert!(listing.items.iter().all(|a| a.revision == listing.revision));

        // Registering an existing app is refused and writes nothing.
        let before = raw_revision(&t).await;
        assert_already_exists(
            v.register_app("web", app("git://other")).await,
            object(Kind::App, &["web"]),
        );
        assert_eq!(
            raw_revision(&t).await,
            before,
            "a refused registration writes nothing"
        );
        assert_eq!(v.app("web").await.expect("get web").value, web.value);

        let updated = v
            .update_app(&read, app("git://web-2"))
            .await
            .expect("update web");
        assert!(updated.mod_revision > read.mod_revision);
        assert_eq!(updated.create_revision, read.create_revision);
        let reread = v.app("web").await.expect("get updated web");
        assert_eq!(reread.value.repo_url, "git://web-2");
        assert_eq!(reread.mod_revision, updated.mod_revision);

        let removed_at = v.unregister_app("web").await.expect("unregister web");
        assert!(removed_at > updated.mod_revision);
        assert_not_found(v.app("web").await, object(Kind::App, &["web"]));
        assert_not_found(v.unregister_app("web").await, object(Kind::App, &["web"]));
        assert_not_found(
            v.update_app(&reread, app("git://x")).await,
            object(Kind::App, &["web"]),
        );
        assert_not_found(v.app("nope").await, object(Kind::App, &["nope"]));
        let names: Vec<String> = v
            .apps()
            .await
            .expect("list")
            .items
            .iter()
            .map(|a| a.name().to_owned())
            .collect();
        assert_eq!(names, ["api"]);
        assert_eq!(raw_keys(&t, "/visor/apps/").await, ["/visor/apps/api"]);
    })
    .await;
}

#[tokio::test]
async fn a_stale_update_of_an_app_is_a_conflict_and_writes_nothing() {
    within(LIMIT, "etcd start or an app update hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        v.register_app("web", app("git://web"))
            .await
            .expect("register");
        let snapshot = v.app("web").await.expect("read once");

        let first = v
            .update_app(&snapshot, app("git://first"))
            .await
            .expect("first writer wins");
        let before = raw_revision(&t).await;
        match v.update_app(&snapshot, app("git://second")).await {
            Err(Error::Conflict {
                object: o,
                expected,
            }) => {
                assert_eq!(o, object(Kind::App, &["web"]));
                assert_eq!(expected, snapshot.mod_revision);
            }
            other => {
                panic!("second writer from the same snapshot: expected Conflict, got {other:?}")
            }
        }
        assert_eq!(
            raw_revision(&t).await,
            before,
            "the losing update wrote nothing"
        );
        let stored = v.app("web").await.expect("read winner");
        assert_eq!(stored.value, first.value);
        assert_eq!(stored.mod_revision, first.mod_revision);
    })
    .await;
}

#[tokio::test]
async fn env_vars_set_get_list_and_unset() {
    within(LIMIT, "etcd start or an env call hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        assert_not_found(
            v.set_env("web", "PORT", "80").await,
            object(Kind::App, &["web"]),
        );
        assert!(
            raw_keys(&t, "/visor/env/").await.is_empty(),
            "env of a missing app is not written"
        );

        v.register_app("web", app("git://web"))
            .await
            .expect("register");
        let port = v.set_env("web", "PORT", "80").await.expect("set PORT");
        assert_eq!(port.key, "/visor/env/web/PORT");
        assert_eq!(port.value, "80");
        v.set_env("web", "DATABASE_URL", "postgres://db/web")
            .await
            .expect("set DATABASE_URL");

        let read = v.env("web", "PORT").await.expect("get PORT");
        assert_eq!(read.value, "80");
        assert_eq!(read.mod_revision, port.mod_revision);

        let replaced = v.set_env("web", "PORT", "81").await.expect("replace PORT");
        assert!(replaced.mod_revision > port.mod_revision);
        assert_eq!(v.env("web", "PORT").await.expect("get PORT").value, "81");

        let listing = v.envs("web").await.expect("list env");
        let pairs: Vec<(&str, &str)> = listing
            .items
            .iter()
            .map(|e| (e.name(), e.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("DATABASE_URL", "postgres://db/web"), ("PORT", "81")]
        );
        assert!(
            v.envs("other")
                .await
                .expect("env of an unknown app")
                .items
                .is_empty()
        );

        v.unset_env("web", "PORT").await.expect("unset PORT");
        assert_not_found(
            v.env("web", "PORT").await,
            object(Kind::Env, &["web", "PORT"]),
        );
        assert_not_found(
            v.unset_env("web", "PORT").await,
            object(Kind::Env, &["web", "PORT"]),
        );
        assert_eq!(
            raw_keys(&t, "/visor/env/").await,
            ["/visor/env/web/DATABASE_URL"]
        );
    })
    .await;
}

#[tokio::test]
async fn proc_types_register_get_list_and_unregister() {
    within(LIMIT, "etcd start or a proc call hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        assert_not_found(
            v.register_proc("web", "http", proc_type("serve")).await,
            object(Kind::App, &["web"]),
        );
        assert!(raw_keys(&t, "/visor/procs/").await.is_empty());

        v.register_app("web", app("git://web"))
            .await
            .expect("register app");
        let http = v
            .register_proc("web", "http", proc_type("serve"))
            .await
            .expect("register http");
        assert_eq!(http.key, "/visor/procs/web/http");
        v.register_proc("web", "worker", proc_type("work"))
            .await
            .expect("register worker");
        assert_already_exists(
            v.register_proc("web", "http", proc_type("other")).await,
            object(Kind::Proc, &["web", "http"]),
        );

        let read = v.proc("web", "http").await.expect("get http");
        assert_eq!(read.value, http.value);
        let names: Vec<String> = v
            .procs("web")
            .await
            .expect("list")
            .items
            .iter()
            .map(|p| p.name().to_owned())
            .collect();
        assert_eq!(names, ["http", "worker"]);

        v.unregister_proc("web", "http")
            .await
            .expect("unregister http");
        assert_not_found(
            v.proc("web", "http").await,
            object(Kind::Proc, &["web", "http"]),
        );
        assert_not_found(
            v.unregister_proc("web", "http").await,
            object(Kind::Proc, &["web", "http"]),
        );
        assert_eq!(
            raw_keys(&t, "/visor/procs/").await,
            ["/visor/procs/web/worker"]
        );
    })
    .await;
}

#[tokio::test]
async fn revisions_register_get_list_and_unregister() {
    within(LIMIT, "etcd start or a rev call hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        assert_not_found(
            v.register_rev("web", "v1", revision("https://a/1")).await,
            object(Kind::App, &["web"]),
        );
        assert!(raw_keys(&t, "/visor/revs/").await.is_empty());

        v.register_app("web", app("git://web"))
            .await
            .expect("register app");
        let v1 = v
            .register_rev("web", "v1", revision("https://a/1"))
            .await
            .expect("register v1");
        assert_eq!(v1.key, "/visor/revs/web/v1");
        v.register_rev("web", "v2", revision("https://a/2"))
            .await
            .expect("register v2");
        assert_already_exists(
            v.register_rev("web", "v1", revision("https://a/other"))
                .await,
            object(Kind::Rev, &["web", "v1"]),
        );
        assert_eq!(v.rev("web", "v1").await.expect("get v1").value, v1.value);

        let names: Vec<String> = v
            .revs("web")
            .await
            .expect("list")
            .items
            .iter()
            .map(|r| r.name().to_owned())
            .collect();
        assert_eq!(names, ["v1", "v2"]);

        v.unregister_rev("web", "v1").await.expect("unregister v1");
        assert_not_found(v.rev("web", "v1").await, object(Kind::Rev, &["web", "v1"]));
        assert_not_found(
            v.unregister_rev("web", "v1").await,
            object(Kind::Rev, &["web", "v1"]),
        );
        assert_eq!(raw_keys(&t, "/visor/revs/").await, ["/visor/revs/web/v2"]);
    })
    .await;
}
