//! Hosts through the typed API against a real etcd: registration under a
//! lease kept alive past its TTL, clean deregistration, expiry after the
//! registration is dropped, refusal of a name that is live, a drain that
//! keeps the key on its lease, and a restarted agent taking its registration
//! back on the lease it kept.

use std::time::Duration;

use visor::Error;
use visor::registry::{Kind, ObjectRef};

use visor_testkit::fixtures::{host, raw_keys};
use visor_testkit::wait::holds_for;
use visor_testkit::{TestRegistry, eventually, within};

const LIMIT: Duration = Duration::from_secs(30);
/// The shortest lease etcd grants; keep-alive renews it every third of it.
const TTL: Duration = Duration::from_secs(1);

/// The lease `/visor/hosts/h1` is bound to, read raw; the key must exist.
async fn host_lease(t: &TestRegistry) -> i64 {
    let stored = t.raw().get("/visor/hosts/h1", None).await.expect("raw get");
    stored.kvs().first().expect("the host key exists").lease()
}

#[tokio::test]
async fn a_registered_host_outlives_its_ttl_and_deregister_removes_it() {
    within(
        LIMIT,
        "host registration, keep-alive or revoke hangs",
        async {
            let t = TestRegistry::start().await;
            let registration = t
                .visor
                .register_host("h1", host("10.0.0.1"), TTL)
                .await
                .expect("register h1");
            assert_eq!(registration.host().key, "/visor/hosts/h1");
            let lost = registration.lost();
            assert!(!lost.is_cancelled());

            assert_eq!(
                host_lease(&t).await,
                registration.lease_id(),
                "the host key is bound to the registration's lease"
            );

            let read = t.visor.host("h1").await.expect("get h1");
            assert_eq!(read.value, registration.host().value);
            let listing = t.visor.hosts().await.expect("list hosts");
            assert_eq!(listing.items.len(), 1);
            assert_eq!(listing.items[0].name(), "h1");

            // Keep-alive renews the lease, so the key stays for well past one TTL.
            holds_for(TTL * 5 / 2, "host key of a live registration", || async {
                !raw_keys(&t, "/visor/hosts/h1").await.is_empty()
            })
            .await;
            assert!(
                !lost.is_cancelled(),
                "a kept-alive registration is not lost"
            );

            registration.deregister().await.expect("deregister h1");
            assert!(
                raw_keys(&t, "/visor/hosts/").await.is_empty(),
                "deregister removes the key at once"
            );
            assert!(lost.is_cancelled(), "deregistering cancels the lost token");
            match t.visor.host("h1").await {
                Err(Error::NotFound(object)) => {
                    assert_eq!(object, ObjectRef::new(Kind::Host, &["h1"]))
                }
                other => panic!("expected NotFound for a deregistered host, got {other:?}"),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_dropped_registration_expires_and_the_name_can_be_taken_again() {
    within(LIMIT, "host lease expiry hangs", async {
        let t = TestRegistry::start().await;
        let registration = t
            .visor
            .register_host("h1", host("10.0.0.1"), TTL)
            .await
            .expect("register h1");
        drop(registration);
        eventually(
            Duration::from_secs(10),
            "the host key expires with its lease",
            || async { raw_keys(&t, "/visor/hosts/").await.is_empty().then_some(()) },
        )
        .await;
        let again = t
            .visor
            .register_host("h1", host("10.0.0.2"), TTL)
            .await
            .expect("re-register h1");
        assert_eq!(
            t.visor.host("h1").await.expect("get h1").value.addr,
            "10.0.0.2"
        );
        again.deregister().await.expect("deregister");
    })
    .await;
}

#[tokio::test]
async fn registering_a_live_host_name_is_already_exists_and_leaks_no_lease() {
    within(LIMIT, "host registration hangs", async {
        let t = TestRegistry::start().await;
        let first = t
            .visor
            .register_host("h1", host("10.0.0.1"), TTL)
            .await
            .expect("register h1");
        let other = t.connect_again().await;
        match other.register_host("h1", host("10.0.0.9"), TTL).await {
            Err(Error::AlreadyExists(object)) => {
                assert_eq!(object, ObjectRef::new(Kind::Host, &["h1"]))
            }
            other => panic!("expected AlreadyExists for a live host name, got {other:?}"),
        }
        assert_eq!(
            t.visor.host("h1").await.expect("get h1").value.addr,
            "10.0.0.1",
            "the live registration is kept"
        );
        let leases = t.raw().leases().await.expect("list leases");
        let ids: Vec<i64> = leases.leases().iter().map(|l| l.id()).collect();
        assert_eq!(
            ids,
            [first.lease_id()],
            "the refused registration's lease is revoked"
        );

        let second = t
            .visor
            .register_host("h2", host("10.0.0.2"), TTL)
            .await
            .expect("register h2");
        let names: Vec<String> = t
            .visor
            .hosts()
            .await
            .expect("list")
            .items
            .iter()
            .map(|h| h.name().to_owned())
            .collect();
        assert_eq!(names, ["h1", "h2"]);
        first.deregister().await.expect("deregister h1");
        second.deregister().await.expect("deregister h2");
        assert!(t.visor.hosts().await.expect("list").items.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_drained_host_says_so_and_stays_bound_to_its_lease() {
    within(LIMIT, "host registration, drain or revoke hangs", async {
        let t = TestRegistry::start().await;
        let mut registration = t
            .visor
            .register_host("h1", host("10.0.0.1"), TTL)
            .await
            .expect("register h1");
        assert!(!t.visor.host("h1").await.expect("read").value.draining);

        registration.drain(&t.visor).await.expect("drain h1");
        registration
            .drain(&t.visor)
            .await
            .expect("a second drain is a no-op");
        let stored = t.visor.host("h1").await.expect("read");
        assert!(stored.value.draining, "the host document says draining");
        assert_eq!(&stored, registration.host());
        assert_eq!(
            host_lease(&t).await,
            registration.lease_id(),
            "still on its lease"
        );

        registration.deregister().await.expect("deregister");
        let gone = t.visor.host("h1").await;
        assert!(
            matches!(gone, Err(Error::NotFound { .. })),
            "revoking the lease removes the drained host: {gone:?}"
        );
    })
    .await;
}

/// Long enough to outlive a dropped registration's keep-alive for a moment.
const RESUME_TTL: Duration = Duration::from_secs(3);

#[tokio::test]
async fn a_restarted_agent_takes_its_host_back_on_the_same_lease_without_a_gap() {
    within(LIMIT, "host registration or resume hangs", async {
        let t = TestRegistry::start().await;
        let first = t
            .visor
            .register_host("h1", host("10.0.0.1"), RESUME_TTL)
            .await
            .expect("register h1");
        let (lease, created) = (first.lease_id(), first.host().create_revision);
        // The agent dies: renewal stops, the lease is not revoked.
        drop(first);

        let again = t.connect_again().await;
        let resumed = again
            .resume_host("h1", host("10.0.0.2"), lease, RESUME_TTL)
            .await
            .expect("resume h1");
        assert_eq!(resumed.lease_id(), lease, "the same lease");
        let stored = t.visor.host("h1").await.expect("read h1");
        assert_eq!(stored.value.addr, "10.0.0.2", "the new document");
        assert_eq!(
            stored.create_revision, created,
            "the key was never deleted and created again (no host-down)"
        );
        holds_for(
            RESUME_TTL + Duration::from_secs(1),
            "the resumed lease is kept alive past its TTL",
            || async { raw_keys(&t, "/visor/hosts/").await.len() == 1 },
        )
        .await;
        resumed.deregister().await.expect("deregister");
    })
    .await;
}

#[tokio::test]
async fn resuming_recreates_a_deleted_key_on_the_lease_and_a_gone_lease_registers_afresh() {
    within(LIMIT, "host registration or resume hangs", async {
        let t = TestRegistry::start().await;
        let first = t
            .visor
            .register_host("h1", host("10.0.0.1"), RESUME_TTL)
            .await
            .expect("register h1");
        let lease = first.lease_id();
        drop(first);
        t.raw()
            .delete("/visor/hosts/h1", None)
            .await
            .expect("etcdctl del");
        let resumed = t
            .visor
            .resume_host("h1", host("10.0.0.1"), lease, RESUME_TTL)
            .await
            .expect("resume h1");
        assert_eq!(
            host_lease(&t).await,
            lease,
            "the key is back, on the kept lease"
        );

        resumed.deregister().await.expect("revoke");
        let fresh = t
            .visor
            .resume_host("h1", host("10.0.0.1"), lease, RESUME_TTL)
            .await
            .expect("a gone lease registers afresh");
        assert_ne!(fresh.lease_id(), lease, "a new lease");
        fresh.deregister().await.expect("deregister");
    })
    .await;
}

#[tokio::test]
async fn resuming_a_name_another_lease_holds_is_already_exists_and_leaves_it_alone() {
    within(LIMIT, "host registration or resume hangs", async {
        let t = TestRegistry::start().await;
        let holder = t
            .visor
            .register_host("h1", host("10.0.0.1"), TTL)
            .await
            .expect("register h1");
        let other = t.raw().lease_grant(30, None).await.expect("grant").id();
        let refused = t
            .visor
            .resume_host("h1", host("10.0.0.9"), other, TTL)
            .await;
        assert!(
            matches!(refused, Err(Error::AlreadyExists(_))),
            "{refused:?}"
        );
        assert_eq!(
            host_lease(&t).await,
            holder.lease_id(),
            "the holder keeps it"
        );
        assert_eq!(
            t.visor.host("h1").await.expect("read").value.addr,
            "10.0.0.1"
        );
        holder.deregister().await.expect("deregister");
    })
    .await;
}
