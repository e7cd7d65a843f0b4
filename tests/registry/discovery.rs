//! Service discovery against a real etcd: registration writes the service
//! definition and a lease-bound endpoint with etcd-discovery's defaults;
//! queries see only live endpoints and build public and private URLs; bad
//! input is refused naming the field, writing nothing; credentials change in
//! place and survive a re-registration; a clean stop leaves a tombstone and is
//! no death, while a revoked lease or an unclean delete is exactly one death
//! followed by the same uuid coming back.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use visor::discovery::{
    self, DiscoveryError, EndpointEvent, RegisterRequest, Registration, ServiceDef,
    ServiceEndpoint, Subscription,
};
use visor::registry::EventKind;

use visor_testkit::fixtures::{self, raw_keys, raw_value};
use visor_testkit::{TestRegistry, eventually, within};

const LIMIT: Duration = Duration::from_secs(60);
const TTL: Duration = Duration::from_secs(2);

fn ports(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(s, p)| ((*s).to_owned(), (*p).to_owned()))
        .collect()
}

fn request(hostname: &str, pairs: &[(&str, &str)]) -> RegisterRequest {
    RegisterRequest {
        hostname: hostname.to_owned(),
        ports: ports(pairs),
        ttl: TTL,
        ..RegisterRequest::default()
    }
}

async fn register(t: &TestRegistry, service: &str, req: RegisterRequest) -> Registration {
    discovery::register(&t.visor, service, req)
        .await
        .expect("register")
}

async fn stored<T: serde::de::DeserializeOwned>(t: &TestRegistry, key: &str) -> T {
    let bytes = raw_value(t, key).await.expect("key present");
    serde_json::from_slice(&bytes).expect("document decodes")
}

/// The key's lease, if the key exists.
async fn raw_lease(t: &TestRegistry, key: &str) -> Option<i64> {
    let response = t.raw().get(key, None).await.ok()?;
    response.kvs().first().map(|kv| kv.lease())
}

async fn next(sub: &mut Subscription, what: &str) -> EndpointEvent {
    within(
        fixtures::EVENT_WAIT,
        &format!("no event: {what}"),
        sub.next(),
    )
    .await
    .unwrap_or_else(|| panic!("subscription ended: {what}"))
    .unwrap_or_else(|error| panic!("subscription failed ({what}): {error}"))
}

#[tokio::test]
async fn registration_writes_the_definition_and_a_lease_bound_endpoint_with_defaults() {
    within(LIMIT, "registration hangs", async {
        let t = TestRegistry::start().await;
        let req = RegisterRequest {
            public: true,
            critical: true,
            host: Some("h1".into()),
            instance: Some("i1".into()),
            ..request("db1.example.com", &[("postgres", "5432")])
        };
        let reg = register(&t, "db", req).await;
        assert!(reg.ready());
        assert_eq!(reg.service(), "db");
        let uuid = uuid::Uuid::parse_str(reg.id()).expect("the id is a uuid");
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(reg.key(), format!("/visor/endpoints/db/{}", reg.id()));

        let definition: ServiceDef = stored(&t, "/visor/services/db").await;
        assert!(definition.critical && definition.public);
        assert_eq!(definition.min_endpoints, 1);
        let endpoint: ServiceEndpoint = stored(&t, reg.key()).await;
        assert_eq!(endpoint.hostname, "db1.example.com");
        assert_eq!(
            endpoint.private_hostname, "db1.example.com",
            "defaults to hostname"
        );
        assert_eq!(endpoint.private_ports, endpoint.ports, "default to ports");
        assert_eq!(endpoint.ports["postgres"], "5432");
        assert!(endpoint.critical && !endpoint.departed);
        assert_eq!(endpoint.host.as_ref().map(|h| h.as_str()), Some("h1"));
        assert_eq!(endpoint.instance.as_ref().map(|i| i.as_str()), Some("i1"));
        assert_eq!(raw_lease(&t, reg.key()).await, reg.lease_id());

        // The definition is written once: a later registration does not replace it.
        let _second = register(&t, "db", request("db2", &[("postgres", "5432")])).await;
        let again: ServiceDef = stored(&t, "/visor/services/db").await;
        assert_eq!(again, definition);
        assert_eq!(raw_keys(&t, "/visor/endpoints/db/").await.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn queries_see_live_endpoints_and_build_public_and_private_urls() {
    within(LIMIT, "a query hangs", async {
        let t = TestRegistry::start().await;
        let first = register(
            &t,
            "api",
            RegisterRequest {
                private_hostname: "10.0.0.1".into(),
                private_ports: ports(&[("http", "8080")]),
                user: "admin".into(),
                password: "secret".into(),
                ..request("api1.example.com", &[("http", "80"), ("https", "443")])
            },
        )
        .await;
        let second = register(&t, "api", request("api2.example.com", &[("http", "81")])).await;

        let service = discovery::get(&t.visor, "api").await.expect("get");
        assert_eq!(service.name(), "api");
        assert!(service.definition().is_some());
        let ids: Vec<&str> = service.all().iter().map(|e| e.name()).collect();
        assert_eq!(ids, [first.id(), second.id()], "oldest registration first");
        assert_eq!(service.first().expect("first").name(), first.id());
        let mut picked = std::collections::BTreeSet::new();
        for _ in 0..200 {
            picked.insert(service.one().expect("one").name().to_owned());
        }
        assert_eq!(picked.len(), 2, "one() picks among all live endpoints");

        // Only the first offers https; credentials go into the URL.
        assert_eq!(
            service.url("https").expect("https url"),
            "https://admin:secret@api1.example.com/"
        );
        let private = service.private_url("http").expect("private url");
        assert!(
            [
                "http://admin:secret@10.0.0.1:8080/",
                "http://api2.example.com:81/"
            ]
            .contains(&private.as_str()),
            "{private}"
        );
        let public = service.url("http").expect("public url");
        assert!(
            [
                "http://admin:secret@api1.example.com/",
                "http://api2.example.com:81/"
            ]
            .contains(&public.as_str()),
            "{public}"
        );
        match service.url("ftp") {
            Err(error @ DiscoveryError::UnknownScheme { .. }) => assert_eq!(
                error.to_string(),
                "unknown scheme \"ftp\" for service api: no live endpoint has a public port for it"
            ),
            other => panic!("expected UnknownScheme, got {other:?}"),
        }

        // A service with neither definition nor endpoints is not found.
        match discovery::get(&t.visor, "nosuch").await {
            Err(DiscoveryError::ServiceNotFound { service }) => assert_eq!(service, "nosuch"),
            other => panic!("expected ServiceNotFound, got {other:?}"),
        }

        // Stopped endpoints are tombstones: the service exists, with no host.
        first.stop().await.expect("stop first");
        second.stop().await.expect("stop second");
        let service = discovery::get(&t.visor, "api").await.expect("get");
        assert!(service.all().is_empty());
        for result in [
            service.first().map(drop),
            service.one().map(drop),
            service.url("http").map(drop),
        ] {
            match result {
                Err(error @ DiscoveryError::NoHostFound { .. }) => assert_eq!(
                    error.to_string(),
                    "no host found for service api: it has no live endpoint"
                ),
                other => panic!("expected NoHostFound, got {other:?}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_writes_nothing() {
    within(LIMIT, "a refused registration hangs", async {
        let t = TestRegistry::start().await;
        let ok = || request("db1", &[("postgres", "5432")]);
        let table: Vec<(&str, RegisterRequest, &str)> = vec![
            ("Bad_Name", ok(), "invalid service name \"Bad_Name\""),
            ("", ok(), "invalid service name \"\": must not be empty"),
            (
                "db",
                request("db1", &[("postgres", "pg")]),
                "invalid port \"pg\" for scheme \"postgres\" in ports: must be a number from 1 to 65535",
            ),
            ("db", request("db1", &[("http", "0")]), "invalid port \"0\""),
            ("db", request("db1", &[("http", "70000")]), "invalid port \"70000\""),
            ("db", request("", &[("http", "80")]), "hostname must not be empty"),
            ("db", request("db1", &[]), "ports: at least one port is required"),
            ("db", request("db1", &[("9p", "80")]), "invalid scheme \"9p\" in ports"),
            (
                "db",
                RegisterRequest {
                    private_ports: ports(&[("http", "x")]),
                    ..ok()
                },
                "invalid port \"x\" for scheme \"http\" in private_ports",
            ),
            (
                "db",
                RegisterRequest {
                    host: Some("H1".into()),
                    ..ok()
                },
                "invalid host name \"H1\"",
            ),
            (
                "db",
                RegisterRequest {
                    ttl: Duration::ZERO,
                    ..ok()
                },
                "invalid ttl",
            ),
        ];
        for (service, req, message) in table {
            let result = discovery::register(&t.visor, service, req).await;
            let error = result.expect_err(message).to_string();
            assert!(error.contains(message), "{error:?} should contain {message:?}");
        }
        match discovery::register(&t.visor, "db", request("", &[("http", "80")])).await {
            Err(DiscoveryError::EmptyHostname { field }) => assert_eq!(field, "hostname"),
            other => panic!("expected EmptyHostname, got {other:?}"),
        }
        match discovery::register(&t.visor, "db", request("db1", &[("http", "x")])).await {
            Err(DiscoveryError::InvalidPort { port, .. }) => assert_eq!(port, "x"),
            other => panic!("expected InvalidPort, got {other:?}"),
        }
        assert!(matches!(
            discovery::get(&t.visor, "Bad_Name").await,
            Err(DiscoveryError::InvalidName(_))
        ));
        assert!(matches!(
            discovery::subscribe_new(&t.visor, "Bad_Name").await,
            Err(DiscoveryError::InvalidName(_))
        ));
        assert!(raw_keys(&t, "/visor/services/").await.is_empty());
        assert!(raw_keys(&t, "/visor/endpoints/").await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn credentials_change_in_place_and_survive_a_re_registration() {
    within(
        LIMIT,
        "a credentials update or re-registration hangs",
        async {
            let t = TestRegistry::start().await;
            let reg = register(
                &t,
                "db",
                RegisterRequest {
                    public: true,
                    user: "u1".into(),
                    password: "p1".into(),
                    ..request("db1", &[("postgres", "5432")])
                },
            )
            .await;
            let lease = reg.lease_id();
            reg.credentials("u2", "p2")
                .await
                .expect("update credentials");
            let endpoint: ServiceEndpoint = stored(&t, reg.key()).await;
            assert_eq!(
                (endpoint.user.as_str(), endpoint.password.as_str()),
                ("u2", "p2")
            );
            assert_eq!(
                raw_lease(&t, reg.key()).await,
                lease,
                "the update keeps the lease"
            );
            let service = discovery::get(&t.visor, "db").await.expect("get");
            assert_eq!(
                service.url("postgres").expect("url"),
                "postgres://u2:p2@db1:5432"
            );

            // Lose the lease: the same uuid comes back with the latest credentials.
            let old = lease.expect("registered");
            t.raw().lease_revoke(old).await.expect("revoke");
            eventually(Duration::from_secs(10), "re-registration", || async {
                let current = raw_lease(&t, reg.key()).await?;
                (reg.ready() && current != old && Some(current) == reg.lease_id()).then_some(())
            })
            .await;
            let endpoint: ServiceEndpoint = stored(&t, reg.key()).await;
            assert_eq!(
                (endpoint.user.as_str(), endpoint.password.as_str()),
                ("u2", "p2")
            );
        },
    )
    .await;
}

#[tokio::test]
async fn a_clean_stop_is_a_tombstone_and_a_revoked_lease_is_one_death() {
    within(LIMIT, "stop, revoke or a subscription hangs", async {
        let t = TestRegistry::start().await;
        let stopped = register(&t, "db", request("db1", &[("postgres", "5432")])).await;
        let dying = register(&t, "db", request("db2", &[("postgres", "5432")])).await;
        let from = fixtures::raw_revision(&t).await + 1;
        let mut sub = discovery::subscribe(&t.visor, "db", Default::default())
            .await
            .expect("subscribe");

        let stopped_key = stopped.key().to_owned();
        let stopped_id = stopped.id().to_owned();
        stopped.stop().await.expect("stop");
        let tombstone: ServiceEndpoint = stored(&t, &stopped_key).await;
        assert!(tombstone.departed, "stop leaves a departed tombstone");
        assert_eq!(
            raw_lease(&t, &stopped_key).await,
            Some(0),
            "bound to no lease"
        );

        let old = dying.lease_id().expect("registered");
        t.raw().lease_revoke(old).await.expect("revoke");
        // The clean stop came first; had it been taken for a death, it would show here.
        match next(&mut sub, "the death of the revoked endpoint").await {
            EndpointEvent::Down { id, .. } => assert_eq!(id, dying.id()),
            other => panic!("expected Down for {}, got {other:?}", dying.id()),
        }
        match next(&mut sub, "the same uuid back").await {
            EndpointEvent::New { id, .. } => assert_eq!(id, dying.id()),
            other => panic!("expected New for {}, got {other:?}", dying.id()),
        }
        within(
            Duration::from_secs(10),
            "re-registration",
            dying.wait_registered(),
        )
        .await;
        assert_ne!(dying.lease_id(), Some(old));
        assert_eq!(raw_lease(&t, dying.key()).await, dying.lease_id());

        // The registry's event stream tells the same story.
        let mut events = t.visor.watch_events(from).await.expect("watch events");
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let event = fixtures::next_event(&mut events, "endpoint events").await;
            match event.kind {
                EventKind::EndpointDeparted { id, .. } => seen.push(("departed", id)),
                EventKind::EndpointDown { id, .. } => seen.push(("down", id)),
                EventKind::EndpointUp { id, .. } => seen.push(("up", id)),
                _ => {}
            }
        }
        let dying_id = dying.id().to_owned();
        assert_eq!(
            seen,
            [
                ("departed", stopped_id),
                ("down", dying_id.clone()),
                ("up", dying_id)
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn an_unclean_delete_is_a_death_and_the_endpoint_comes_back() {
    within(LIMIT, "the deleted endpoint never comes back", async {
        let t = TestRegistry::start().await;
        let reg = register(&t, "db", request("db1", &[("postgres", "5432")])).await;
        let lease = reg.lease_id();
        let mut down = discovery::subscribe_down(&t.visor, "db")
            .await
            .expect("subscribe down");
        let mut new = discovery::subscribe_new(&t.visor, "db")
            .await
            .expect("subscribe new");

        // As `etcdctl del` would: the lease lives on, the key is gone.
        t.raw().delete(reg.key(), None).await.expect("raw delete");
        let died = next(&mut down, "the death of the deleted endpoint").await;
        assert!(
            matches!(&died, EndpointEvent::Down { id, .. } if id == reg.id()),
            "{died:?}"
        );
        let back = next(&mut new, "the same uuid back").await;
        assert!(
            matches!(&back, EndpointEvent::New { id, .. } if id == reg.id()),
            "{back:?}"
        );
        assert!(back.revision() > died.revision());
        within(
            Duration::from_secs(10),
            "re-registration",
            reg.wait_registered(),
        )
        .await;
        assert_ne!(reg.lease_id(), lease, "registered again under a new lease");
        assert_eq!(raw_lease(&t, reg.key()).await, reg.lease_id());
    })
    .await;
}
