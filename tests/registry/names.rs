//! Name validation through the API against a real etcd: every call that takes
//! a name refuses an invalid one with `InvalidName` naming the argument, before
//! anything reaches the registry, and accepts every valid form. Env keys have
//! their own rule.

use std::fmt::Debug;
use std::time::Duration;

use visor::Error;
use visor::model::TicketOp;

use visor_testkit::fixtures::{
    app, host, instance, proc_type, raw_keys, raw_revision, revision, seed, ticket,
};
use visor_testkit::{TestRegistry, within};

const LIMIT: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(1);

fn invalid_names() -> Vec<String> {
    [
        "",
        " ",
        "with space",
        "with_underscore",
        "Upper",
        "a/b",
        "tab\there",
        "ünïcode",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([("a".repeat(64))])
    .collect()
}

fn valid_names() -> Vec<String> {
    [
        "valid",
        "valid-with-scores",
        "valid.with.dots",
        "0123456789",
        "a",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([("a".repeat(63))])
    .collect()
}

/// Asserts `result` is `InvalidName` for argument `field` with value `value`.
fn assert_invalid<T: Debug>(result: visor::Result<T>, field: &str, value: &str, call: &str) {
    match result {
        Err(Error::InvalidName(invalid)) => {
            assert_eq!(
                invalid.field, field,
                "{call}({value:?}) blames the wrong argument"
            );
            assert_eq!(invalid.value, value, "{call}");
            let message = Error::InvalidName(invalid).to_string();
            assert!(
                message.contains(&format!("invalid {field} name")),
                "{call}: {message}"
            );
        }
        other => panic!("{call}({value:?}): expected InvalidName for {field}, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_names_are_refused_naming_the_argument_and_nothing_is_written() {
    within(LIMIT, "a refused call hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        seed(&t, "web", "v1", "http").await;
        let inst = v
            .create_instance(instance(Some("h1")))
            .await
            .expect("create instance");
        let tick = v
            .create_ticket("h1", ticket(TicketOp::Start, "i1"))
            .await
            .expect("create ticket");
        let (id, tid) = (inst.name().to_owned(), tick.name().to_owned());
        let keys_before = raw_keys(&t, "/").await;
        let revision_before = raw_revision(&t).await;

        for bad in invalid_names() {
            let b = bad.as_str();
            assert_invalid(
                v.register_app(b, app("git://x")).await,
                "app",
                b,
                "register_app",
            );
            assert_invalid(v.app(b).await, "app", b, "app");
            assert_invalid(v.unregister_app(b).await, "app", b, "unregister_app");
            assert_invalid(v.set_env(b, "PORT", "80").await, "app", b, "set_env");
            assert_invalid(v.envs(b).await, "app", b, "envs");
            assert_invalid(v.unset_env(b, "PORT").await, "app", b, "unset_env");
            assert_invalid(
                v.register_proc(b, "http", proc_type("x")).await,
                "app",
                b,
                "register_proc",
            );
            assert_invalid(
                v.register_proc("web", b, proc_type("x")).await,
                "proc",
                b,
                "register_proc",
            );
            assert_invalid(v.proc("web", b).await, "proc", b, "proc");
            assert_invalid(
                v.unregister_proc("web", b).await,
                "proc",
                b,
                "unregister_proc",
            );
            assert_invalid(
                v.register_rev("web", b, revision("x")).await,
                "rev",
                b,
                "register_rev",
            );
            assert_invalid(v.rev("web", b).await, "rev", b, "rev");
            assert_invalid(v.unregister_rev("web", b).await, "rev", b, "unregister_rev");
            assert_invalid(v.set_scale(b, "v1", "http", 1).await, "app", b, "set_scale");
            assert_invalid(
                v.set_scale("web", b, "http", 1).await,
                "rev",
                b,
                "set_scale",
            );
            assert_invalid(v.set_scale("web", "v1", b, 1).await, "proc", b, "set_scale");
            assert_invalid(v.scale("web", "v1", b).await, "proc", b, "scale");
            assert_invalid(v.scales(Some(b)).await, "app", b, "scales");
            assert_invalid(
                v.register_host(b, host("10.0.0.1"), TTL).await,
                "host",
                b,
                "register_host",
            );
            assert_invalid(v.host(b).await, "host", b, "host");
            assert_invalid(v.instance(b).await, "instance", b, "instance");
            assert_invalid(v.claim_instance(&id, b).await, "host", b, "claim_instance");
            assert_invalid(
                v.start_instance(&id, b, None).await,
                "host",
                b,
                "start_instance",
            );
            assert_invalid(
                v.create_ticket(b, ticket(TicketOp::Start, "i1")).await,
                "host",
                b,
                "create_ticket",
            );
            assert_invalid(v.tickets(Some(b)).await, "host", b, "tickets");
            assert_invalid(
                v.claim_ticket("h1", &tid, b).await,
                "host",
                b,
                "claim_ticket",
            );
        }

        assert_eq!(
            raw_revision(&t).await,
            revision_before,
            "a refused name wrote something"
        );
        assert_eq!(raw_keys(&t, "/").await, keys_before);
        let leases = t.raw().leases().await.expect("list leases");
        assert!(
            leases.leases().is_empty(),
            "a refused host name must not leave a lease behind"
        );
    })
    .await;
}

#[tokio::test]
async fn valid_names_are_accepted_everywhere() {
    within(LIMIT, "a registration hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        for good in valid_names() {
            let g = good.as_str();
            v.register_app(g, app("git://x"))
                .await
                .unwrap_or_else(|e| panic!("app {g:?}: {e}"));
            v.register_rev(g, g, revision("x"))
                .await
                .unwrap_or_else(|e| panic!("rev {g:?}: {e}"));
            v.register_proc(g, g, proc_type("x"))
                .await
                .unwrap_or_else(|e| panic!("proc {g:?}: {e}"));
            let scale = v
                .set_scale(g, g, g, 1)
                .await
                .unwrap_or_else(|e| panic!("scale {g:?}: {e}"));
            assert_eq!(scale.key, format!("/visor/scale/{g}/{g}/{g}"));
            let registration = v
                .register_host(g, host("10.0.0.1"), TTL)
                .await
                .unwrap_or_else(|e| panic!("host {g:?}: {e}"));
            assert_eq!(
                v.host(g).await.expect("read host").key,
                format!("/visor/hosts/{g}")
            );
            registration.deregister().await.expect("deregister");
            v.create_ticket(g, ticket(TicketOp::Stop, g))
                .await
                .unwrap_or_else(|e| panic!("ticket for {g:?}: {e}"));
        }
        let apps: Vec<String> = v
            .apps()
            .await
            .expect("list")
            .items
            .iter()
            .map(|a| a.name().to_owned())
            .collect();
        let mut want = valid_names();
        want.sort();
        assert_eq!(apps, want);
    })
    .await;
}

#[tokio::test]
async fn env_keys_are_letters_digits_and_underscores_not_starting_with_a_digit() {
    within(LIMIT, "an env call hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        v.register_app("web", app("git://web"))
            .await
            .expect("register");
        let before = raw_revision(&t).await;
        for bad in ["", "1A", "9", "A-B", "A B", "A=B", "A.B", "A/B", "É"] {
            assert_invalid(v.set_env("web", bad, "x").await, "env", bad, "set_env");
            assert_invalid(v.env("web", bad).await, "env", bad, "env");
            assert_invalid(v.unset_env("web", bad).await, "env", bad, "unset_env");
        }
        assert_eq!(
            raw_revision(&t).await,
            before,
            "a refused env key wrote something"
        );
        assert!(raw_keys(&t, "/visor/env/").await.is_empty());

        let good = ["PATH", "_X", "database_url", "A1", "lower", "_"];
        for key in good {
            v.set_env("web", key, "x")
                .await
                .unwrap_or_else(|e| panic!("env key {key:?}: {e}"));
            assert_eq!(v.env("web", key).await.expect("read").value, "x");
        }
        assert_eq!(v.envs("web").await.expect("list").items.len(), good.len());
    })
    .await;
}
