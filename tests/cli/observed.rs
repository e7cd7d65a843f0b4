//! The observed-state commands end to end: `instances` with every filter,
//! `hosts` and `tickets [--host]`, run as the built binary against a real
//! etcd, in table and JSON output. Observed state is seeded through the typed
//! API.

use serde_json::json;
use visor::model::{InstanceState, TicketOp};
use visor::registry::InstanceFilter;

use visor_testkit::cli::{Cli, LIMIT, assert_fields, column, parse_time, rows, take_time};
use visor_testkit::fixtures::{host_spec, instance_spec, raw_revision, register_host, ticket_spec};
use visor_testkit::{TestRegistry, within};

/// Four instances: web/v1/http on h1 running, web/v1/worker on h2 pending,
/// web/v2/http unassigned, api/v1/http on h1 failed. Returns their ids in that order.
async fn seed_instances(t: &TestRegistry) -> Vec<String> {
    let mut running = instance_spec("web", "v1", "http", Some("h1"));
    running.state = InstanceState::Running;
    running.port = Some(8080);
    running.restarts = 2;
    let mut failed = instance_spec("api", "v1", "http", Some("h1"));
    failed.state = InstanceState::Failed;
    failed.reason = Some("exit status 1".to_owned());
    let specs = [
        running,
        instance_spec("web", "v1", "worker", Some("h2")),
        instance_spec("web", "v2", "http", None),
        failed,
    ];
    let mut ids = Vec::new();
    for spec in specs {
        let created = t
            .visor
            .create_instance(spec)
            .await
            .expect("create instance");
        ids.push(created.name().to_owned());
    }
    ids
}

#[tokio::test]
async fn instances_in_json_with_every_filter() {
    within(LIMIT, "etcd start or visor instances hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        assert_eq!(cli.json("instances").await.json(), json!([]));
        let ids = seed_instances(&t).await;

        let mut all = cli.json("instances").await.json();
        let stored = t
            .visor
            .instances(&InstanceFilter::default())
            .await
            .expect("instances");
        let listed = all.as_array_mut().expect("array");
        assert_eq!(listed.len(), stored.items.len());
        for (row, instance) in listed.iter_mut().zip(&stored.items) {
            assert_fields(
                row,
                &[
                    "id",
                    "app",
                    "rev",
                    "proc",
                    "host",
                    "state",
                    "port",
                    "restarts",
                    "reason",
                    "created_at",
                    "updated_at",
                ],
            );
            assert_eq!(take_time(row, "created_at"), instance.value.created_at);
            let updated = row
                .as_object_mut()
                .and_then(|o| o.remove("updated_at"))
                .expect("updated_at");
            assert_eq!(updated.as_str().map(parse_time), instance.value.updated_at);
        }
        assert_eq!(
            all,
            json!([
                {"id": ids[0], "app": "web", "rev": "v1", "proc": "http", "host": "h1",
                 "state": "running", "port": 8080, "restarts": 2, "reason": null},
                {"id": ids[1], "app": "web", "rev": "v1", "proc": "worker", "host": "h2",
                 "state": "pending", "port": null, "restarts": 0, "reason": null},
                {"id": ids[2], "app": "web", "rev": "v2", "proc": "http", "host": null,
                 "state": "pending", "port": null, "restarts": 0, "reason": null},
                {"id": ids[3], "app": "api", "rev": "v1", "proc": "http", "host": "h1",
                 "state": "failed", "port": null, "restarts": 0, "reason": "exit status 1"},
            ]),
            "every instance, in creation order"
        );

        let cases: &[(&str, &[usize])] = &[
            ("--app web", &[0, 1, 2]),
            ("--app api", &[3]),
            ("--rev v2", &[2]),
            ("--rev v1", &[0, 1, 3]),
            ("--proc worker", &[1]),
            ("--proc http", &[0, 2, 3]),
            ("--host h1", &[0, 3]),
            ("--host h2", &[1]),
            ("--app web --rev v1 --proc http --host h1", &[0]),
            ("--app web --host h1", &[0]),
            ("--app nope", &[]),
            ("--host h3", &[]),
        ];
        for (filter, want) in cases {
            let listing = cli.json(&format!("instances {filter}")).await.json();
            let want: Vec<&str> = want.iter().map(|&i| ids[i].as_str()).collect();
            assert_eq!(column(&listing, "id"), want, "instances {filter}");
        }
    })
    .await;
}

#[tokio::test]
async fn instances_as_tables() {
    within(LIMIT, "etcd start or visor instances hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let header: &[&str] = &[
            "ID", "APP", "REV", "PROC", "HOST", "STATE", "PORT", "RESTARTS",
        ];
        assert_eq!(cli.run("instances").await.table(), rows(&[header]));
        let ids = seed_instances(&t).await;
        let row = |i: usize, rest: [&'static str; 7]| {
            std::iter::once(ids[i].clone())
                .chain(rest.map(str::to_owned))
                .collect::<Vec<String>>()
        };
        let header = rows(&[header]).remove(0);

        let all = cli.run("instances").await.table();
        assert_eq!(
            all,
            [
                header.clone(),
                row(0, ["web", "v1", "http", "h1", "running", "8080", "2"]),
                row(1, ["web", "v1", "worker", "h2", "pending", "-", "0"]),
                row(2, ["web", "v2", "http", "-", "pending", "-", "0"]),
                row(3, ["api", "v1", "http", "h1", "failed", "-", "0"]),
            ],
            "absent host and port show as -"
        );
        let filtered = cli.run("instances --host h1 --app api").await.table();
        assert_eq!(filtered, [header.clone(), all[4].clone()]);
        assert_eq!(cli.run("instances --rev v9").await.table(), [header]);
    })
    .await;
}

#[tokio::test]
async fn hosts_in_json_and_as_tables() {
    within(LIMIT, "etcd start, a host lease or visor hosts hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let header: &[&str] = &["NAME", "ADDR", "CAPACITY", "STACKS", "LABELS"];
        assert_eq!(cli.json("hosts").await.json(), json!([]));
        assert_eq!(cli.run("hosts").await.table(), rows(&[header]));

        // Registrations stay alive (their leases renewed) while the CLI runs.
        let h2 = register_host(&t, "h2", host_spec("10.0.0.2:7000", 4, &["base"], &[])).await;
        let h1_spec = host_spec(
            "10.0.0.1:7000",
            16,
            &["base", "jvm"],
            &[("zone", "a"), ("disk", "ssd")],
        );
        let h1 = register_host(&t, "h1", h1_spec).await;

        let mut hosts = cli.json("hosts").await.json();
        let listed = hosts.as_array_mut().expect("array");
        assert_eq!(listed.len(), 2, "{listed:?}");
        for (row, registration) in listed.iter_mut().zip([&h1, &h2]) {
            assert_fields(
                row,
                &["name", "addr", "capacity", "stacks", "labels", "registered_at"],
            );
            let registered_at = take_time(row, "registered_at");
            assert_eq!(registered_at, registration.host().value.registered_at);
        }
        assert_eq!(
            hosts,
            json!([
                {"name": "h1", "addr": "10.0.0.1:7000", "capacity": 16, "stacks": ["base", "jvm"],
                 "labels": {"disk": "ssd", "zone": "a"}},
                {"name": "h2", "addr": "10.0.0.2:7000", "capacity": 4, "stacks": ["base"],
                 "labels": {}},
            ]),
            "live hosts in name order"
        );

        let table = cli.run("hosts").await.table();
        assert_eq!(
            table,
            rows(&[
                header,
                &["h1", "10.0.0.1:7000", "16", "base,jvm", "disk=ssd,zone=a"],
                &["h2", "10.0.0.2:7000", "4", "base", "-"],
            ])
        );

        h1.deregister().await.expect("deregister h1");
        let hosts = cli.json("hosts").await.json();
        assert_eq!(column(&hosts, "name"), ["h2"], "a deregistered host is gone");
        h2.deregister().await.expect("deregister h2");
    })
    .await;
}

#[tokio::test]
async fn tickets_in_json_and_as_tables() {
    within(LIMIT, "etcd start or visor tickets hangs", async {
        let t = TestRegistry::start().await;
        let cli = Cli::new(&t);
        let header: &[&str] = &[
            "HOST",
            "ID",
            "OP",
            "INSTANCE",
            "APP",
            "REV",
            "PROC",
            "CLAIMED BY",
        ];
        assert_eq!(cli.json("tickets").await.json(), json!([]));
        assert_eq!(cli.run("tickets").await.table(), rows(&[header]));

        let ids = seed_instances(&t).await;
        // h2's ticket first: the listing follows creation, not host names.
        let specs = [
            (
                "h2",
                ticket_spec(TicketOp::Start, &ids[1], "web", "v1", "worker"),
            ),
            (
                "h1",
                ticket_spec(TicketOp::Start, &ids[0], "web", "v1", "http"),
            ),
            (
                "h1",
                ticket_spec(TicketOp::Stop, &ids[3], "api", "v1", "http"),
            ),
        ];
        let mut tickets = Vec::new();
        for (host, spec) in specs {
            let ticket = t
                .visor
                .create_ticket(host, spec)
                .await
                .expect("create ticket");
            tickets.push(ticket);
        }
        let tid: Vec<&str> = tickets.iter().map(|ticket| ticket.name()).collect();
        t.visor
            .claim_ticket("h1", tid[1], "h1")
            .await
            .expect("claim");

        let mut all = cli.json("tickets").await.json();
        let listed = all.as_array_mut().expect("array");
        assert_eq!(listed.len(), 3, "{listed:?}");
        for (row, ticket) in listed.iter_mut().zip(&tickets) {
            assert_fields(
                row,
                &[
                    "host",
                    "id",
                    "op",
                    "instance",
                    "app",
                    "rev",
                    "proc",
                    "claimed_by",
                    "created_at",
                    "create_revision",
                ],
            );
            assert_eq!(take_time(row, "created_at"), ticket.value.created_at);
        }
        let created = |i: usize| tickets[i].create_revision;
        let expected = json!([
            {"host": "h2", "id": tid[0], "op": "start", "instance": ids[1], "app": "web",
             "rev": "v1", "proc": "worker", "claimed_by": null, "create_revision": created(0)},
            {"host": "h1", "id": tid[1], "op": "start", "instance": ids[0], "app": "web",
             "rev": "v1", "proc": "http", "claimed_by": "h1", "create_revision": created(1)},
            {"host": "h1", "id": tid[2], "op": "stop", "instance": ids[3], "app": "api",
             "rev": "v1", "proc": "http", "claimed_by": null, "create_revision": created(2)},
        ]);
        assert_eq!(all, expected, "every ticket, in registry (creation) order");

        let mut h1 = cli.json("tickets --host h1").await.json();
        for row in h1.as_array_mut().expect("array") {
            take_time(row, "created_at");
        }
        assert_eq!(h1, json!([expected[1], expected[2]]));
        assert_eq!(cli.json("tickets --host h9").await.json(), json!([]));

        let table = cli.run("tickets").await.table();
        let (i0, i1, i3) = (ids[0].as_str(), ids[1].as_str(), ids[3].as_str());
        assert_eq!(
            table,
            rows(&[
                header,
                &["h2", tid[0], "start", i1, "web", "v1", "worker", "-"],
                &["h1", tid[1], "start", i0, "web", "v1", "http", "h1"],
                &["h1", tid[2], "stop", i3, "api", "v1", "http", "-"],
            ])
        );
        let h2 = cli.run("tickets --host h2").await.table();
        assert_eq!(h2, [table[0].clone(), table[1].clone()]);

        let before = raw_revision(&t).await;
        let message = cli.run("tickets --host 'Bad Host'").await.error(2);
        assert!(
            message.contains("invalid host name \"Bad Host\""),
            "{message}"
        );
        assert_eq!(raw_revision(&t).await, before);
    })
    .await;
}
