//! Revision scale factors through the typed API against a real etcd: setting
//! needs the app, revision and proc type (each missing one is named), reads and
//! listings, and the cascades by which unregistering an app, a revision or a
//! proc type removes the factors that depend on it; batch sets and unsets
//! (scale factors, env vars) are all or nothing.

use std::time::Duration;

use visor::registry::Kind;

use visor_testkit::fixtures::{
    self, app, assert_not_found, object, proc_type, raw_keys, raw_revision, revision, seed,
};
use visor_testkit::{TestRegistry, within};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn scale_factors_need_app_rev_and_proc_and_list_per_app() {
    within(LIMIT, "etcd start or a scale call hangs", async {
        let t = TestRegistry::start().await;
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
    within(LIMIT, "etcd start or the app cascade hangs", async {
        let t = TestRegistry::start().await;
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
    within(LIMIT, "etcd start or the rev cascade hangs", async {
        let t = TestRegistry::start().await;
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
    within(LIMIT, "etcd start or the proc cascade hangs", async {
        let t = TestRegistry::start().await;
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
#[tokio::test]
async fn unregister_proc_keeps_the_scale_factors_of_procs_whose_names_extend_it() {
    within(LIMIT, "etcd start or the proc cascade hangs", async {
        let t = TestRegistry::start().await;
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
#[tokio::test]
async fn replacing_sets_report_the_keys_create_revision() {
    within(LIMIT, "etcd start or a set hangs", async {
        let t = TestRegistry::start().await;
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

#[tokio::test]
async fn batch_sets_and_unsets_are_all_or_nothing() {
    within(Duration::from_secs(30), "a batch write hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        fixtures::seed(&t, "web", "v1", "http").await;

        // A missing proc fails the whole scale batch, naming it; nothing is set.
        let before = fixtures::raw_revision(&t).await;
        let refused = v.set_scales("web", "v1", &[("http", 3), ("nope", 1)]).await;
        fixtures::assert_not_found(refused, fixtures::object(Kind::Proc, &["web", "nope"]));
        assert_eq!(
            fixtures::raw_revision(&t).await,
            before,
            "a refused batch writes nothing"
        );

        let set = v
            .set_scales("web", "v1", &[("http", 3)])
            .await
            .expect("set");
        assert_eq!(set[0].value.replicas, 3);

        // Env: all set at one revision; an unset naming a missing key removes none.
        let written = v
            .set_envs("web", &[("A", "1"), ("B", "2")])
            .await
            .expect("set envs");
        assert_eq!(
            written[0].mod_revision, written[1].mod_revision,
            "one transaction"
        );
        let before = fixtures::raw_revision(&t).await;
        let refused = v.unset_envs("web", &["A", "MISSING"]).await;
        fixtures::assert_not_found(refused, fixtures::object(Kind::Env, &["web", "MISSING"]));
        assert_eq!(
            fixtures::raw_revision(&t).await,
            before,
            "a refused unset removes nothing"
        );
        assert_eq!(v.env("web", "A").await.expect("A kept").value, "1");
        v.unset_envs("web", &["A", "B"]).await.expect("unset both");
        assert!(v.envs("web").await.expect("list").items.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_batch_naming_one_object_twice_is_refused_before_anything_is_sent() {
    within(Duration::from_secs(30), "a batch write hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        fixtures::seed(&t, "web", "v1", "http").await;
        v.set_env("web", "A", "0").await.expect("A");
        let before = fixtures::raw_revision(&t).await;

        let invalid = |what: &str, result: Result<(), visor::Error>| match result {
            Err(error @ visor::Error::InvalidArgument { .. }) => error.to_string(),
            other => panic!("{what}: expected InvalidArgument, got {other:?}"),
        };
        let scales = v.set_scales("web", "v1", &[("http", 3), ("http", 4)]).await;
        assert_eq!(
            invalid("set_scales", scales.map(drop)),
            "invalid scale factors: proc http is given more than once"
        );
        let set = v.set_envs("web", &[("A", "1"), ("A", "2")]).await;
        assert_eq!(
            invalid("set_envs", set.map(drop)),
            "invalid env vars: A is given more than once"
        );
        let unset = v.unset_envs("web", &["A", "A"]).await;
        assert_eq!(
            invalid("unset_envs", unset.map(drop)),
            "invalid env vars: A is given more than once"
        );
        assert_eq!(
            fixtures::raw_revision(&t).await,
            before,
            "a refused batch writes nothing"
        );
    })
    .await;
}
