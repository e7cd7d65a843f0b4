//! Instances and tickets through the typed API against a real etcd:
//! instances and their filters, unregistration at a mod revision, and tickets
//! (creation order by create revision, claim by the addressee, completion by
//! the claimant).

use std::time::Duration;

use chrono::Utc;
use visor::Error;
use visor::model::{Actor, Instance, InstanceState, TicketOp};
use visor::registry::{InstanceFilter, Kind, ObjectRef};

use visor_testkit::fixtures::{instance, name, raw_keys, raw_revision, ticket};
use visor_testkit::{TestRegistry, within};

const LIMIT: Duration = Duration::from_secs(30);

fn filter(
    app: Option<&str>,
    rev: Option<&str>,
    proc: Option<&str>,
    host: Option<&str>,
) -> InstanceFilter {
    InstanceFilter {
        app: app.map(str::to_owned),
        rev: rev.map(str::to_owned),
        proc: proc.map(str::to_owned),
        host: host.map(str::to_owned),
    }
}

#[tokio::test]
async fn instances_create_get_and_list_with_filters() {
    within(LIMIT, "instance calls hang", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        let spec = |app: &str, rev: &str, proc: &str, host: Option<&str>| {
            Instance::pending(name(app), name(rev), name(proc), host.map(name), Utc::now())
        };
        let specs = [
            spec("web", "v1", "http", Some("h1")),
            spec("web", "v1", "worker", Some("h2")),
            spec("web", "v2", "http", None),
            spec("api", "v1", "http", Some("h1")),
        ];
        let mut ids = Vec::new();
        for s in &specs {
            let created = v.create_instance(s.clone()).await.expect("create instance");
            assert_eq!(created.key, format!("/visor/instances/{}", created.name()));
            assert_eq!(created.value.state, InstanceState::Pending);
            ids.push(created.name().to_owned());
        }
        let read = v.instance(&ids[0]).await.expect("get instance");
        assert_eq!(read.value, specs[0]);

        let all = v
            .instances(&InstanceFilter::default())
            .await
            .expect("list all");
        let listed: Vec<&str> = all.items.iter().map(|i| i.name()).collect();
        assert_eq!(
            listed,
            ids.iter().map(String::as_str).collect::<Vec<_>>(),
            "instances list in creation order"
        );

        let cases: [(InstanceFilter, &[usize]); 7] = [
            (filter(Some("web"), None, None, None), &[0, 1, 2]),
            (filter(Some("api"), None, None, None), &[3]),
            (filter(None, Some("v2"), None, None), &[2]),
            (filter(None, None, Some("http"), None), &[0, 2, 3]),
            (filter(None, None, None, Some("h1")), &[0, 3]),
            (
                filter(Some("web"), Some("v1"), Some("http"), Some("h1")),
                &[0],
            ),
            (filter(Some("nope"), None, None, None), &[]),
        ];
        for (f, expected) in cases {
            let got: Vec<String> = v
                .instances(&f)
                .await
                .expect("list filtered")
                .items
                .iter()
                .map(|i| i.name().to_owned())
                .collect();
            let want: Vec<String> = expected.iter().map(|&i| ids[i].clone()).collect();
            assert_eq!(got, want, "filter {f:?}");
        }

        // The host filter also matches the host that claimed an unassigned instance.
        v.claim_instance(&ids[2], "h3")
            .await
            .expect("claim the unassigned instance");
        let h3: Vec<String> = v
            .instances(&filter(None, None, None, Some("h3")))
            .await
            .expect("list")
            .items
            .iter()
            .map(|i| i.name().to_owned())
            .collect();
        assert_eq!(h3, [ids[2].clone()]);

        let missing = "0190a0a0-0000-7000-8000-000000000000";
        match v.instance(missing).await {
            Err(Error::NotFound(object)) => {
                assert_eq!(object, ObjectRef::new(Kind::Instance, &[missing]))
            }
            other => panic!("expected NotFound for a missing instance, got {other:?}"),
        }
        let not_found = |result: visor::Result<_>| match result {
            Err(Error::NotFound(object)) => {
                assert_eq!(object, ObjectRef::new(Kind::Instance, &[missing]))
            }
            other => panic!("moving a missing instance: expected NotFound, got {other:?}"),
        };
        not_found(v.claim_instance(missing, "h1").await);
        not_found(
            v.transition_instance(missing, InstanceState::Lost, &Actor::Controller)
                .await,
        );
        let missing_ticket = "0190a0a0-0000-7000-8000-000000000001";
        match v.claim_ticket("h1", missing_ticket, "h1").await {
            Err(Error::NotFound(object)) => {
                assert_eq!(
                    object,
                    ObjectRef::new(Kind::Ticket, &["h1", missing_ticket])
                );
            }
            other => panic!("claiming a missing ticket: expected NotFound, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn unregister_instance_needs_the_current_mod_revision() {
    within(LIMIT, "instance unregistration hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        let created = v
            .create_instance(instance(Some("h1")))
            .await
            .expect("create");
        let id = created.name().to_owned();
        let claimed = v.claim_instance(&id, "h1").await.expect("claim");

        let before = raw_revision(&t).await;
        match v.unregister_instance(&created).await {
            Err(Error::Conflict { object, expected }) => {
                assert_eq!(object, ObjectRef::new(Kind::Instance, &[id.as_str()]));
                assert_eq!(expected, created.mod_revision);
            }
            other => panic!("unregistering a stale instance: expected Conflict, got {other:?}"),
        }
        assert_eq!(
            raw_revision(&t).await,
            before,
            "a stale unregistration writes nothing"
        );
        assert_eq!(
            v.instance(&id).await.expect("still there").value.state,
            InstanceState::Claimed
        );

        v.unregister_instance(&claimed)
            .await
            .expect("unregister the current instance");
        assert!(raw_keys(&t, "/visor/instances/").await.is_empty());
        match v.unregister_instance(&claimed).await {
            Err(Error::NotFound(object)) => {
                assert_eq!(object, ObjectRef::new(Kind::Instance, &[id.as_str()]))
            }
            other => panic!("unregistering a removed instance: expected NotFound, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn tickets_list_per_host_in_creation_order_and_complete_by_deletion() {
    within(LIMIT, "ticket calls hang", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        let mut h1 = Vec::new();
        for (i, op) in [TicketOp::Start, TicketOp::Stop, TicketOp::Start]
            .into_iter()
            .enumerate()
        {
            let created = v
                .create_ticket("h1", ticket(op, &format!("i{i}")))
                .await
                .expect("create h1 ticket");
            assert!(created.key.starts_with("/visor/tickets/h1/"));
            h1.push(created);
        }
        let h2 = v
            .create_ticket("h2", ticket(TicketOp::Start, "j0"))
            .await
            .expect("create h2 ticket");

        let listed = v.tickets(Some("h1")).await.expect("list h1");
        let order: Vec<i64> = listed.items.iter().map(|t| t.create_revision).collect();
        assert_eq!(
            order,
            h1.iter().map(|t| t.create_revision).collect::<Vec<_>>()
        );
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        let all = v.tickets(None).await.expect("list all");
        assert_eq!(all.items.len(), 4);
        assert_eq!(
            all.items[3].key, h2.key,
            "every host's tickets, by create revision"
        );
        assert_eq!(
            v.ticket("h1", h1[0].name())
                .await
                .expect("get ticket")
                .value,
            h1[0].value
        );

        let claimed = v
            .claim_ticket("h1", h1[0].name(), "h1")
            .await
            .expect("claim");
        assert_eq!(claimed.value.claimed_by, Some(name("h1")));
        assert!(claimed.value.claimed_at.is_some());
        assert_eq!(claimed.create_revision, h1[0].create_revision);
        // Claiming changes the mod revision but not the position in the queue.
        let listed = v.tickets(Some("h1")).await.expect("list h1");
        assert_eq!(listed.items[0].key, h1[0].key);

        let done_at = v.complete_ticket(&claimed, "h1").await.expect("complete");
        assert!(done_at > claimed.mod_revision);
        match v.ticket("h1", h1[0].name()).await {
            Err(Error::NotFound(object)) => {
                assert_eq!(object, ObjectRef::new(Kind::Ticket, &["h1", h1[0].name()]));
            }
            other => panic!("a completed ticket is deleted, got {other:?}"),
        }
        assert_eq!(v.tickets(Some("h1")).await.expect("list").items.len(), 2);
        assert!(matches!(
            v.complete_ticket(&claimed, "h1").await,
            Err(Error::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn tickets_are_ordered_by_create_revision_not_by_key() {
    within(LIMIT, "ticket listing hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        // Written in reverse key order, as an older controller with other ids might.
        for id in ["zzz", "mmm", "aaa"] {
            let json =
                serde_json::to_string(&ticket(TicketOp::Start, id)).expect("serialize ticket");
            t.raw()
                .put(format!("/visor/tickets/h1/{id}"), json, None)
                .await
                .expect("raw put");
        }
        let latest = v
            .create_ticket("h1", ticket(TicketOp::Stop, "x"))
            .await
            .expect("create");
        // A later claim of the middle ticket bumps its mod revision, not its place.
        v.claim_ticket("h1", "mmm", "h1").await.expect("claim mmm");

        let names: Vec<String> = v
            .tickets(Some("h1"))
            .await
            .expect("list")
            .items
            .iter()
            .map(|t| t.name().to_owned())
            .collect();
        assert_eq!(names, ["zzz", "mmm", "aaa", latest.name()]);
    })
    .await;
}

#[tokio::test]
async fn only_the_addressee_claims_and_only_the_claimant_completes() {
    within(LIMIT, "ticket claim hangs", async {
        let t = TestRegistry::start().await;
        let v = &t.visor;
        let created = v
            .create_ticket("h1", ticket(TicketOp::Start, "i1"))
            .await
            .expect("create");
        let id = created.name().to_owned();
        let label = format!("h1/{id}");

        let before = raw_revision(&t).await;
        match v.claim_ticket("h1", &id, "h2").await {
            Err(Error::NotAddressee {
                ticket,
                addressee,
                claimant,
            }) => {
                assert_eq!(
                    (ticket.as_str(), addressee.as_str(), claimant.as_str()),
                    (label.as_str(), "h1", "h2")
                );
            }
            other => panic!("claim by another host: expected NotAddressee, got {other:?}"),
        }
        match v.complete_ticket(&created, "h1").await {
            Err(Error::TicketClaimed { ticket, by }) => {
                assert_eq!((ticket, by.as_str()), (label.clone(), "nobody"))
            }
            other => {
                panic!("completing an unclaimed ticket: expected TicketClaimed, got {other:?}")
            }
        }
        assert_eq!(
            raw_revision(&t).await,
            before,
            "refused claims and completions write nothing"
        );

        let claimed = v
            .claim_ticket("h1", &id, "h1")
            .await
            .expect("claim by the addressee");
        match v.claim_ticket("h1", &id, "h1").await {
            Err(Error::TicketClaimed { ticket, by }) => {
                assert_eq!((ticket, by.as_str()), (label.clone(), "h1"))
            }
            other => panic!("claiming a claimed ticket: expected TicketClaimed, got {other:?}"),
        }
        match v.complete_ticket(&claimed, "h2").await {
            Err(Error::TicketClaimed { by, .. }) => assert_eq!(by, "h1"),
            other => panic!("completion by a non-claimant: expected TicketClaimed, got {other:?}"),
        }
        assert!(
            v.ticket("h1", &id).await.is_ok(),
            "a refused completion keeps the ticket"
        );
        v.complete_ticket(&claimed, "h1")
            .await
            .expect("complete by the claimant");
        assert!(raw_keys(&t, "/visor/tickets/").await.is_empty());
    })
    .await;
}
