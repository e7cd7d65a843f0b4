//! Two related apps: the hooks each unit runs keep Juju's order, a unit's
//! hooks are its endpoint's files with the documented environment, and a
//! changed hook reads the settings the remote unit set in its joined hook.

use std::collections::BTreeSet;
use std::time::Duration;

use visor::agent::StateDirs;
use visor::model::HookKind;
use visor_testkit::{eventually, within};

use crate::support::{Deployment, LIMIT, Ran, SETTLE, assert_juju_order, web_and_db};

const WEB_HOOKS: &[(&str, &str)] = &[
    ("web-relation-joined", ""),
    (
        "web-relation-changed",
        r#"DID="got=$(visor relation-get host)""#,
    ),
    ("web-relation-departed", ""),
    ("web-relation-broken", ""),
];

const DB_HOOKS: &[(&str, &str)] = &[
    (
        "db-sql-relation-joined",
        r#"visor relation-set host="$VISOR_UNIT" role=db
DID="own=$(visor relation-get host "$VISOR_UNIT")""#,
    ),
    ("db-sql-relation-changed", ""),
    ("db-sql-relation-departed", ""),
    ("db-sql-relation-broken", ""),
];

fn fast_retry() -> visor::registry::BackoffPolicy {
    visor::registry::BackoffPolicy {
        min: Duration::from_millis(100),
        max: Duration::from_millis(500),
        healthy: Duration::MAX,
    }
}

fn ran<'a>(log: &'a [Ran], unit: &str, kind: HookKind, remote: &str) -> Vec<&'a Ran> {
    log.iter()
        .filter(|r| r.unit == unit && r.kind == kind && r.remote.as_deref() == Some(remote))
        .collect()
}

#[tokio::test]
async fn related_units_run_their_hooks_in_juju_order_and_see_each_others_settings() {
    within(LIMIT, "relation hooks never settle", async {
        let apps = web_and_db(WEB_HOOKS, 2, DB_HOOKS);
        let d = Deployment::start(&apps, fast_retry()).await;
        let web = d.units_of("web")[0].clone();
        let dbs = d.units_of("db").to_vec();
        d.relate("web-db", &["web", "db:sql"]).await;

        d.settle("web saw each db unit's host; each db unit saw web", |log| {
            dbs.iter().all(|db| {
                let seen = ran(log, &web, HookKind::Changed, db);
                seen.last().is_some_and(|r| r.did == format!("got={db}"))
                    && !ran(log, db, HookKind::Changed, &web).is_empty()
            })
        })
        .await;
        let log = d.log();
        for r in &log {
            let (endpoint, file) = match r.unit == web {
                true => ("web", "web"),
                false => ("db:sql", "db-sql"),
            };
            assert_eq!(r.endpoint, endpoint, "VISOR_RELATION: {r:?}");
            assert_eq!(r.hook, format!("{file}-relation-{}", r.kind), "{r:?}");
        }
        for db in &dbs {
            let joined = ran(&log, db, HookKind::Joined, &web);
            assert_eq!(joined.len(), 1, "{db} joined web once: {log:#?}");
            assert_eq!(
                joined[0].did,
                format!("own={db}"),
                "relation-get of the unit itself shows what it set in this hook"
            );
            assert_eq!(
                joined[0].members,
                std::slice::from_ref(&web),
                "relation-list in joined"
            );
            let settings =
                d.t.visor
                    .settings("web-db", db)
                    .await
                    .expect("db's settings");
            assert_eq!(
                settings.value.0["host"], *db,
                "written with the acknowledgement"
            );
            assert_eq!(settings.value.0["role"], "db");
        }
        let last_of_web = log.iter().rfind(|r| r.unit == web).expect("web ran hooks");
        assert_eq!(
            last_of_web.members, dbs,
            "relation-list: every db unit once joined"
        );
        let state =
            d.t.visor
                .relation_state("web-db", &web)
                .await
                .expect("web's state");
        let members: Vec<String> = state.value.members.keys().cloned().collect();
        assert_eq!(members, dbs);
        // Written just after the acknowledgement.
        eventually(SETTLE, "web's local state is the registry's", || async {
            let local = StateDirs::new(d.dir.path().join("state").join(&web))
                .read_all()
                .ok()?;
            (local.get("web-db")?.state() == state.value).then_some(())
        })
        .await;

        d.t.visor
            .remove_relation("web-db")
            .await
            .expect("remove the relation");
        let units: Vec<String> = std::iter::once(web.clone()).chain(dbs.clone()).collect();
        d.settle("every unit ran broken", |log| {
            units.iter().all(|u| {
                log.iter()
                    .any(|r| r.unit == *u && r.kind == HookKind::Broken)
            })
        })
        .await;
        let log = d.log();
        for unit in &units {
            let own: Vec<Ran> = log.iter().filter(|r| r.unit == *unit).cloned().collect();
            assert_juju_order(unit, &own);
            assert!(
                own.last().is_some_and(|r| r.members.is_empty()),
                "nobody left: {own:#?}"
            );
            assert!(
                !d.dir
                    .path()
                    .join("state")
                    .join(unit)
                    .join("web-db")
                    .exists(),
                "{unit}'s local state of the relation is gone with broken"
            );
            assert!(
                !d.dir
                    .path()
                    .join("state")
                    .join(unit)
                    .join(".web-db.endpoint")
                    .exists(),
                "and so is its endpoint record"
            );
        }
        let departed: BTreeSet<String> = log
            .iter()
            .filter(|r| r.unit == web && r.kind == HookKind::Departed)
            .filter_map(|r| r.remote.clone())
            .collect();
        assert_eq!(
            departed,
            dbs.iter().cloned().collect(),
            "web saw every db unit depart"
        );
        assert_eq!(
            d.metric("visor_agent_hook_runs_total", &[("result", "failed")]),
            0.0
        );
        let ok = d.metric("visor_agent_hook_runs_total", &[("result", "ok")]);
        assert_eq!(
            ok,
            log.len() as f64,
            "every hook ran once and was acknowledged"
        );
        assert_eq!(
            d.metric("visor_agent_hook_duration_seconds", &[]),
            log.len() as f64,
            "every run timed"
        );
        d.stop().await;
    })
    .await;
}
