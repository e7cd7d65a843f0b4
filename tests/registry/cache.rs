//! Registry caches against a real etcd: a cache lists then follows its prefix,
//! survives etcd being killed and restarted on the same data dir, converges
//! when the history it missed was compacted away (the relist path itself is
//! tested deterministically in `src/runtime/cache.rs`), leaves malformed
//! values out, and never claims a revision whose events a resumed watch has
//! not delivered yet.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use visor::model::App;
use visor::registry::{Kind, RegistryConfig};
use visor::runtime::cache::{self, CacheMetrics, CacheReader, Change};

use visor_testkit::fault_proxy::FaultProxy;
use visor_testkit::{TestRegistry, eventually, fixtures, within};

const LIMIT: Duration = Duration::from_secs(60);
const SEE: Duration = Duration::from_secs(20);

fn apps_cache(
    t: &TestRegistry,
    metrics: &prometheus::Registry,
    shutdown: &CancellationToken,
) -> (
    CacheReader<App>,
    tokio::sync::mpsc::UnboundedReceiver<Change>,
) {
    let registry = t.visor.registry().clone();
    let prefix = registry.keys().apps();
    let metrics = CacheMetrics::register(metrics).expect("metrics");
    cache::spawn(
        registry,
        Kind::App,
        prefix,
        cache::Indexes::new(),
        metrics,
        shutdown.clone(),
    )
}

fn names(reader: &CacheReader<App>) -> Vec<String> {
    reader
        .list()
        .1
        .iter()
        .map(|a| a.name().to_owned())
        .collect()
}

async fn sees(reader: &CacheReader<App>, expected: &[&str], what: &str) {
    let expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    eventually(SEE, what, || {
        let now = names(reader);
        let expected = expected.clone();
        async move { (now == expected).then_some(()) }
    })
    .await;
}

fn counter(metrics: &prometheus::Registry, name: &str) -> u64 {
    metrics
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| {
            family
                .get_metric()
                .iter()
                .map(|m| m.get_counter().get_value() as u64)
                .collect::<Vec<_>>()
        })
        .sum()
}

#[tokio::test]
async fn lists_then_follows_creates_updates_and_deletes() {
    within(
        LIMIT,
        "the cache never syncs or never sees a change",
        async {
            let t = TestRegistry::start().await;
            t.visor
                .register_app("a", fixtures::app("git://a"))
                .await
                .expect("a");
            let (metrics, shutdown) = (prometheus::Registry::new(), CancellationToken::new());
            let (mut reader, mut changes) = apps_cache(&t, &metrics, &shutdown);
            reader.wait_synced().await;
            assert_eq!(names(&reader), ["a"]);
            assert_eq!(changes.recv().await, Some(Change::Relisted));

            let b = t
                .visor
                .register_app("b", fixtures::app("git://b"))
                .await
                .expect("b");
            sees(&reader, &["a", "b"], "a created app appears").await;
            assert_eq!(changes.recv().await, Some(Change::Upserted(b.key.clone())));
            assert!(
                reader.revision() >= b.mod_revision,
                "the cache revision follows the registry"
            );
            t.visor.unregister_app("a").await.expect("unregister");
            sees(&reader, &["b"], "a deleted app disappears").await;

            fixtures::etcdctl_put(&t, "/visor/apps/broken", "not json");
            t.visor
                .register_app("c", fixtures::app("git://c"))
                .await
                .expect("c");
            sees(
                &reader,
                &["b", "c"],
                "a malformed value is left out, later writes still arrive",
            )
            .await;
            assert_eq!(counter(&metrics, "visor_malformed_objects_total"), 1);
            shutdown.cancel();
        },
    )
    .await;
}

#[tokio::test]
async fn survives_etcd_restart_and_converges_after_compaction() {
    within(LIMIT, "the cache never recovers", async {
        let mut t = TestRegistry::start().await;
        let (metrics, shutdown) = (prometheus::Registry::new(), CancellationToken::new());
        let (mut reader, _changes) = apps_cache(&t, &metrics, &shutdown);
        reader.wait_synced().await;

        // Killed and restarted on the same data dir: the watch resumes where it was.
        t.server.restart().await.expect("restart etcd");
        t.visor
            .register_app("after-restart", fixtures::app("git://x"))
            .await
            .expect("write after restart");
        sees(
            &reader,
            &["after-restart"],
            "a write after an etcd restart reaches the cache",
        )
        .await;
        assert!(
            counter(&metrics, "visor_watch_restarts_total") >= 1,
            "the restart was noticed"
        );

        // Down again; meanwhile nothing can be watched, and on the way back the
        // history it missed is compacted away: only a relist can catch up.
        t.server.kill();
        t.server.restart().await.expect("restart etcd");
        for i in 0..5 {
            t.visor
                .register_app(&format!("app{i}"), fixtures::app("git://x"))
                .await
                .expect("write");
        }
        t.visor
            .unregister_app("after-restart")
            .await
            .expect("delete");
        let revision = fixtures::raw_revision(&t).await;
        t.raw().compact(revision, None).await.expect("compact");
        sees(
            &reader,
            &["app0", "app1", "app2", "app3", "app4"],
            "the cache converges after compaction",
        )
        .await;
        shutdown.cancel();
    })
    .await;
}

#[tokio::test]
async fn a_quiet_cache_waited_on_reaches_a_revision_written_elsewhere_and_only_then() {
    within(LIMIT, "a wait for a revision never resolves", async {
        let t = TestRegistry::start().await;
        let shutdown = CancellationToken::new();
        let (reader, _changes) = apps_cache(&t, &prometheus::Registry::new(), &shutdown);
        t.visor
            .register_app("web", fixtures::app("git://web"))
            .await
            .expect("app");
        sees(&reader, &["web"], "the cache lists web").await;

        // A write outside the prefix: the watch says nothing of it, yet a
        // reader waiting for its revision is answered (the prefix is quiet).
        let elsewhere = t
            .visor
            .register_rev("web", "v1", fixtures::revision("https://a"))
            .await
            .expect("rev")
            .mod_revision;
        assert!(reader.wait_for_revision(elsewhere).await);
        assert!(reader.revision() >= elsewhere);
        assert_eq!(names(&reader), ["web"]);

        // A change in the prefix is never jumped over: once the cache is at
        // its revision, it shows it.
        let added = t
            .visor
            .register_app("api", fixtures::app("git://api"))
            .await
            .expect("app")
            .mod_revision;
        assert!(reader.wait_for_revision(added).await);
        assert_eq!(names(&reader), ["api", "web"]);
        shutdown.cancel();
    })
    .await;
}

#[tokio::test]
async fn a_resumed_watch_claims_no_revision_before_its_events_arrive() {
    within(LIMIT, "the resumed watch never catches up", async {
        let t = TestRegistry::start().await;
        let proxy = FaultProxy::start(&t.server.endpoint(), t.raw()).await;
        let through_proxy = visor::Visor::connect(&RegistryConfig::new([proxy.endpoint()]))
            .await
            .expect("connect through the proxy");
        let registry = through_proxy.registry().clone();
        let (metrics, shutdown) = (prometheus::Registry::new(), CancellationToken::new());
        let cache_metrics = CacheMetrics::register(&metrics).expect("metrics");
        let prefix = registry.keys().apps();
        let (mut reader, _changes) = cache::spawn::<App>(
            registry,
            Kind::App,
            prefix,
            cache::Indexes::new(),
            cache_metrics,
            shutdown.clone(),
        );
        reader.wait_synced().await;

        // The cache's connection hangs while more revisions are written than
        // etcd sends in one batch of a catching-up watch (1,000): the first
        // batch's header carries the store's revision, the rest follow.
        proxy.pause();
        let value = serde_json::to_string(&fixtures::app("git://x")).expect("json");
        let mut raw = t.raw();
        const WRITTEN: usize = 2_500;
        for i in 0..WRITTEN {
            raw.put(format!("/visor/apps/app-{i}"), value.clone(), None)
                .await
                .expect("put");
        }
        let target = fixtures::raw_revision(&t).await;
        proxy.cut_and_resume();

        assert!(reader.wait_for_revision(target).await, "the cache stopped");
        assert_eq!(
            names(&reader).len(),
            WRITTEN,
            "at revision {target} the cache holds every app written up to it"
        );
        shutdown.cancel();
    })
    .await;
}
