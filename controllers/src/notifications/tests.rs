//! Table tests of the services decision: every way an endpoint lives,
//! leaves cleanly or dies, with and without a tracked record, and the
//! degraded / restored edges of critical services.

use super::*;
use crate::testing::name;

fn endpoint(service: &str, id: &str) -> EndpointView {
    EndpointView {
        service: name(service),
        id: name(id),
        hostname: format!("{id}.example"),
        incarnation: 1,
        departed: false,
        departed_at: None,
        host: Some(name("h1")),
        instance: Some(name("i1")),
    }
}

fn snapshot(endpoints: Vec<EndpointView>, tracked: &[(&str, &str)]) -> ServicesSnapshot {
    ServicesSnapshot {
        services: Vec::new(),
        endpoints,
        tracked: tracked
            .iter()
            .map(|&(s, id)| ((name(s), name(id)), (format!("{id}.example"), 1)))
            .collect(),
        live_hosts: [name("h1")].into_iter().collect(),
        lost_instances: BTreeSet::new(),
        sweep_before: Some(crate::testing::at(100)),
    }
}

fn critical(service: &str, min_endpoints: u32, degraded: bool) -> ServiceView {
    ServiceView {
        name: name(service),
        critical: true,
        min_endpoints,
        degraded,
    }
}

/// One letter per action, to keep the table readable.
fn shape(actions: &[ServiceAction]) -> Vec<String> {
    actions
        .iter()
        .map(|action| match action {
            ServiceAction::Track { id, .. } => format!("track {id}"),
            ServiceAction::Forget {
                id, tracked, sweep, ..
            } => format!("forget {id} tracked={tracked} sweep={sweep}"),
            ServiceAction::Down {
                id,
                reason,
                tracked,
                present,
                ..
            } => format!("down {id} ({reason}) tracked={tracked} present={present}"),
            ServiceAction::Degraded {
                service,
                live,
                minimum,
            } => {
                format!("degraded {service} {live}/{minimum}")
            }
            ServiceAction::Restored {
                service,
                live,
                minimum,
            } => {
                format!("restored {service} {live}/{minimum}")
            }
        })
        .collect()
}

#[test]
fn each_endpoint_is_tracked_forgotten_or_reported_down_as_its_state_says() {
    let departed = EndpointView {
        departed: true,
        ..endpoint("db", "e2")
    };
    let on_dead_host = EndpointView {
        host: Some(name("h9")),
        ..endpoint("db", "e3")
    };
    let of_lost_instance = EndpointView {
        instance: Some(name("lost-1")),
        ..endpoint("db", "e4")
    };
    let mut state = snapshot(
        vec![
            endpoint("db", "e1"),
            departed,
            on_dead_host,
            of_lost_instance,
            endpoint("db", "e6"),
        ],
        &[("db", "e2"), ("db", "e3"), ("db", "e5"), ("db", "e6")],
    );
    state.lost_instances.insert(name("lost-1"));
    assert_eq!(
        shape(&plan_services(&state)),
        [
            "track e1",
            "forget e2 tracked=true sweep=true",
            "down e3 (its host h9 is down) tracked=true present=true",
            "down e4 (its instance lost-1 is lost) tracked=false present=true",
            "down e5 (its registration expired or was deleted) tracked=true present=false",
        ],
        "e6 is live and tracked: nothing to do"
    );
}

#[test]
fn a_tombstone_is_kept_until_its_sweep_time_and_an_untracked_vanished_endpoint_is_unknown() {
    let recent = EndpointView {
        departed: true,
        departed_at: Some(crate::testing::at(100)),
        ..endpoint("db", "e1")
    };
    let old = EndpointView {
        departed_at: Some(crate::testing::at(99)),
        ..recent.clone()
    };
    // Tracked: forgotten at once; the tombstone stays while recent.
    let state = snapshot(vec![recent.clone()], &[("db", "e1")]);
    assert_eq!(
        shape(&plan_services(&state)),
        ["forget e1 tracked=true sweep=false"]
    );
    assert!(plan_services(&snapshot(vec![recent], &[])).is_empty());
    let state = snapshot(vec![old], &[]);
    assert_eq!(
        shape(&plan_services(&state)),
        ["forget e1 tracked=false sweep=true"]
    );
    // Never seen alive, and gone: there is nothing to report it from.
    assert!(plan_services(&snapshot(Vec::new(), &[])).is_empty());
}

#[test]
fn applying_the_plan_leaves_nothing_to_report() {
    let state = snapshot(vec![endpoint("db", "e1")], &[("db", "e2")]);
    let plan = plan_services(&state);
    assert_eq!(plan.len(), 2);
    // After: e1 tracked, e2's record consumed by its notification.
    let after = snapshot(vec![endpoint("db", "e1")], &[("db", "e1")]);
    assert!(plan_services(&after).is_empty());
}

#[test]
fn a_key_re_created_under_the_same_id_is_a_death_of_the_tracked_incarnation() {
    let reborn = EndpointView {
        incarnation: 7,
        ..endpoint("db", "e1")
    };
    let state = snapshot(vec![reborn], &[("db", "e1")]);
    assert_eq!(
        shape(&plan_services(&state)),
        [
            "down e1 (its registration expired or was deleted) tracked=true present=false",
            "track e1",
        ]
    );
}

#[test]
fn a_critical_service_degrades_below_its_minimum_and_is_restored_once_back() {
    let table = [
        // (live endpoints, minimum, persisted degraded, expected)
        (1, 2, false, vec!["degraded db 1/2"]),
        (1, 2, true, vec![]),
        (2, 2, true, vec!["restored db 2/2"]),
        (2, 2, false, vec![]),
        (0, 1, false, vec!["degraded db 0/1"]),
    ];
    for (live, minimum, degraded, expected) in table {
        let endpoints = (0..live)
            .map(|i| endpoint("db", &format!("e{i}")))
            .collect();
        let tracked: Vec<(String, String)> = (0..live)
            .map(|i| ("db".to_owned(), format!("e{i}")))
            .collect();
        let tracked: Vec<(&str, &str)> = tracked
            .iter()
            .map(|(s, i)| (s.as_str(), i.as_str()))
            .collect();
        let mut state = snapshot(endpoints, &tracked);
        state.services.push(critical("db", minimum, degraded));
        assert_eq!(
            shape(&plan_services(&state)),
            expected,
            "{live} live of {minimum}, degraded={degraded}"
        );
    }
}

#[test]
fn a_death_counts_against_the_minimum_in_the_same_pass_after_the_down() {
    let mut state = snapshot(vec![endpoint("db", "e1")], &[("db", "e1"), ("db", "e2")]);
    state.services.push(critical("db", 2, false));
    assert_eq!(
        shape(&plan_services(&state)),
        [
            "down e2 (its registration expired or was deleted) tracked=true present=false",
            "degraded db 1/2",
        ]
    );
    // A service that is not critical never degrades.
    let mut relaxed = state.clone();
    relaxed.services[0].critical = false;
    assert_eq!(plan_services(&relaxed).len(), 1);
}

#[test]
fn actions_are_ordered_by_service_then_endpoint() {
    let state = snapshot(Vec::new(), &[("web", "a"), ("db", "z"), ("db", "b")]);
    let order: Vec<String> = plan_services(&state)
        .iter()
        .map(|action| match action {
            ServiceAction::Down { service, id, .. } => format!("{service}/{id}"),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(order, ["db/b", "db/z", "web/a"]);
}

#[test]
fn a_notification_document_round_trips_with_a_kebab_case_kind() {
    let notification = Notification {
        seq: 7,
        kind: NotificationKind::ServiceDown,
        service: Some(name("db")),
        endpoint: Some("e1".into()),
        hostname: Some("e1.example".into()),
        app: None,
        revision: None,
        reason: DownReason::Vanished.to_string(),
        detected_at: crate::testing::at(0),
    };
    let json = serde_json::to_value(&notification).expect("encode");
    assert_eq!(json["kind"], "service-down");
    let back: Notification = serde_json::from_value(json).expect("decode");
    assert_eq!(back, notification);

    // Documents written before rollouts were notified have no app fields.
    let older = r#"{"seq":7,"kind":"service-down","service":"db","endpoint":"e1","hostname":"e1.example","reason":"its registration expired or was deleted","detected_at":"1970-01-01T00:00:00Z"}"#;
    let back: Notification = serde_json::from_str(older).expect("decode an older document");
    assert_eq!(back, notification);

    let rollout = Notification {
        kind: NotificationKind::RolloutFailed,
        service: None,
        endpoint: None,
        hostname: None,
        app: Some(name("web")),
        revision: Some(name("v3")),
        ..notification
    };
    let json = serde_json::to_value(&rollout).expect("encode");
    assert_eq!(
        (&json["kind"], &json["app"], &json["revision"]),
        (&"rollout-failed".into(), &"web".into(), &"v3".into())
    );
    let back: Notification = serde_json::from_value(json).expect("decode");
    assert_eq!(back, rollout);
}

/// The state after the actions: tracked records, endpoint keys and statuses
/// changed as the controller's transactions change them.
fn apply(state: &ServicesSnapshot, plan: &[ServiceAction]) -> ServicesSnapshot {
    let mut after = state.clone();
    for action in plan {
        match action {
            ServiceAction::Track {
                service,
                id,
                hostname,
                incarnation,
            } => {
                after.tracked.insert(
                    (service.clone(), id.clone()),
                    (hostname.clone(), *incarnation),
                );
            }
            ServiceAction::Forget {
                service, id, sweep, ..
            } => {
                after.tracked.remove(&(service.clone(), id.clone()));
                if *sweep {
                    after
                        .endpoints
                        .retain(|e| !(e.service == *service && e.id == *id));
                }
            }
            ServiceAction::Down {
                service,
                id,
                present,
                ..
            } => {
                after.tracked.remove(&(service.clone(), id.clone()));
                if *present {
                    after
                        .endpoints
                        .retain(|e| !(e.service == *service && e.id == *id));
                }
            }
            ServiceAction::Degraded { service, .. } | ServiceAction::Restored { service, .. } => {
                for view in after.services.iter_mut().filter(|s| s.name == *service) {
                    view.degraded = matches!(action, ServiceAction::Degraded { .. });
                }
            }
        }
    }
    after
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    const SERVICES: [&str; 2] = ["db", "web"];
    const IDS: [&str; 4] = ["a", "b", "c", "d"];

    fn arb_state() -> impl Strategy<Value = ServicesSnapshot> {
        let endpoint_spec = (
            0..2usize,
            0..4usize,
            any::<bool>(),
            0..3usize,
            any::<bool>(),
        );
        (
            proptest::collection::vec(endpoint_spec, 0..8),
            proptest::collection::vec((0..2usize, 0..4usize), 0..8),
            proptest::collection::vec((any::<bool>(), 0..3u32, any::<bool>()), 2),
        )
            .prop_map(|(endpoints, tracked, services)| {
                let mut state = snapshot(Vec::new(), &[]);
                for (s, i, departed, host, lost) in endpoints {
                    let mut view = endpoint(SERVICES[s], IDS[i]);
                    view.departed = departed;
                    view.departed_at = Some(crate::testing::at(if lost { 50 } else { 150 }));
                    view.host = Some(name(["h1", "h2", "h9"][host]));
                    if lost {
                        view.instance = Some(name("lost-1"));
                    }
                    state
                        .endpoints
                        .retain(|e| !(e.service == view.service && e.id == view.id));
                    state.endpoints.push(view);
                }
                for (s, i) in tracked {
                    state.tracked.insert(
                        (name(SERVICES[s]), name(IDS[i])),
                        ("t".into(), 1 + (i as i64 % 2)),
                    );
                }
                state.live_hosts.insert(name("h2"));
                state.lost_instances.insert(name("lost-1"));
                for (&service, (critical, min_endpoints, degraded)) in SERVICES.iter().zip(services)
                {
                    state.services.push(ServiceView {
                        name: name(service),
                        critical,
                        min_endpoints,
                        degraded,
                    });
                }
                state
            })
    }

    proptest! {
        #[test]
        fn applying_a_plan_leaves_nothing_to_do_and_reports_each_death_once(state in arb_state()) {
            let plan = plan_services(&state);
            let downs: Vec<&ServiceAction> = plan.iter().filter(|a| matches!(a, ServiceAction::Down { .. })).collect();
            let mut seen = BTreeSet::new();
            for down in &downs {
                // One death per incarnation: the tracked one, and the current key's.
                if let ServiceAction::Down { service, id, present, .. } = down {
                    prop_assert!(seen.insert((service.clone(), id.clone(), *present)), "reported twice: {down:?}");
                }
            }
            let after = apply(&state, &plan);
            let again = plan_services(&after);
            prop_assert!(again.is_empty(), "left to do: {again:?}");
        }
    }
}

#[test]
fn notifications_expire_beyond_the_count_kept_or_the_age_kept() {
    let retention = Retention {
        last: 10,
        keep: 3,
        older_than: crate::testing::at(100),
    };
    let (old, at_cutoff, recent) = (
        Some(crate::testing::at(99)),
        Some(crate::testing::at(100)),
        Some(crate::testing::at(150)),
    );
    let table = [
        (1, recent, true),
        (7, recent, true),
        (7, None, true),
        (8, recent, false),
        (8, at_cutoff, false),
        (8, old, true),
        (10, old, true),
        (10, None, false),
        (11, recent, false),
    ];
    for (seq, detected_at, expires) in table {
        assert_eq!(
            retention.expires(seq, detected_at),
            expires,
            "seq {seq}, detected {detected_at:?}"
        );
    }
    let keep_all = Retention {
        keep: u64::MAX,
        ..retention
    };
    assert!(
        !keep_all.expires(1, recent),
        "a count that does not overflow"
    );
}

#[test]
fn reporting_actions_say_what_they_post_and_bookkeeping_posts_nothing() {
    let web = name("web");
    let table = [
        (
            ServiceAction::Track {
                service: web.clone(),
                id: name("e1"),
                hostname: "e1.example".into(),
                incarnation: 1,
            },
            None,
        ),
        (
            ServiceAction::Forget {
                service: web.clone(),
                id: name("e1"),
                tracked: true,
                sweep: true,
            },
            None,
        ),
        (
            ServiceAction::Down {
                service: web.clone(),
                id: name("e1"),
                hostname: "e1.example".into(),
                reason: DownReason::HostDown(name("h1")),
                tracked: true,
                present: true,
            },
            Some((NotificationKind::ServiceDown, "its host h1 is down")),
        ),
        (
            ServiceAction::Degraded {
                service: web.clone(),
                live: 0,
                minimum: 1,
            },
            Some((
                NotificationKind::ServiceDegraded,
                "0 live endpoints, fewer than its minimum of 1",
            )),
        ),
        (
            ServiceAction::Restored {
                service: web,
                live: 2,
                minimum: 2,
            },
            Some((
                NotificationKind::ServiceRestored,
                "2 live endpoints, at least its minimum of 2",
            )),
        ),
    ];
    for (action, expected) in table {
        let expected = expected.map(|(kind, reason)| Report {
            kind,
            reason: reason.to_owned(),
        });
        assert_eq!(action.report(), expected, "{action:?}");
    }
}
