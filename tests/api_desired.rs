//! The desired-state half of the typed API against a real etcd: apps, env
//! vars, proc types, revisions and scale factors — every call, its not-found
//! and already-exists cases, and the cascades of the unregister calls.

mod common;
mod fixtures;

use std::time::Duration;

use fixtures::{app, proc_type, raw_keys, raw_revision, revision, seed};
use visor::Error;
use visor::registry::{Kind, ObjectRef};

const LIMIT: Duration = Duration::from_secs(30);

fn object(kind: Kind, parts: &[&str]) -> ObjectRef {
    ObjectRef::new(kind, parts)
}

fn assert_not_found<T: std::fmt::Debug>(result: visor::Result<T>, expected: ObjectRef) {
    match result {
        Err(Error::NotFound(found)) => assert_eq!(found, expected),
        other => panic!("expected NotFound({expected}), got {other:?}"),
    }
}

fn assert_already_exists<T: std::fmt::Debug>(result: visor::Result<T>, expected: ObjectRef) {
    match result {
        Err(Error::AlreadyExists(found)) => assert_eq!(found, expected),
        other => panic!("expected AlreadyExists({expected}), got {other:?}"),
    }
}

#[tokio::test]
async fn apps_register_get_list_update_and_unregister() {
    common::within(LIMIT, "etcd start or an app call hangs", async {
        let t = common::TestRegistry::start().await;
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
    common::within(LIMIT, "etcd start or an app update hangs", async {
        let t = common::TestRegistry::start().await;
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
    common::within(LIMIT, "etcd start or an env call hangs", async {
        let t = common::TestRegistry::start().await;
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
    common::within(LIMIT, "etcd start or a proc call hangs", async {
        let t = common::TestRegistry::start().await;
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
    common::within(LIMIT, "etcd start or a rev call hangs", async {
        let t = common::TestRegistry::start().await;
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

#[tokio::test]
async fn scale_factors_need_app_rev_and_proc_and_list_per_app() {
    common::within(LIMIT, "etcd start or a scale call hangs", async {
        let t = common::TestRegistry::start().await;
        let v = &t.visor;

        // Each missing dependency is named, in order app, rev, proc; nothing is written.
        assert_not_found(
            v.set_scale("web", "v1", "http", 2).await,
            object(Kind::App, &["web"]),
        );
        v.register_app("web", app("git://web"))
            .await
            .expect("register app");
        assert_not_found(
            v.set_scale("web", "v1", "http", 2).await,
            object(Kind::Rev, &["web", "v1"]),
        );
        v.register_rev("web", "v1", revision("https://a/1"))
            .await
            .expect("register rev");
        assert_not_found(
            v.set_scale("web", "v1", "http", 2).await,
            object(Kind::Proc, &["web", "http"]),
        );
        assert!(
            raw_keys(&t, "/visor/scale/").await.is_empty(),
            "no scale factor without its dependencies"
        );
        assert_not_found(
            v.scale("web", "v1", "http").await,
            object(Kind::Scale, &["web", "v1", "http"]),
        );
        v.register_proc("web", "http", proc_type("serve"))
            .await
            .expect("register proc");

        let set = v
            .set_scale("web", "v1", "http", 2)
            .await
            .expect("set scale");
        assert_eq!(set.key, "/visor/scale/web/v1/http");
        assert_eq!(set.value.replicas, 2);
        let read = v.scale("web", "v1", "http").await.expect("get scale");
        assert_eq!(
            (read.value.replicas, read.mod_revision),
            (2, set.mod_revision)
        );

        let reset = v
            .set_scale("web", "v1", "http", 5)
            .await
            .expect("replace scale");
        assert!(reset.mod_revision > set.mod_revision);
        assert_eq!(
            v.scale("web", "v1", "http")
                .await
                .expect("get")
                .value
                .replicas,
            5
        );

        seed(&t, "api", "v9", "grpc").await;
        v.set_scale("api", "v9", "grpc", 1)
            .await
            .expect("set api scale");

        let all = v.scales(None).await.expect("list all scales");
        let factors: Vec<(String, String, String, u32)> = all
            .items
            .iter()
            .map(|s| {
                (
                    s.value.app.clone(),
                    s.value.rev.clone(),
                    s.value.proc.clone(),
                    s.value.replicas,
                )
            })
            .collect();
        assert_eq!(
            factors,
            [
                ("api".into(), "v9".into(), "grpc".into(), 1),
                ("web".into(), "v1".into(), "http".into(), 5)
            ]
        );
        let web = v.scales(Some("web")).await.expect("list web scales");
        assert_eq!(web.items.len(), 1);
        assert_eq!(web.items[0].value.replicas, 5);
        assert!(
            v.scales(Some("nope"))
                .await
                .expect("list of an unknown app")
                .items
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn unregister_app_removes_env_procs_revs_and_scale_in_one_go() {
    common::within(LIMIT, "etcd start or the app cascade hangs", async {
        let t = common::TestRegistry::start().await;
        let v = &t.visor;
        for app_name in ["web", "web2"] {
            seed(&t, app_name, "v1", "http").await;
            v.set_env(app_name, "PORT", "80").await.expect("set env");
            v.set_scale(app_name, "v1", "http", 3)
                .await
                .expect("set scale");
        }

        let removed_at = v.unregister_app("web").await.expect("unregister web");
        for prefix in [
            "/visor/apps/web",
            "/visor/env/web/",
            "/visor/procs/web/",
            "/visor/revs/web/",
            "/visor/scale/web/",
        ] {
            let left: Vec<String> = raw_keys(&t, prefix)
                .await
                .into_iter()
                .filter(|k| !k.contains("web2"))
                .collect();
            assert!(
                left.is_empty(),
                "unregister_app left {left:?} under {prefix}"
            );
        }
        // One transaction: everything went at the same revision.
        assert_eq!(raw_revision(&t).await, removed_at);
        // App web2, whose name extends web, is untouched.
        let kept = raw_keys(&t, "/visor/").await;
        for key in [
            "/visor/apps/web2",
            "/visor/env/web2/PORT",
            "/visor/procs/web2/http",
            "/visor/revs/web2/v1",
            "/visor/scale/web2/v1/http",
        ] {
            assert!(
                kept.iter().any(|k| k == key),
                "{key} was removed with app web"
            );
        }
        assert!(v.envs("web").await.expect("list").items.is_empty());
        assert!(v.procs("web").await.expect("list").items.is_empty());
        assert!(v.revs("web").await.expect("list").items.is_empty());
        assert!(v.scales(Some("web")).await.expect("list").items.is_empty());
    })
    .await;
}

#[tokio::test]
async fn unregister_rev_removes_only_its_own_scale_factors() {
    common::within(LIMIT, "etcd start or the rev cascade hangs", async {
        let t = common::TestRegistry::start().await;
        let v = &t.visor;
        seed(&t, "web", "v1", "http").await;
        v.register_rev("web", "v10", revision("https://a/10"))
            .await
            .expect("register v10");
        v.register_proc("web", "worker", proc_type("work"))
            .await
            .expect("register worker");
        for (rev, proc) in [("v1", "http"), ("v1", "worker"), ("v10", "http")] {
            v.set_scale("web", rev, proc, 1).await.expect("set scale");
        }

        v.unregister_rev("web", "v1").await.expect("unregister v1");
        assert_eq!(
            raw_keys(&t, "/visor/scale/").await,
            ["/visor/scale/web/v10/http"]
        );
        assert_not_found(
            v.scale("web", "v1", "http").await,
            object(Kind::Scale, &["web", "v1", "http"]),
        );
    })
    .await;
}

#[tokio::test]
async fn unregister_proc_removes_the_scale_factors_naming_it() {
    common::within(LIMIT, "etcd start or the proc cascade hangs", async {
        let t = common::TestRegistry::start().await;
        let v = &t.visor;
        seed(&t, "web", "v1", "http").await;
        v.register_rev("web", "v2", revision("https://a/2"))
            .await
            .expect("register v2");
        v.register_proc("web", "worker", proc_type("work"))
            .await
            .expect("register worker");
        for (rev, proc) in [("v1", "http"), ("v2", "http"), ("v1", "worker")] {
            v.set_scale("web", rev, proc, 1).await.expect("set scale");
        }

        let removed_at = v
            .unregister_proc("web", "http")
            .await
            .expect("unregister http");
        assert_eq!(
            raw_keys(&t, "/visor/scale/").await,
            ["/visor/scale/web/v1/worker"]
        );
        assert_eq!(
            raw_revision(&t).await,
            removed_at,
            "proc and its scale factors go in one transaction"
        );
    })
    .await;
}

/// Scale keys are deleted as prefixes, so a proc whose name is a prefix of
/// another's must not take the other's scale factors with it.
#[ignore = "bug in src/registry/api/procs.rs: unregister_proc deletes scale keys as prefixes"]
#[tokio::test]
async fn unregister_proc_keeps_the_scale_factors_of_procs_whose_names_extend_it() {
    common::within(LIMIT, "etcd start or the proc cascade hangs", async {
        let t = common::TestRegistry::start().await;
        let v = &t.visor;
        seed(&t, "web", "v1", "http").await;
        v.register_proc("web", "http-admin", proc_type("admin"))
            .await
            .expect("register http-admin");
        v.set_scale("web", "v1", "http", 1)
            .await
            .expect("scale http");
        v.set_scale("web", "v1", "http-admin", 1)
            .await
            .expect("scale http-admin");

        v.unregister_proc("web", "http")
            .await
            .expect("unregister http");
        assert_eq!(
            raw_keys(&t, "/visor/scale/").await,
            ["/visor/scale/web/v1/http-admin"],
            "unregistering proc http must not remove the scale factor of proc http-admin"
        );
    })
    .await;
}

/// `Versioned::create_revision` is "the revision that created the key"; a set
/// that replaces a value must report the key's creation, not 0.
#[ignore = "bug in src/registry/store.rs: write_object returns create_revision 0 for replacing sets"]
#[tokio::test]
async fn replacing_sets_report_the_keys_create_revision() {
    common::within(LIMIT, "etcd start or a set hangs", async {
        let t = common::TestRegistry::start().await;
        let v = &t.visor;
        seed(&t, "web", "v1", "http").await;
        let env = v.set_env("web", "PORT", "80").await.expect("set env");
        let scale = v
            .set_scale("web", "v1", "http", 1)
            .await
            .expect("set scale");
        let env_again = v.set_env("web", "PORT", "81").await.expect("replace env");
        let scale_again = v
            .set_scale("web", "v1", "http", 2)
            .await
            .expect("replace scale");
        assert_eq!(
            v.env("web", "PORT").await.expect("read").create_revision,
            env.create_revision
        );
        assert_eq!(
            env_again.create_revision, env.create_revision,
            "set_env over an existing value"
        );
        assert_eq!(
            scale_again.create_revision, scale.create_revision,
            "set_scale over an existing factor"
        );
    })
    .await;
}
