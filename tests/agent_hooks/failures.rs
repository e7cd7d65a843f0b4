//! A failing hook: its settings are not written, the failure shows on the
//! unit (the hook document, `visor hooks`), it is retried with backoff and
//! written once it succeeds; and a hook withdrawn while it is being retried
//! is retried no more.

use std::time::Duration;

use visor::Error;
use visor::model::HookKind;
use visor::registry::BackoffPolicy;
use visor_testkit::cli::Cli;
use visor_testkit::wait::holds_for;
use visor_testkit::{eventually, within};

use crate::support::{Deployment, LIMIT, SETTLE, web_and_db};

/// Fails the first time (setting a value that must never be written), then
/// succeeds setting another.
const WEB_HOOKS: &[(&str, &str)] = &[
    (
        "web-relation-joined",
        r#"if [ ! -e "$TEST_DIR/failed-once" ]; then
  touch "$TEST_DIR/failed-once"
  visor relation-set attempt=failed
  echo "failing on purpose" >&2
  exit 1
fi
visor relation-set attempt=succeeded"#,
    ),
    ("web-relation-changed", ""),
];

const DB_HOOKS: &[(&str, &str)] = &[("db-relation-changed", "")];

/// Long enough to look at the failure before the retry.
fn slow_retry() -> BackoffPolicy {
    BackoffPolicy {
        min: Duration::from_secs(2),
        max: Duration::from_secs(4),
        healthy: Duration::MAX,
    }
}

#[tokio::test]
async fn a_failed_hook_is_shown_retried_and_its_settings_written_only_once_it_succeeds() {
    within(LIMIT, "a failing hook never recovers", async {
        let apps = web_and_db(WEB_HOOKS, 1, DB_HOOKS);
        let d = Deployment::start(&apps, slow_retry()).await;
        let web = d.units_of("web")[0].clone();
        d.relate("web-db", &["web", "db"]).await;

        let failed = eventually(
            SETTLE,
            "web's joined fails and the failure is recorded",
            || async {
                let hook = d.t.visor.hook(&web, "web-db").await.ok()?;
                hook.value
                    .failed
                    .clone()
                    .map(|failure| (hook.value.hook, failure))
            },
        )
        .await;
        let (hook, failure) = failed;
        assert_eq!(hook.kind, HookKind::Joined);
        assert_eq!(failure.attempts, 1);
        assert!(
            failure
                .reason
                .contains("exited with code 1: failing on purpose"),
            "{failure:?}"
        );
        match d.t.visor.settings("web-db", &web).await {
            Err(Error::NotFound(_)) => {}
            other => panic!("a failed hook's settings are not written: {other:?}"),
        }
        let cli = Cli::new(&d.t);
        let listed = cli.json(&format!("hooks {web}")).await.json();
        assert_eq!(listed[0]["failed"]["attempts"], 1, "{listed}");
        assert_eq!(
            listed[0]["failed"]["reason"],
            failure.reason.as_str(),
            "{listed}"
        );
        let table = cli.run("hooks").await;
        assert!(
            table.ok().contains("failing on purpose"),
            "{}",
            table.context()
        );

        d.settle(
            "web's joined succeeds on a retry, then its changed runs",
            |log| {
                log.iter()
                    .any(|r| r.unit == web && r.kind == HookKind::Changed)
            },
        )
        .await;
        let settings =
            d.t.visor
                .settings("web-db", &web)
                .await
                .expect("web's settings");
        assert_eq!(
            settings.value.0.get("attempt").map(String::as_str),
            Some("succeeded")
        );
        let failed = [("kind", "joined"), ("result", "failed")];
        assert_eq!(d.metric("visor_agent_hook_runs_total", &failed), 1.0);
        let ok = [("kind", "joined"), ("result", "ok")];
        assert_eq!(d.metric("visor_agent_hook_runs_total", &ok), 1.0);
        d.stop().await;
    })
    .await;
}

/// db's joined never succeeds.
const FAILING_DB_HOOKS: &[(&str, &str)] = &[("db-relation-joined", "exit 7")];

#[tokio::test]
async fn a_hook_withdrawn_while_it_is_retried_is_retried_no_more() {
    within(LIMIT, "a withdrawn hook is still retried", async {
        let apps = web_and_db(&[], 1, FAILING_DB_HOOKS);
        let quick = BackoffPolicy {
            min: Duration::from_millis(100),
            max: Duration::from_millis(200),
            healthy: Duration::MAX,
        };
        let d = Deployment::start(&apps, quick).await;
        let db = d.units_of("db")[0].clone();
        d.relate("web-db", &["web", "db"]).await;
        let failed = [("kind", "joined"), ("result", "failed")];
        eventually(SETTLE, "db's joined fails and is retried", || async {
            (d.metric("visor_agent_hook_runs_total", &failed) >= 2.0).then_some(())
        })
        .await;

        // Its instance ends: the controller withdraws its hooks.
        d.t.visor
            .exit_instance(&db, "db-host", None)
            .await
            .expect("the instance exits");
        eventually(SETTLE, "the controller withdraws db's hook", || async {
            let hooks = d.t.visor.hooks(Some(&db)).await.ok()?;
            hooks.items.is_empty().then_some(())
        })
        .await;
        // An attempt running as it went may still count, and no more: retried,
        // it would fail every 100-200ms.
        let withdrawn = d.metric("visor_agent_hook_runs_total", &failed);
        holds_for(
            Duration::from_secs(2),
            "no retry after the withdrawal",
            || async { d.metric("visor_agent_hook_runs_total", &failed) <= withdrawn + 1.0 },
        )
        .await;
        d.stop().await;
    })
    .await;
}
