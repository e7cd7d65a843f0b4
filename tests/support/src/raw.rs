//! Raw etcd requests and watches, each bounded: what Visor's API does not
//! offer (counting, compacting, defragmenting, watching raw keys), for the
//! benchmarks' baselines and the tests' inspection of what Visor wrote.
//!
//! Invariant: every request or wait here is bounded, failing with a message
//! that names what did not happen.

use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, TxnOp, WatchOptions, WatchStream,
};

/// How long one raw etcd request may take (a defragmentation is the longest).
pub const REQUEST_LIMIT: Duration = Duration::from_secs(120);

/// A watch response can carry many revisions of events; don't cap it at tonic's 4 MiB.
const WATCH_MESSAGE_LIMIT: usize = 1 << 30;

/// Awaits `request`, failing with `what` if it takes longer than [`REQUEST_LIMIT`].
pub async fn bounded<T>(what: &str, request: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(REQUEST_LIMIT, request)
        .await
        .unwrap_or_else(|_| panic!("no answer within {REQUEST_LIMIT:?} to: {what}"))
}

/// Deletes `prefix`, then compacts and defragments, so that the next write
/// phase meets an etcd in the state the previous one met: tombstones and
/// history of 2N deleted keys otherwise slow it down (3× at N = 100k).
pub async fn delete_prefix(raw: &Client, prefix: &str) {
    let mut kv = raw.kv_client();
    let deleted = bounded(
        &format!("delete {prefix}"),
        kv.delete(
            prefix,
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("delete {prefix}: {e}"));
    let revision = deleted.header().map_or(0, |h| h.revision());
    bounded(
        "compact",
        kv.compact(
            revision,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("compact at {revision}: {e}"));
    bounded("defragment", raw.maintenance_client().defragment())
        .await
        .expect("defragment");
}

/// How many keys `prefix` holds, counted by etcd.
pub async fn count_keys(raw: &Client, prefix: &str) -> i64 {
    let mut kv = raw.kv_client();
    let options = GetOptions::new().with_prefix().with_count_only();
    bounded(&format!("count {prefix}"), kv.get(prefix, Some(options)))
        .await
        .unwrap_or_else(|e| panic!("count {prefix}: {e}"))
        .count()
}

/// etcd's current revision.
pub async fn current_revision(raw: &Client) -> i64 {
    bounded("read the current revision", try_current_revision(raw))
        .await
        .expect("read the current revision")
}

/// etcd's current revision, or why it could not be read (unbounded: for
/// callers that must not panic, such as the fault proxy).
pub async fn try_current_revision(raw: &Client) -> Result<i64, etcd_client::Error> {
    let options = GetOptions::new().with_count_only();
    let response = raw.kv_client().get("/", Some(options)).await?;
    Ok(response.header().map_or(0, |h| h.revision()))
}

/// A watch of `prefix` from the next revision, created before it returns.
pub async fn watch_prefix(raw: &Client, prefix: &str) -> WatchStream {
    let from = current_revision(raw).await + 1;
    let mut client = raw
        .watch_client()
        .max_decoding_message_size(WATCH_MESSAGE_LIMIT);
    let options = WatchOptions::new().with_prefix().with_start_revision(from);
    let mut stream = bounded(
        &format!("watch {prefix}"),
        client.watch(prefix, Some(options)),
    )
    .await
    .unwrap_or_else(|e| panic!("watch {prefix}: {e}"));
    let created = next_events(&mut stream, Duration::from_secs(10), "the watch is created").await;
    assert!(created.is_empty(), "a fresh watch starts with no events");
    stream
}

/// The events of the next watch response; panics naming `what` after `limit`.
pub async fn next_events(
    stream: &mut WatchStream,
    limit: Duration,
    what: &str,
) -> Vec<etcd_client::Event> {
    next_response(stream, limit, what)
        .await
        .unwrap_or_else(|| panic!("timed out after {limit:?} waiting until {what}"))
}

/// The events of the next watch response, or None after `limit`; panics
/// naming `what` if the watch fails.
pub async fn next_response(
    stream: &mut WatchStream,
    limit: Duration,
    what: &str,
) -> Option<Vec<etcd_client::Event>> {
    let response = tokio::time::timeout(limit, stream.message())
        .await
        .ok()?
        .unwrap_or_else(|e| panic!("watch failed while waiting until {what}: {e}"))
        .unwrap_or_else(|| panic!("watch ended while waiting until {what}"));
    assert!(
        !response.canceled() && response.compact_revision() == 0,
        "watch cancelled while waiting until {what}: {}",
        response.cancel_reason()
    );
    Some(response.events().to_vec())
}

/// Whether `event` created its key (a first put, `version == 1`).
pub fn is_creation(event: &etcd_client::Event) -> bool {
    event.event_type() == EventType::Put && event.kv().is_some_and(|kv| kv.version() == 1)
}

/// Waits until the lease behind the leader key under `leader_prefix` has been
/// renewed since the call: a defragmentation stalls etcd for a moment, and
/// the leader should have its lease back to full before a measured phase.
pub async fn wait_leader_renewed(raw: &Client, leader_prefix: &str) {
    let mut kv = raw.kv_client();
    let listed = bounded(
        "read the leader key",
        kv.get(leader_prefix, Some(GetOptions::new().with_prefix())),
    )
    .await
    .expect("read the leader key");
    let lease = listed
        .kvs()
        .iter()
        .map(|kv| kv.lease())
        .find(|&lease| lease != 0)
        .unwrap_or_else(|| panic!("no leader key under {leader_prefix}"));
    let remaining = || {
        let mut leases = raw.lease_client();
        async move {
            bounded("read the leader's lease", leases.time_to_live(lease, None))
                .await
                .expect("read the leader's lease")
                .ttl()
        }
    };
    // The remaining TTL falls between renewals and jumps back at one.
    let (mut lowest, limit) = (remaining().await, Duration::from_secs(60));
    let deadline = Instant::now() + limit;
    loop {
        let now = remaining().await;
        if now > lowest {
            return;
        }
        lowest = now;
        assert!(
            Instant::now() < deadline,
            "the leader's lease {lease:x} was not renewed within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A key that must exist, standing in for the controller's leader fence in
/// the benchmarks' guarded raw baselines: each raw transaction compares it as
/// Visor's compare their leader key, so both carry the same guard.
pub struct FenceStandIn {
    key: String,
    create_revision: i64,
}

impl FenceStandIn {
    /// Stands in the existing key `key`.
    pub async fn existing(raw: &Client, key: String) -> Self {
        let read = bounded(
            "read the fence stand-in",
            raw.kv_client().get(key.as_str(), None),
        )
        .await
        .expect("read the fence stand-in");
        let create_revision = read
            .kvs()
            .first()
            .expect("the fence stand-in exists")
            .create_revision();
        Self {
            key,
            create_revision,
        }
    }

    /// Writes `key` and stands it in.
    pub async fn written(raw: &Client, key: String) -> Self {
        let written = bounded(
            "write the fence stand-in",
            raw.kv_client().put(key.as_str(), "bench", None),
        )
        .await
        .expect("write the fence stand-in");
        let create_revision = written.header().map_or(0, |h| h.revision());
        Self {
            key,
            create_revision,
        }
    }

    /// The compare a guarded transaction carries, and the read that tells
    /// why it failed.
    pub fn guard(&self) -> (Compare, TxnOp) {
        let key = self.key.as_str();
        (
            Compare::create_revision(key, CompareOp::Equal, self.create_revision),
            TxnOp::get(key, None),
        )
    }
}
