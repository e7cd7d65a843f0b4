//! Relation hooks end to end: the real `visor controller` binary hands
//! hooks to running units of two related apps, a stand-in agent runs and
//! acknowledges them, and every (unit, relation) sees Juju's guarantees —
//! through joins, settings changes, a host's death, the relation's removal
//! and a controller killed mid-stream.

use std::collections::BTreeMap;
use std::time::Duration;

use visor::model::HookKind;
use visor::registry::EndpointSpec;

use visor_testkit::controller::ControllerProcess;
use visor_testkit::relations::{
    HookLog, deploy_app, drive_until, members_of, run_units, setting, versions,
};
use visor_testkit::{TestRegistry, eventually, fixtures, within};

const LIMIT: Duration = Duration::from_secs(120);
const CONVERGE: Duration = Duration::from_secs(30);

fn endpoints(specs: &[&str]) -> Vec<EndpointSpec> {
    specs.iter().map(|s| s.parse().expect("endpoint")).collect()
}

/// Whether every unit of `ours` has acknowledged exactly `theirs`, at the
/// versions their settings are at.
async fn sees(t: &TestRegistry, relation: &str, ours: &[String], theirs: &[String]) -> bool {
    let expected = versions(t, relation, theirs).await;
    for unit in ours {
        if members_of(t, relation, unit).await != expected {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn related_units_join_depart_with_their_host_and_break_with_the_relation() {
    within(LIMIT, "relation hooks never settle", async {
        let t = TestRegistry::start().await;
        let _controller = ControllerProcess::start(&t, "c1");
        let _web_hosts = deploy_app(&t, "web", "http", &["w1", "w2", "w3"]).await;
        let mut db_hosts = deploy_app(&t, "db", "sql", &["d1", "d2"]).await;
        let web = run_units(&t, "web", "http", 3).await;
        let db = run_units(&t, "db", "sql", 2).await;
        t.visor
            .set_settings("webdb", &db[0], &setting("10.0.0.1"))
            .await
            .expect_err("no settings before the relation exists");
        t.visor
            .add_relation("webdb", &endpoints(&["web", "db:sql"]))
            .await
            .expect("relation");
        t.visor
            .set_settings("webdb", &db[0], &setting("10.0.0.1"))
            .await
            .expect("settings");

        let mut log = HookLog::default();
        drive_until(
            &t,
            &mut log,
            CONVERGE,
            "every unit sees the other side",
            || async { sees(&t, "webdb", &web, &db).await && sees(&t, "webdb", &db, &web).await },
        )
        .await;
        // In the order the controller saw them run, which the instance
        // cache's lag behind the relation's can change.
        let mut every_db_unit = db.clone();
        every_db_unit.sort();
        for unit in &web {
            let mut joined: Vec<_> = log
                .of(unit, "webdb")
                .into_iter()
                .filter(|h| h.kind == HookKind::Joined)
                .filter_map(|h| h.remote_unit.clone())
                .collect();
            joined.sort();
            assert_eq!(joined, every_db_unit, "{unit} joined every db unit, once");
        }
        for unit in &db {
            let joined = log
                .of(unit, "webdb")
                .iter()
                .filter(|h| h.kind == HookKind::Joined)
                .count();
            assert_eq!(joined, 3, "{unit} joined every web unit, once");
        }

        // A settings change reaches every unit on the other side as one changed.
        t.visor
            .set_settings("webdb", &db[1], &setting("10.0.0.2"))
            .await
            .expect("settings");
        drive_until(
            &t,
            &mut log,
            CONVERGE,
            "the new version is seen",
            || async { sees(&t, "webdb", &web, &db).await },
        )
        .await;

        // db[0]'s host dies: every web unit gets departed for it.
        let gone = db[0].clone();
        let on_d1 = t
            .visor
            .instance(&gone)
            .await
            .expect("instance")
            .value
            .host
            .expect("placed")
            .to_string();
        let index = if on_d1 == "d1" { 0 } else { 1 };
        let dead = db_hosts.remove(index);
        t.raw().lease_revoke(dead.lease_id()).await.expect("revoke");
        let survivors = vec![db[1].clone()];
        drive_until(
            &t,
            &mut log,
            CONVERGE,
            "web units see db's survivor only",
            || async {
                sees(&t, "webdb", &web, &survivors).await
                    && members_of(&t, "webdb", &gone).await.is_empty()
            },
        )
        .await;
        for unit in &web {
            let departed = log
                .of(unit, "webdb")
                .iter()
                .any(|h| h.kind == HookKind::Departed && h.remote_unit.as_ref() == Some(&gone));
            assert!(departed, "{unit} got departed for {gone}");
        }

        // The relation goes: departed for each member, then broken, last.
        t.visor.remove_relation("webdb").await.expect("remove");
        let remaining: Vec<String> = web.iter().chain(&survivors).cloned().collect();
        drive_until(
            &t,
            &mut log,
            CONVERGE,
            "every unit is out of the relation",
            || async {
                for unit in &remaining {
                    if t.visor.relation_state("webdb", unit).await.is_ok() {
                        return false;
                    }
                }
                true
            },
        )
        .await;
        for unit in &remaining {
            let hooks = log.of(unit, "webdb");
            let last = hooks.last().expect("hooks");
            assert_eq!(last.kind, HookKind::Broken, "{unit}: {hooks:?}");
        }
        for unit in &web {
            let hooks = log.of(unit, "webdb");
            let departed_before_broken = hooks[hooks.len() - 2];
            assert_eq!(departed_before_broken.kind, HookKind::Departed);
            assert_eq!(departed_before_broken.remote_unit.as_ref(), Some(&db[1]));
        }
        log.check_guarantees();
        // Nothing of the relation is left behind.
        eventually(
            CONVERGE,
            "settings of the removed relation are cleared",
            || async {
                fixtures::raw_keys(&t, "/visor/settings/")
                    .await
                    .is_empty()
                    .then_some(())
            },
        )
        .await;
        assert!(fixtures::raw_keys(&t, "/visor/hooks/").await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_peer_relation_joins_every_other_unit_of_the_app() {
    within(LIMIT, "peer hooks never settle", async {
        let t = TestRegistry::start().await;
        let _controller = ControllerProcess::start(&t, "c1");
        let _hosts = deploy_app(&t, "db", "sql", &["d1", "d2"]).await;
        let db = run_units(&t, "db", "sql", 3).await;
        t.visor
            .add_relation("db-peers", &endpoints(&["db"]))
            .await
            .expect("relation");
        let mut log = HookLog::default();
        drive_until(
            &t,
            &mut log,
            CONVERGE,
            "each unit sees the two others",
            || async {
                for unit in &db {
                    let others: Vec<String> = db.iter().filter(|u| *u != unit).cloned().collect();
                    if members_of(&t, "db-peers", unit).await
                        != versions(&t, "db-peers", &others).await
                    {
                        return false;
                    }
                }
                true
            },
        )
        .await;
        for unit in &db {
            let joined: Vec<_> = log
                .of(unit, "db-peers")
                .iter()
                .filter(|h| h.kind == HookKind::Joined)
                .filter_map(|h| h.remote_unit.clone())
                .collect();
            assert_eq!(joined.len(), 2, "{unit}: {joined:?}");
            assert!(!joined.contains(unit), "{unit} never joins itself");
        }
        log.check_guarantees();
    })
    .await;
}

#[tokio::test]
async fn a_controller_killed_mid_stream_is_replaced_without_a_lost_or_repeated_hook() {
    within(LIMIT, "hooks never settle across the restart", async {
        let t = TestRegistry::start().await;
        let mut first = ControllerProcess::start(&t, "c1");
        let _web_hosts = deploy_app(&t, "web", "http", &["w1", "w2"]).await;
        let _db_hosts = deploy_app(&t, "db", "sql", &["d1", "d2"]).await;
        let web = run_units(&t, "web", "http", 4).await;
        let db = run_units(&t, "db", "sql", 4).await;
        t.visor
            .add_relation("webdb", &endpoints(&["web", "db"]))
            .await
            .expect("relation");
        let mut log = HookLog::default();
        // Part of the way: some hooks acknowledged, some outstanding.
        let deadline = tokio::time::Instant::now() + CONVERGE;
        while log.delivered.len() < 10 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "hooks start flowing"
            );
            if log.acknowledge_all(&t.visor).await == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for (i, unit) in db.iter().enumerate() {
            t.visor
                .set_settings("webdb", unit, &setting(&format!("10.0.1.{i}")))
                .await
                .expect("settings");
        }
        first.kill();
        let _second = ControllerProcess::start(&t, "c2");
        drive_until(
            &t,
            &mut log,
            CONVERGE,
            "both sides see each other",
            || async { sees(&t, "webdb", &web, &db).await && sees(&t, "webdb", &db, &web).await },
        )
        .await;
        log.check_guarantees();
        // Each unit joined each remote exactly once over both leaders.
        let mut joins: BTreeMap<(String, String), usize> = BTreeMap::new();
        for delivered in &log.delivered {
            if delivered.hook.kind == HookKind::Joined {
                let remote = delivered.hook.remote_unit.clone().expect("remote");
                *joins.entry((delivered.unit.clone(), remote)).or_default() += 1;
            }
        }
        assert_eq!(joins.len(), 2 * 4 * 4, "{joins:?}");
        assert!(joins.values().all(|&n| n == 1), "{joins:?}");
    })
    .await;
}
