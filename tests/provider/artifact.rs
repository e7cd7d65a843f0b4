//! `artifact.fetch` against real files and a real HTTP(S) server on
//! loopback: archives and directories unpacked once per revision, digests
//! checked, hostile archives refused whole with nothing cached, limits, and
//! the task through the provider framework.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use visor::provider::Provider;
use visor::provider::exec::artifact::{ArtifactError, Fetched, Refusal, Sha256};
use visor::provider::exec::{self, ExecProvider};
use visor::telemetry::Chain;
use visor_testkit::within;

use crate::archives::{ArchiveServer, Item, Pki, Store, fetch_args, ordinary, tar_gz};
use crate::support::{Running, SocketDir};

/// Bound on one test.
const LIMIT: Duration = Duration::from_secs(60);

fn mode(path: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("unpacked")
        .permissions()
        .mode()
        & 0o7777
}

/// What an ordinary revision unpacks to, checked in `dir`.
fn assert_ordinary(dir: &std::path::Path) {
    let install = dir.join("hooks/install");
    assert_eq!(
        std::fs::read(&install).expect("the hook"),
        b"#!/bin/sh\necho installed\n"
    );
    assert_eq!(mode(&install), 0o755);
    assert_eq!(
        mode(&dir.join("bin/web")),
        0o755,
        "no set-id or group-write bit is kept"
    );
    let link = dir.join("hooks/db-relation-changed");
    assert_eq!(
        std::fs::read_link(&link).expect("a symlink"),
        std::path::Path::new("install")
    );
    assert!(dir.join("empty").is_dir());
}

#[tokio::test]
async fn a_local_archive_is_unpacked_once_with_its_digest() {
    within(LIMIT, "a fetch hangs", async {
        let store = Store::new();
        let bytes = ordinary();
        let url = store.local_file("web-v1.tar.gz", &bytes);
        let fetched = store
            .store
            .fetch(fetch_args("v1", &url))
            .await
            .expect("fetched");
        assert_eq!(
            fetched,
            Fetched {
                dir: store.app_dir().join("v1"),
                sha256: Some(Sha256::of(&bytes)),
                cached: false,
            }
        );
        assert_ordinary(&fetched.dir);
        assert_eq!(
            store.app_entries(),
            [".v1.json", "v1"],
            "the revision and its record"
        );
        // The archive changes on disk: the revision is unpacked already.
        std::fs::remove_file(store.data_dir().join("web-v1.tar.gz")).expect("remove the archive");
        let again = store
            .store
            .fetch(fetch_args("v1", &url))
            .await
            .expect("cached");
        assert_eq!(
            again,
            Fetched {
                cached: true,
                ..fetched
            }
        );
    })
    .await;
}

#[tokio::test]
async fn a_local_directory_is_copied_under_the_same_rules() {
    within(LIMIT, "a fetch hangs", async {
        let store = Store::new();
        let source = store.data_dir().join("src");
        std::fs::create_dir_all(source.join("hooks")).expect("source tree");
        std::fs::write(source.join("hooks/install"), "#!/bin/sh\n").expect("hook");
        std::fs::set_permissions(
            source.join("hooks/install"),
            std::fs::Permissions::from_mode(0o775),
        )
        .expect("chmod");
        std::os::unix::fs::symlink("hooks/install", source.join("install")).expect("symlink");
        let url = format!("file://{}", source.display());
        let fetched = store
            .store
            .fetch(fetch_args("v1", &url))
            .await
            .expect("copied");
        assert_eq!((fetched.sha256.as_ref(), fetched.cached), (None, false));
        assert_eq!(mode(&fetched.dir.join("hooks/install")), 0o755);
        assert_eq!(
            std::fs::read_link(fetched.dir.join("install")).expect("a symlink"),
            std::path::Path::new("hooks/install")
        );

        let mut with_digest = fetch_args("v2", &url);
        with_digest.sha256 = Some(Sha256::of(b"anything"));
        let refused = store
            .store
            .fetch(with_digest)
            .await
            .expect_err("no digest for a directory");
        assert!(
            matches!(refused, ArtifactError::DigestOfDirectory { .. }),
            "{refused:?}"
        );

        std::os::unix::fs::symlink("/etc", source.join("etc")).expect("symlink out");
        let refused = store
            .store
            .fetch(fetch_args("v3", &url))
            .await
            .expect_err("refused");
        assert_eq!(
            refused.to_string(),
            format!("refusing archive {url}: entry etc links to /etc, outside the directory")
        );
        assert_eq!(
            store.app_entries(),
            [".v1.json", "v1"],
            "nothing of v2 or v3 is cached"
        );
    })
    .await;
}

#[tokio::test]
async fn a_digest_is_checked_and_a_mismatch_caches_nothing() {
    within(LIMIT, "a fetch hangs", async {
        let store = Store::new();
        let bytes = ordinary();
        let url = store.local_file("web.tar.gz", &bytes);
        let wrong = Sha256::of(b"another archive");
        let mut args = fetch_args("v1", &url);
        args.sha256 = Some(wrong.clone());
        let refused = store.store.fetch(args.clone()).await.expect_err("mismatch");
        let actual = Sha256::of(&bytes);
        assert_eq!(
            refused.to_string(),
            format!("archive {url} has sha256 {actual}, not the expected {wrong}")
        );
        assert!(
            store.app_entries().is_empty(),
            "nothing cached: {:?}",
            store.app_entries()
        );

        args.sha256 = Some(actual.clone());
        let fetched = store
            .store
            .fetch(args.clone())
            .await
            .expect("the right digest");
        assert_eq!(fetched.sha256, Some(actual));
        // Asking the cached revision for another digest is refused too.
        args.sha256 = Some(wrong);
        let refused = store
            .store
            .fetch(args)
            .await
            .expect_err("cached from another archive");
        assert!(
            matches!(refused, ArtifactError::CachedDigestMismatch { .. }),
            "{refused:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_file_that_is_not_a_gzip_compressed_tar_is_refused() {
    within(LIMIT, "a fetch hangs", async {
        let store = Store::new();
        let url = store.local_file("web.zip", b"PK\x03\x04 not a tar at all");
        let refused = store
            .store
            .fetch(fetch_args("v1", &url))
            .await
            .expect_err("refused");
        assert!(
            matches!(refused, ArtifactError::ReadArchive { .. }),
            "{refused:?}"
        );
        assert_eq!(
            Chain(&refused).to_string(),
            format!("reading archive {url}: invalid gzip header")
        );
        assert!(
            store.app_entries().is_empty(),
            "nothing cached: {:?}",
            store.app_entries()
        );
    })
    .await;
}

#[tokio::test]
async fn hostile_archives_are_refused_whole_naming_the_entry() {
    within(LIMIT, "a fetch hangs", async {
        let store = Store::new();
        let cases: Vec<(&str, Vec<Item<'_>>, &str, Refusal)> = vec![
            (
                "parent",
                vec![Item::File("../../evil", b"x", 0o644)],
                "../../evil",
                Refusal::ParentDir,
            ),
            (
                "absolute",
                vec![Item::File("/tmp/evil", b"x", 0o644)],
                "/tmp/evil",
                Refusal::Absolute,
            ),
            (
                "symlink out",
                vec![Item::Symlink("etc", "../../../etc")],
                "etc",
                Refusal::LinkEscapes("../../../etc".into()),
            ),
            (
                "absolute symlink",
                vec![Item::Symlink("sh", "/bin/sh")],
                "sh",
                Refusal::LinkEscapes("/bin/sh".into()),
            ),
            (
                "write through a symlink",
                vec![Item::Symlink("d", "."), Item::File("d/x", b"x", 0o644)],
                "d/x",
                Refusal::ThroughSymlink("d".into()),
            ),
            (
                "symlinks escaping together",
                vec![Item::Symlink("s", "."), Item::Symlink("t", "s/../evil")],
                "t",
                Refusal::LinkEscapes("s/../evil".into()),
            ),
            (
                "hard link out",
                vec![Item::Hardlink("shadow", "../../../etc/shadow")],
                "shadow",
                Refusal::HardlinkTarget("../../../etc/shadow".into()),
            ),
            (
                "fifo",
                vec![Item::Fifo("pipe")],
                "pipe",
                Refusal::Special("fifo"),
            ),
        ];
        for (revision, (what, mut items, entry, reason)) in cases.into_iter().enumerate() {
            items.insert(0, Item::File("ok", b"fine", 0o644));
            let url = store.local_file(&format!("hostile-{revision}.tar.gz"), &tar_gz(&items));
            let revision = format!("v{revision}");
            let refused = store
                .store
                .fetch(fetch_args(&revision, &url))
                .await
                .expect_err(what);
            assert!(
                matches!(&refused, ArtifactError::UnsafeEntry { entry: e, reason: r, .. }
                    if e.to_str() == Some(entry) && *r == reason),
                "{what}: {refused:?}"
            );
            assert_eq!(
                refused.to_string(),
                format!("refusing archive {url}: entry {entry} {reason}"),
                "{what}"
            );
        }
        assert!(
            store.app_entries().is_empty(),
            "nothing cached: {:?}",
            store.app_entries()
        );
        for outside in ["evil", "../evil", "artifacts/evil", "artifacts/web/evil"] {
            assert!(
                !store.data_dir().join(outside).exists(),
                "{outside} was written"
            );
        }
        assert!(
            !std::path::Path::new("/tmp/evil").exists(),
            "/tmp/evil was written"
        );
    })
    .await;
}

#[tokio::test]
async fn an_http_archive_is_downloaded_once() {
    within(LIMIT, "a fetch or the archive server hangs", async {
        let store = Store::new();
        let server = ArchiveServer::http().await;
        let bytes = ordinary();
        let url = server.serve("web-v1.tar.gz", bytes.clone());
        let mut args = fetch_args("v1", &url);
        args.sha256 = Some(Sha256::of(&bytes));
        let fetched = store.store.fetch(args.clone()).await.expect("downloaded");
        assert_ordinary(&fetched.dir);
        assert_eq!(fetched.sha256, Some(Sha256::of(&bytes)));
        let again = store.store.fetch(args).await.expect("cached");
        assert!(again.cached);
        assert_eq!(server.requests(), 1, "the second fetch downloads nothing");

        let missing = store
            .store
            .fetch(fetch_args(
                "v2",
                &format!("http://{}/missing.tar.gz", server.addr),
            ))
            .await
            .expect_err("not served");
        assert!(
            missing
                .to_string()
                .ends_with("the server answered 404 Not Found"),
            "{missing}"
        );
        assert_eq!(
            store.app_entries(),
            [".v1.json", "v1"],
            "nothing of v2 is cached"
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_fetches_of_one_revision_do_the_work_once() {
    within(
        LIMIT,
        "concurrent fetches deadlock on the revision's lock",
        async {
            let first = Store::new();
            // A second store over the same cache: another process's, sharing no
            // in-process lock, only the lock files.
            let second = Store::open(first.data_dir(), |config| config);
            let server = ArchiveServer::http().await;
            let url = server.serve("web.tar.gz", ordinary());
            let fetches = (0..8).map(|i| {
                let store = if i % 2 == 0 {
                    first.store.clone()
                } else {
                    second.clone()
                };
                let args = fetch_args("v1", &url);
                async move { store.fetch(args).await.expect("fetched") }
            });
            let fetched = join_all(fetches).await;
            assert_eq!(server.requests(), 1, "one download for eight fetches");
            assert_eq!(fetched.iter().filter(|fetched| !fetched.cached).count(), 1);
            assert!(
                fetched
                    .iter()
                    .all(|fetched| fetched.dir == first.app_dir().join("v1"))
            );
            assert_ordinary(&fetched[0].dir);
        },
    )
    .await;
}

#[tokio::test]
async fn an_https_archive_is_fetched_with_an_extra_root_and_refused_without() {
    within(LIMIT, "a fetch or the archive server hangs", async {
        let pki = Pki::generate();
        let server = ArchiveServer::https(&pki).await;
        let url = server.serve("web.tar.gz", ordinary());

        let untrusting = Store::new();
        let refused = untrusting
            .store
            .fetch(fetch_args("v1", &url))
            .await
            .expect_err("unknown CA");
        assert!(
            matches!(refused, ArtifactError::Request { .. }),
            "{refused:?}"
        );
        let chain = Chain(&refused).to_string();
        assert!(chain.contains("UnknownIssuer"), "{chain}");
        assert!(untrusting.app_entries().is_empty());

        let trusting = Store::with(|mut config| {
            config.extra_root_certs = vec![pki.ca()];
            config
        });
        let fetched = trusting
            .store
            .fetch(fetch_args("v1", &url))
            .await
            .expect("trusted");
        assert_ordinary(&fetched.dir);
    })
    .await;
}

#[tokio::test]
async fn downloads_and_unpacked_trees_are_bounded() {
    within(LIMIT, "a fetch or the archive server hangs", async {
        let server = ArchiveServer::http().await;
        let big = vec![b'a'; 64 * 1024];
        let archive = tar_gz(&[Item::File("big", &big, 0o644)]);
        let url = server.serve("big.tar.gz", archive.clone());

        let small_downloads = Store::with(|mut config| {
            config.max_download_bytes = 100;
            config
        });
        let refused = small_downloads
            .store
            .fetch(fetch_args("v1", &url))
            .await
            .expect_err("too large");
        assert_eq!(
            refused.to_string(),
            format!("downloading {url}: the archive is larger than the limit of 100 bytes")
        );
        assert!(small_downloads.app_entries().is_empty());

        let small_trees = Store::with(|mut config| {
            config.max_unpacked_bytes = 1024;
            config
        });
        assert!(
            archive.len() < 1024,
            "the archive compresses below the tree's limit"
        );
        let refused = small_trees
            .store
            .fetch(fetch_args("v1", &url))
            .await
            .expect_err("too large");
        assert_eq!(
            refused.to_string(),
            format!("refusing archive {url}: it unpacks to more than the limit of 1024 bytes")
        );
        assert!(small_trees.app_entries().is_empty());
    })
    .await;
}

#[tokio::test]
async fn artifact_fetch_is_served_by_the_exec_provider_and_bad_args_are_refused_in_the_ack() {
    within(LIMIT, "the provider or the call hangs", async {
        let store = Store::new();
        let sockets = SocketDir::new();
        let exec = ExecProvider::new(store.data_dir()).expect("an exec provider");
        let provider = exec::register(Provider::new(sockets.config("exec", 50)), &exec);
        let _running = Running::start(provider).await;
        let caller = sockets.caller().await;
        let url = store.local_file("web.tar.gz", &ordinary());

        let reply = caller
            .call(
                "artifact.fetch",
                json!({"app": "web", "revision": "v1", "url": url}),
            )
            .await
            .expect("acknowledged");
        let fetched: Fetched =
            serde_json::from_value(reply.response.into_result().expect("fetched"))
                .expect("a fetch result");
        assert_eq!(fetched.dir, store.app_dir().join("v1"));
        assert_ordinary(&fetched.dir);

        for args in [
            json!({"app": "web", "revision": "..", "url": url}),
            json!({"app": "web", "revision": "v2", "url": "ftp://example.com/web.tar.gz"}),
            json!({"app": "web", "revision": "v2", "url": url, "sha256": "abc"}),
            json!({"app": "web", "revision": "v2", "url": url, "checksum": "x"}),
        ] {
            let refused = caller
                .call("artifact.fetch", args.clone())
                .await
                .expect_err("refused");
            assert!(
                refused.to_string().contains("invalid args"),
                "{args}: {refused}"
            );
        }
        assert_eq!(
            store.app_entries(),
            [".v1.json", "v1"],
            "no refused request ran"
        );
    })
    .await;
}
