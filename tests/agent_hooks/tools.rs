//! Hooks a revision does not have are acknowledged without running
//! anything; a unit the agent stops serving runs no more hooks; the hook
//! tools refuse to work outside a hook, with a clear error.

use std::time::Duration;

use visor::model::HookKind;
use visor::registry::BackoffPolicy;
use visor_testkit::cli::{visor, visor_with_env};
use visor_testkit::wait::holds_for;
use visor_testkit::{eventually, within};

use crate::support::{AppSpec, Deployment, LIMIT, SETTLE};

/// Only joined exists; it leaves its context id behind.
const DB_HOOKS: &[(&str, &str)] = &[(
    "db-relation-joined",
    r#"echo "$VISOR_CONTEXT_ID" > "$TEST_DIR/context-$VISOR_UNIT""#,
)];

fn retry() -> BackoffPolicy {
    BackoffPolicy {
        min: Duration::from_millis(100),
        max: Duration::from_millis(500),
        healthy: Duration::MAX,
    }
}

#[tokio::test]
async fn missing_hooks_are_acknowledged_and_the_tools_refuse_to_run_outside_a_hook() {
    within(LIMIT, "peer hooks never settle", async {
        let apps = [AppSpec {
            app: "db",
            proc: "sql",
            units: 2,
            hooks: DB_HOOKS,
        }];
        let d = Deployment::start(&apps, retry()).await;
        let (a, b) = (d.units_of("db")[0].clone(), d.units_of("db")[1].clone());
        d.relate("db-peers", &["db"]).await;
        d.settle("each unit joined the other", |log| {
            [&a, &b].iter().all(|u| {
                log.iter()
                    .any(|r| r.unit == **u && r.kind == HookKind::Joined)
            })
        })
        .await;
        // The missing changed hooks: acknowledged, leaving nothing pending.
        eventually(
            SETTLE,
            "each unit acknowledged the other's changed",
            || async {
                for (unit, other) in [(&a, &b), (&b, &a)] {
                    let state = d.t.visor.relation_state("db-peers", unit).await.ok()?;
                    let done = state.value.members.contains_key(other.as_str())
                        && state.value.changed_pending.is_none();
                    done.then_some(())?;
                }
                Some(())
            },
        )
        .await;
        let missing = [("kind", "changed"), ("result", "missing")];
        assert_eq!(d.metric("visor_agent_hook_runs_total", &missing), 2.0);

        // Outside a hook.
        let run = visor("relation-get").await;
        let message = run.error(1);
        assert!(
            message.contains("not in a relation hook: VISOR_AGENT_SOCKET is not set"),
            "{message}"
        );
        let socket = d.tools_socket.display().to_string();
        let with_context = |context: &str| {
            vec![
                ("VISOR_AGENT_SOCKET", socket.clone()),
                ("VISOR_CONTEXT_ID", context.to_owned()),
            ]
        };
        let env =
            |pairs: &[(&'static str, String)]| -> Vec<(&'static str, String)> { pairs.to_vec() };
        for tool in [
            vec!["relation-list"],
            vec!["relation-get", "-"],
            vec!["relation-set", "a=1"],
        ] {
            let pairs = env(&with_context("no-such-context"));
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let run = visor_with_env(tool.iter().map(|w| (*w).to_owned()).collect(), &pairs).await;
            let message = run.error(1);
            assert!(
                message.contains(
                    "no hook context \"no-such-context\": it is unknown, or its hook has finished"
                ),
                "{}",
                run.context()
            );
        }
        let finished = std::fs::read_to_string(d.dir.path().join(format!("context-{a}")))
            .expect("the joined hook left its context id");
        let pairs = with_context(finished.trim());
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = visor_with_env(vec!["relation-list".to_owned()], &pairs).await;
        assert!(
            run.error(1).contains("its hook has finished"),
            "{}",
            run.context()
        );
        let nowhere = [
            ("VISOR_AGENT_SOCKET", "/nonexistent/tools.sock"),
            ("VISOR_CONTEXT_ID", "x"),
        ];
        let run = visor_with_env(vec!["relation-list".to_owned()], &nowhere).await;
        assert!(
            run.error(1)
                .contains("cannot reach the agent at /nonexistent/tools.sock"),
            "{}",
            run.context()
        );
        visor("relation-set no-equals-sign")
            .await
            .usage_error("KEY=VALUE");

        // A unit no longer served runs nothing more; the one still served does.
        d.stop_serving(&b);
        d.t.visor.remove_relation("db-peers").await.expect("remove");
        eventually(SETTLE, "the served unit runs its way out", || async {
            let hooks = d.t.visor.hooks(Some(&a)).await.ok()?;
            let state = d.t.visor.relation_state("db-peers", &a).await;
            (hooks.items.is_empty() && state.is_err()).then_some(())
        })
        .await;
        holds_for(
            Duration::from_secs(1),
            "the unserved unit's hook is left alone",
            || async {
                d.t.visor
                    .hook(&b, "db-peers")
                    .await
                    .is_ok_and(|hook| hook.value.failed.is_none())
            },
        )
        .await;
        d.stop().await;
    })
    .await;
}
