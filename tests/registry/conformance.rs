//! The embedded registry held to etcd: one script of operations run against
//! both, through the same client, and every answer compared.
//!
//! Each answer is recorded as a line of what a client can observe
//! (revisions, versions, values, previous values, txn outcomes, counts,
//! error codes and messages, watch events in order); the two transcripts
//! must be identical. Ids that are each server's own (cluster, member) are
//! left out; lease ids are chosen by the script. Whatever the tests run
//! against otherwise, this file starts one of each.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, LeaseGrantOptions,
    LeaseTimeToLiveOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
    WatchOptions, WatchStream,
};
use visor::registry::{LocalRegistry, LocalRegistryOptions, LocalServer};
use visor_testkit::cli::visor_binary;
use visor_testkit::within;

const LIMIT: Duration = Duration::from_secs(60);
/// The one step where the embedded registry answers as etcd does since
/// etcd-io/etcd#20693, not as the etcd 3.4 these tests run: a watch from a
/// negative revision is refused rather than accepted and left without
/// events (which, on etcd 3.4, also costs other watches their events).
const NEGATIVE_WATCH: &str = "watch f from -1";
/// How long a watch may take to deliver what the script is waiting for.
const WATCH_LIMIT: Duration = Duration::from_secs(10);

async fn servers() -> (LocalRegistry, LocalRegistry) {
    let etcd = LocalRegistry::start().await.expect("start etcd");
    let embedded = LocalRegistry::start_with(LocalRegistryOptions {
        server: LocalServer::Embedded {
            visor: visor_binary(),
        },
        ..LocalRegistryOptions::default()
    })
    .await
    .expect("start the embedded registry");
    (etcd, embedded)
}

async fn client(server: &LocalRegistry) -> Client {
    Client::connect([server.endpoint()], None)
        .await
        .expect("connect")
}

/// What a client sees of a transcript step: an answer, or an error's code
/// and message.
fn outcome<T>(result: Result<T, etcd_client::Error>, answer: impl FnOnce(T) -> String) -> String {
    match result {
        Ok(value) => answer(value),
        Err(etcd_client::Error::GRpcStatus(status)) => {
            format!("error {:?}: {}", status.code(), status.message())
        }
        Err(error) => format!("error {error}"),
    }
}

fn kv(kv: &etcd_client::KeyValue) -> String {
    format!(
        "{}={} c{} m{} v{} l{}",
        String::from_utf8_lossy(kv.key()),
        String::from_utf8_lossy(kv.value()),
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        kv.lease()
    )
}

fn kvs(kvs: &[etcd_client::KeyValue]) -> String {
    kvs.iter().map(kv).collect::<Vec<_>>().join(", ")
}

fn revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map_or(-1, |header| header.revision())
}

/// Records the outcome of every step.
struct Transcript {
    client: Client,
    lines: Vec<String>,
}

impl Transcript {
    fn note(&mut self, step: &str, line: String) {
        self.lines.push(format!("{step}: {line}"));
    }

    async fn put(&mut self, key: &str, value: &str, options: Option<PutOptions>) {
        let result = self.client.put(key, value, options).await;
        let line = outcome(result, |r| {
            format!(
                "rev {} prev [{}]",
                revision(r.header()),
                r.prev_key().map(kv).unwrap_or_default()
            )
        });
        self.note(&format!("put {key}"), line);
    }

    async fn get(&mut self, key: &str, options: Option<GetOptions>) {
        let result = self.client.get(key, options).await;
        let line = outcome(result, |r| {
            format!(
                "rev {} count {} more {} [{}]",
                revision(r.header()),
                r.count(),
                r.more(),
                kvs(r.kvs())
            )
        });
        self.note(&format!("get {key}"), line);
    }

    async fn delete(&mut self, key: &str, options: Option<DeleteOptions>) {
        let result = self.client.delete(key, options).await;
        let line = outcome(result, |r| {
            format!(
                "rev {} deleted {} prev [{}]",
                revision(r.header()),
                r.deleted(),
                kvs(r.prev_kvs())
            )
        });
        self.note(&format!("delete {key}"), line);
    }

    async fn txn(&mut self, step: &str, txn: Txn) {
        let result = self.client.txn(txn).await;
        let line = outcome(result, |r| {
            let responses: Vec<String> = r.op_responses().iter().map(op_response).collect();
            format!(
                "rev {} succeeded {} [{}]",
                revision(r.header()),
                r.succeeded(),
                responses.join("; ")
            )
        });
        self.note(step, line);
    }
}

fn op_response(response: &TxnOpResponse) -> String {
    match response {
        TxnOpResponse::Put(put) => {
            format!("put prev [{}]", put.prev_key().map(kv).unwrap_or_default())
        }
        TxnOpResponse::Get(get) => format!("get count {} [{}]", get.count(), kvs(get.kvs())),
        TxnOpResponse::Delete(delete) => {
            format!("delete {} [{}]", delete.deleted(), kvs(delete.prev_kvs()))
        }
        TxnOpResponse::Txn(txn) => {
            let inner: Vec<String> = txn.op_responses().iter().map(op_response).collect();
            format!("txn succeeded {} [{}]", txn.succeeded(), inner.join("; "))
        }
    }
}

/// Reads a watch's responses until one holds an event on `until` (or the
/// watch is cancelled), recording each response's flags and events.
async fn watch_until(stream: &mut WatchStream, until: &str) -> Vec<String> {
    watch_until_within(stream, until, WATCH_LIMIT).await
}

/// [`watch_until`] with its own limit.
async fn watch_until_within(stream: &mut WatchStream, until: &str, limit: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    let read = async {
        while let Ok(Some(response)) = stream.message().await {
            if response.created() {
                seen.push("created".to_owned());
            }
            if response.canceled() {
                seen.push(format!(
                    "canceled compact {} reason {:?}",
                    response.compact_revision(),
                    response.cancel_reason()
                ));
                return;
            }
            let mut done = false;
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let kind = match event.event_type() {
                    EventType::Put => "PUT",
                    EventType::Delete => "DELETE",
                };
                let prev = event.prev_kv().map(self::kv).unwrap_or_default();
                seen.push(format!("{kind} {} prev [{prev}]", self::kv(kv)));
                done |= kv.key() == until.as_bytes();
            }
            if done {
                return;
            }
        }
        seen.push("stream ended".to_owned());
    };
    if tokio::time::timeout(limit, read).await.is_err() {
        seen.push(format!("no event on {until} within {limit:?}"));
    }
    seen
}

/// The script: every operation the embedded registry must answer as etcd.
async fn script(client: Client) -> Vec<String> {
    let mut t = Transcript {
        client,
        lines: Vec::new(),
    };
    // Keys, versions, revisions, previous values.
    t.put("a", "1", None).await;
    t.put("a", "2", Some(PutOptions::new().with_prev_key()))
        .await;
    t.put("a/x", "3", None).await;
    t.put("a/y", "4", None).await;
    t.put("b", "5", None).await;
    t.put("", "empty key", None).await;
    t.get("a", None).await;
    t.get("a", Some(GetOptions::new().with_revision(2))).await;
    t.get("a", Some(GetOptions::new().with_revision(100))).await;
    t.get("a", Some(GetOptions::new().with_prefix())).await;
    t.get("a", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await;
    t.get("a", Some(GetOptions::new().with_prefix().with_count_only()))
        .await;
    t.get("a", Some(GetOptions::new().with_prefix().with_keys_only()))
        .await;
    t.get("a", Some(GetOptions::new().with_from_key())).await;
    t.get("a/", Some(GetOptions::new().with_range("a0"))).await;
    t.get("a", Some(GetOptions::new().with_all_keys())).await;
    t.get(
        "a",
        Some(
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Value, SortOrder::Descend),
        ),
    )
    .await;
    t.get(
        "a",
        Some(
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Mod, SortOrder::None)
                .with_limit(1),
        ),
    )
    .await;
    t.get(
        "a",
        Some(GetOptions::new().with_prefix().with_min_mod_revision(4)),
    )
    .await;
    t.get("zzz", None).await;
    t.delete("nothing", None).await;
    t.delete(
        "a/",
        Some(DeleteOptions::new().with_prefix().with_prev_key()),
    )
    .await;
    t.put("a/x", "again", None).await;
    t.get("a/x", None).await;

    // Puts that keep the value or the lease.
    t.put("missing", "", Some(PutOptions::new().with_ignore_value()))
        .await;
    t.put(
        "b",
        "",
        Some(PutOptions::new().with_ignore_value().with_prev_key()),
    )
    .await;
    t.put("b", "x", Some(PutOptions::new().with_ignore_value()))
        .await;
    t.put("b", "6", Some(PutOptions::new().with_ignore_lease()))
        .await;
    t.put("b", "6", Some(PutOptions::new().with_lease(777)))
        .await;

    // Transactions: every compare target and result, nested ones, refusals.
    for (name, compare) in [
        ("value =", Compare::value("b", CompareOp::Equal, "6")),
        ("value !=", Compare::value("b", CompareOp::NotEqual, "6")),
        ("value <", Compare::value("b", CompareOp::Less, "7")),
        ("value >", Compare::value("b", CompareOp::Greater, "7")),
        (
            "value on missing",
            Compare::value("nope", CompareOp::NotEqual, "x"),
        ),
        ("version =", Compare::version("b", CompareOp::Equal, 3)),
        (
            "version missing",
            Compare::version("nope", CompareOp::Equal, 0),
        ),
        (
            "create <",
            Compare::create_revision("b", CompareOp::Less, 7),
        ),
        ("mod >", Compare::mod_revision("b", CompareOp::Greater, 7)),
        ("lease =", Compare::lease("b", CompareOp::Equal, 0)),
        (
            "range version",
            Compare::version("a", CompareOp::Greater, 0).with_prefix(),
        ),
    ] {
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::get("b", None)])
            .or_else([TxnOp::get("a", None)]);
        t.txn(&format!("txn {name}"), txn).await;
    }
    let nested = Txn::new()
        .when([Compare::version("b", CompareOp::Greater, 0)])
        .and_then([
            TxnOp::put("t1", "x", Some(PutOptions::new().with_prev_key())),
            TxnOp::get("t1", None),
            TxnOp::txn(
                Txn::new()
                    .when([Compare::version("t1", CompareOp::Equal, 0)])
                    .and_then([TxnOp::put("t2", "inner", None)])
                    .or_else([TxnOp::put("t3", "else", None)]),
            ),
            TxnOp::delete("a/x", Some(DeleteOptions::new().with_prev_key())),
        ]);
    t.txn("txn nested", nested).await;
    t.get("t", Some(GetOptions::new().with_prefix())).await;
    t.txn(
        "txn duplicate put",
        Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]),
    )
    .await;
    t.txn(
        "txn put in deleted range",
        Txn::new().and_then([
            TxnOp::delete("d", Some(DeleteOptions::new().with_prefix())),
            TxnOp::put("d1", "2", None),
        ]),
    )
    .await;
    t.txn(
        "txn put and delete from key",
        Txn::new().and_then([
            TxnOp::delete("d", Some(DeleteOptions::new().with_from_key())),
            TxnOp::put("d1", "2", None),
        ]),
    )
    .await;
    let many: Vec<TxnOp> = (0..129)
        .map(|n| TxnOp::put(format!("m{n}"), "v", None))
        .collect();
    t.txn("txn 129 ops", Txn::new().and_then(many)).await;
    let most: Vec<TxnOp> = (0..128)
        .map(|n| TxnOp::put(format!("m{n}"), "v", None))
        .collect();
    t.txn("txn 128 ops", Txn::new().and_then(most)).await;
    t.txn(
        "txn read only",
        Txn::new().and_then([TxnOp::get("b", None)]),
    )
    .await;
    t.txn("txn empty", Txn::new()).await;
    t.txn(
        "txn unknown lease",
        Txn::new().and_then([TxnOp::put(
            "u",
            "1",
            Some(PutOptions::new().with_lease(999)),
        )]),
    )
    .await;
    t.txn(
        "txn compacted read",
        Txn::new().and_then([TxnOp::get(
            "b",
            Some(GetOptions::new().with_revision(1_000)),
        )]),
    )
    .await;

    // Leases: grant, attach, time-to-live, revoke, unknown ids, expiry.
    let granted = t
        .client
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(1001)))
        .await;
    let line = outcome(granted, |r| format!("id {} ttl {}", r.id(), r.ttl()));
    t.note("grant 1001", line);
    let again = t
        .client
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(1001)))
        .await;
    let line = outcome(again, |r| format!("id {} ttl {}", r.id(), r.ttl()));
    t.note("grant 1001 again", line);
    t.put("l1", "x", Some(PutOptions::new().with_lease(1001)))
        .await;
    t.put("l2", "y", Some(PutOptions::new().with_lease(1001)))
        .await;
    let ttl = t
        .client
        .lease_time_to_live(1001, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await;
    let line = outcome(ttl, |r| {
        // etcd lists a lease's keys in no set order (a Go map's).
        let mut keys: Vec<String> = r
            .keys()
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        keys.sort();
        format!("granted {} keys {keys:?}", r.granted_ttl())
    });
    t.note("ttl 1001", line);
    let unknown = t.client.lease_time_to_live(4242, None).await;
    let line = outcome(unknown, |r| format!("ttl {}", r.ttl()));
    t.note("ttl unknown", line);
    let revoked = t.client.lease_revoke(4242).await;
    let line = outcome(revoked, |r| format!("rev {}", revision(r.header())));
    t.note("revoke unknown", line);
    let alive = t.client.lease_keep_alive(4242).await;
    let line = outcome(alive, |_| "kept alive".to_owned());
    t.note("keep-alive unknown", line);
    let revoked = t.client.lease_revoke(1001).await;
    let line = outcome(revoked, |r| format!("rev {}", revision(r.header())));
    t.note("revoke 1001", line);
    t.get("l", Some(GetOptions::new().with_prefix())).await;
    let big = t
        .client
        .lease_grant(9_000_000_001, Some(LeaseGrantOptions::new().with_id(1002)))
        .await;
    let line = outcome(big, |r| format!("id {} ttl {}", r.id(), r.ttl()));
    t.note("grant too long", line);

    // Watches: history with previous values, filters, the live tail.
    let mut history = t
        .client
        .watch(
            "a",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(2)
                    .with_prev_key(),
            ),
        )
        .await
        .expect("watch from revision 2");
    let mut no_deletes = t
        .client
        .watch(
            "",
            Some(
                WatchOptions::new()
                    .with_all_keys()
                    .with_start_revision(5)
                    .with_filters([etcd_client::WatchFilterType::NoDelete]),
            ),
        )
        .await
        .expect("watch without deletes");
    t.put("a/end", "sentinel", None).await;
    let events = watch_until(&mut history, "a/end").await;
    t.note("watch a from 2", events.join(" | "));
    let events = watch_until(&mut no_deletes, "a/end").await;
    t.note("watch all from 5 without deletes", events.join(" | "));
    let mut future = t
        .client
        .watch("f", Some(WatchOptions::new().with_start_revision(1_000)))
        .await
        .expect("watch from the future");
    let mut negative = t
        .client
        .watch("f", Some(WatchOptions::new().with_start_revision(-1)))
        .await
        .expect("watch from -1");
    t.put("f", "now", None).await;
    // etcd 3.4 never answers it: a moment is enough to see that.
    let events = watch_until_within(&mut negative, "f", Duration::from_millis(500)).await;
    t.note(NEGATIVE_WATCH, events.join(" | "));
    let current = {
        let r = t.client.get("f", None).await.expect("get f");
        revision(r.header())
    };
    for _ in current..1_000 {
        t.client.put("f", "later", None).await.expect("put f");
    }
    let events = watch_until(&mut future, "f").await;
    t.note("watch f from 1000", events.join(" | "));

    // Progress: asked for, it names the revision every watch is caught up to.
    let mut progress = t
        .client
        .watch("p", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch for progress");
    progress.request_progress().await.expect("request progress");
    let line = match tokio::time::timeout(WATCH_LIMIT, async {
        loop {
            match progress.message().await {
                Ok(Some(response)) if response.created() && response.events().is_empty() => {
                    continue;
                }
                Ok(Some(response)) => {
                    return format!(
                        "watch id {} rev {} events {} canceled {}",
                        response.watch_id(),
                        revision(response.header()),
                        response.events().len(),
                        response.canceled()
                    );
                }
                other => return format!("{other:?}"),
            }
        }
    })
    .await
    {
        Ok(line) => line,
        Err(_) => "no progress response".to_owned(),
    };
    t.note("request progress", line);

    // Compaction: what is refused after it.
    let compacted = t.client.compact(10, None).await;
    let line = outcome(compacted, |r| format!("rev {}", revision(r.header())));
    t.note("compact 10", line);
    let again = t.client.compact(10, None).await;
    let line = outcome(again, |r| format!("rev {}", revision(r.header())));
    t.note("compact 10 again", line);
    let future = t.client.compact(100_000, None).await;
    let line = outcome(future, |r| format!("rev {}", revision(r.header())));
    t.note("compact the future", line);
    t.get("b", Some(GetOptions::new().with_revision(9))).await;
    t.get("b", Some(GetOptions::new().with_revision(10))).await;
    let mut old = t
        .client
        .watch("b", Some(WatchOptions::new().with_start_revision(9)))
        .await
        .expect("watch from a compacted revision");
    let events = watch_until(&mut old, "b").await;
    t.note("watch b from 9", events.join(" | "));
    let mut at = t
        .client
        .watch(
            "",
            Some(WatchOptions::new().with_all_keys().with_start_revision(10)),
        )
        .await
        .expect("watch from the compaction revision");
    t.put("z", "end", None).await;
    let events = watch_until(&mut at, "z").await;
    t.note("watch all from 10", events.join(" | "));

    // Sizes: etcd's request limit.
    let value = "v".repeat(1_600_000);
    t.put("huge", &value, None).await;
    t.get("huge", Some(GetOptions::new().with_count_only()))
        .await;
    t.lines
}

#[tokio::test]
async fn the_embedded_registry_answers_every_operation_as_etcd_does() {
    within(LIMIT * 2, "the conformance script hangs", async {
        let (etcd, embedded) = servers().await;
        let (expected, actual) =
            tokio::join!(script(client(&etcd).await), script(client(&embedded).await));
        let mut differences = Vec::new();
        for (n, (want, got)) in expected.iter().zip(&actual).enumerate() {
            if want.starts_with(NEGATIVE_WATCH) {
                assert!(
                    got.contains("canceled") && got.contains("negative"),
                    "the embedded registry refuses a watch from -1: {got}"
                );
                continue;
            }
            if want != got {
                differences.push(format!("step {n}\n  etcd:     {want}\n  embedded: {got}"));
            }
        }
        assert_eq!(expected.len(), actual.len(), "both ran the whole script");
        assert!(
            differences.is_empty(),
            "{} of {} steps differ:\n{}",
            differences.len(),
            expected.len(),
            differences.join("\n")
        );
    })
    .await;
}

#[tokio::test]
async fn a_lease_that_expires_deletes_its_keys_at_one_revision_on_both() {
    within(LIMIT, "lease expiry hangs", async {
        let (etcd, embedded) = servers().await;
        let mut transcripts = Vec::new();
        for server in [&etcd, &embedded] {
            let mut client = client(server).await;
            client.put("k0", "before", None).await.expect("put");
            let lease = client
                .lease_grant(1, Some(LeaseGrantOptions::new().with_id(2001)))
                .await
                .expect("grant");
            for key in ["k2", "k1"] {
                client
                    .put(
                        key,
                        "leased",
                        Some(PutOptions::new().with_lease(lease.id())),
                    )
                    .await
                    .expect("put");
            }
            let mut stream = client
                .watch("k", Some(WatchOptions::new().with_prefix().with_prev_key()))
                .await
                .expect("watch");
            let mut seen = watch_until(&mut stream, "k2").await;
            let alive = client
                .lease_time_to_live(lease.id(), None)
                .await
                .expect("ttl");
            seen.push(format!("gone ttl {}", alive.ttl()));
            transcripts.push(seen);
        }
        assert_eq!(
            transcripts[0], transcripts[1],
            "etcd, then the embedded registry"
        );
        assert!(
            transcripts[0]
                .iter()
                .any(|line| line.starts_with("DELETE k1")),
            "the lease expired: {:?}",
            transcripts[0]
        );
    })
    .await;
}
