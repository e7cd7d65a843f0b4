//! The services loop of the real `visor controller` against a real etcd:
//! an endpoint's death is exactly one `service-down` notification, a clean
//! stop is none, and a critical service is reported degraded and restored.

use std::collections::BTreeMap;
use std::time::Duration;

use visor::discovery::{self, RegisterRequest};
use visor::model::NotificationKind;

use visor_testkit::controller::ControllerProcess;
use visor_testkit::{TestRegistry, eventually, fixtures, within};

const LIMIT: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(20);

fn request(hostname: &str, critical: bool) -> RegisterRequest {
    RegisterRequest {
        hostname: hostname.to_owned(),
        ports: BTreeMap::from([("pg".to_owned(), "5432".to_owned())]),
        critical,
        ttl: Duration::from_secs(2),
        ..RegisterRequest::default()
    }
}

/// The notifications posted so far, as (kind, endpoint).
async fn posted(t: &TestRegistry) -> Vec<(NotificationKind, Option<String>)> {
    t.visor
        .notifications(0)
        .await
        .expect("notifications")
        .items
        .into_iter()
        .map(|n| (n.value.kind, n.value.endpoint))
        .collect()
}

async fn tracked(t: &TestRegistry, service: &str) -> usize {
    fixtures::raw_keys(t, &format!("/visor/tracked/{service}/"))
        .await
        .len()
}

#[tokio::test]
async fn a_death_is_one_down_notification_and_a_clean_stop_none() {
    within(LIMIT, "the services loop never settles", async {
        let t = TestRegistry::start().await;
        let _controller = ControllerProcess::start(&t, "c1");
        let registration = discovery::register(&t.visor, "db", request("db-1.example", false))
            .await
            .expect("register");
        let id = registration.id().to_string();
        eventually(CONVERGE, "the endpoint is tracked", || async {
            (tracked(&t, "db").await == 1).then_some(())
        })
        .await;

        t.raw()
            .lease_revoke(registration.lease_id().expect("registered"))
            .await
            .expect("revoke");
        let down = eventually(CONVERGE, "a down notification", || async {
            let posted = posted(&t).await;
            (!posted.is_empty()).then_some(posted)
        })
        .await;
        assert_eq!(down, [(NotificationKind::ServiceDown, Some(id.clone()))]);

        // The handle re-registers under the same uuid: tracked again, no notification.
        registration.wait_registered().await;
        eventually(CONVERGE, "the re-registration is tracked", || async {
            (tracked(&t, "db").await == 1).then_some(())
        })
        .await;
        registration.stop().await.expect("clean stop");
        eventually(CONVERGE, "the clean stop is forgotten", || async {
            (tracked(&t, "db").await == 0).then_some(())
        })
        .await;
        assert_eq!(posted(&t).await.len(), 1, "a clean stop posts nothing");
        let numbers: Vec<u64> = t
            .visor
            .notifications(0)
            .await
            .expect("notifications")
            .items
            .iter()
            .map(|n| n.value.seq)
            .collect();
        assert_eq!(numbers, [1]);
    })
    .await;
}

#[tokio::test]
async fn a_critical_service_is_reported_degraded_then_restored() {
    within(LIMIT, "the services loop never settles", async {
        let t = TestRegistry::start().await;
        let _controller = ControllerProcess::start(&t, "c1");
        let registration = discovery::register(&t.visor, "db", request("db-1.example", true))
            .await
            .expect("register");
        eventually(CONVERGE, "the endpoint is tracked", || async {
            (tracked(&t, "db").await == 1).then_some(())
        })
        .await;
        // A death with nothing to re-register it: the handle is gone first.
        let lease = registration.lease_id().expect("registered");
        drop(registration);
        t.raw().lease_revoke(lease).await.expect("revoke");
        let kinds = eventually(CONVERGE, "down, then degraded", || async {
            let kinds: Vec<NotificationKind> =
                posted(&t).await.into_iter().map(|(k, _)| k).collect();
            (kinds.len() >= 2).then_some(kinds)
        })
        .await;
        assert_eq!(
            kinds,
            [
                NotificationKind::ServiceDown,
                NotificationKind::ServiceDegraded
            ]
        );

        // A new endpoint brings it back to its minimum of one.
        let _back = discovery::register(&t.visor, "db", request("db-2.example", true))
            .await
            .expect("register again");
        let kinds = eventually(CONVERGE, "restored", || async {
            let kinds: Vec<NotificationKind> =
                posted(&t).await.into_iter().map(|(k, _)| k).collect();
            (kinds.len() >= 3).then_some(kinds)
        })
        .await;
        assert_eq!(kinds[2], NotificationKind::ServiceRestored);
        assert_eq!(kinds.len(), 3);
    })
    .await;
}
