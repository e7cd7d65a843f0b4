//! Failures and configuration shared by every `visor` command, run as the
//! built binary: an unreachable registry (exit 5), usage errors (exit 2),
//! malformed stored values (skipped with a warning), and endpoints and root
//! taken from flags or the environment.

mod cli_support;
mod common;

use serde_json::Value;

use cli_support::{
    CLOSED_PORT, Cli, LIMIT, cells, column, register_app, visor, visor_with_env, words,
};
use common::TestRegistry;

#[tokio::test]
async fn a_malformed_app_is_skipped_with_a_warning_naming_its_key() {
    common::within(
        LIMIT,
        "etcd start, etcdctl or visor app list hangs",
        async {
            let t = TestRegistry::start().await;
            let cli = Cli::new(&t);
            register_app(&t, "api").await;
            register_app(&t, "web").await;
            let endpoint = t.etcd.endpoint();
            let put = tokio::task::spawn_blocking(move || {
                std::process::Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args([
                        "--endpoints",
                        &endpoint,
                        "put",
                        "/visor/apps/broken",
                        "not json",
                    ])
                    .output()
            })
            .await
            .expect("etcdctl thread")
            .expect("run etcdctl");
            assert!(put.status.success(), "etcdctl put failed: {put:?}");

            for json in [false, true] {
                let run = if json {
                    cli.json("app list").await
                } else {
                    cli.run("app list").await
                };
                run.assert_exited();
                assert_eq!(
                    run.code,
                    Some(0),
                    "a malformed value fails a listing: {}",
                    run.context()
                );
                assert!(
                    run.stderr.contains("/visor/apps/broken"),
                    "the warning should name the malformed key: {}",
                    run.context()
                );
                assert!(!run.stderr.contains("error"), "{}", run.context());
                let names: Vec<String> = if json {
                    let list: Value = serde_json::from_str(&run.stdout).expect("JSON listing");
                    column(&list, "name")
                } else {
                    cells(&run.stdout)
                        .into_iter()
                        .skip(1)
                        .map(|row| row[0].clone())
                        .collect()
                };
                assert_eq!(names, ["api", "web"], "{}", run.context());
            }

            let message = cli.run("app show broken").await.error(1);
            assert!(message.contains("/visor/apps/broken"), "{message}");
        },
    )
    .await;
}

#[tokio::test]
async fn an_unreachable_registry_exits_5_for_every_command() {
    common::within(
        LIMIT,
        "visor against a closed port does not give up",
        async {
            let commands = [
                "app list",
                "app register web --repo-url u --stack base",
                "app show web",
                "app unregister web",
                "env set web A=1",
                "env unset web A",
                "env list web",
                "proc register web http --command c",
                "proc unregister web http",
                "proc list web",
                "rev register web v1 --archive-url u",
                "rev unregister web v1",
                "rev list web",
                "scale web v1 http=1",
                "scale web v1",
                "instances --app web",
                "hosts",
                "tickets --host h1",
                "watch --from 1 --count 1",
            ];
            for command in commands {
                for format in ["table", "json"] {
                    let line = format!(
                        "--endpoints {CLOSED_PORT} --connect-timeout 1s -o {format} {command}"
                    );
                    let message = visor(&line).await.error(5);
                    assert!(
                        message.starts_with("registry unavailable")
                            && message.contains(CLOSED_PORT),
                        "the error names the endpoint: {message}"
                    );
                }
            }
        },
    )
    .await;
}

#[tokio::test]
async fn endpoints_and_root_come_from_flags_or_the_environment() {
    common::within(LIMIT, "etcd start or visor app list hangs", async {
        let t = TestRegistry::start().await;
        register_app(&t, "web").await;
        let endpoint = t.etcd.endpoint();

        let run =
            visor_with_env(words("-o json app list"), &[("VISOR_ENDPOINTS", &endpoint)]).await;
        assert_eq!(
            column(&run.json(), "name"),
            ["web"],
            "VISOR_ENDPOINTS names the registry"
        );

        // Another root is another registry: nothing of /visor shows there.
        let other = format!("--endpoints {endpoint} --root /other -o json");
        visor(&format!(
            "{other} app register api --repo-url u --stack base"
        ))
        .await
        .json();
        let list = visor(&format!("{other} app list")).await.json();
        assert_eq!(column(&list, "name"), ["api"]);
        let env = [
            ("VISOR_ENDPOINTS", endpoint.as_str()),
            ("VISOR_ROOT", "/other"),
        ];
        let run = visor_with_env(words("-o json app list"), &env).await;
        assert_eq!(
            column(&run.json(), "name"),
            ["api"],
            "VISOR_ROOT selects the root"
        );
        let apps = t.visor.apps().await.expect("apps");
        assert_eq!(apps.items.len(), 1, "the default root is untouched");
        assert_eq!(apps.items[0].name(), "web");
    })
    .await;
}

#[tokio::test]
async fn usage_errors_exit_2() {
    common::within(LIMIT, "visor argument parsing hangs", async {
        visor("").await.usage_error("Usage");
        visor("frobnicate").await.usage_error("frobnicate");
        visor("-o yaml app list").await.usage_error("yaml");
        visor("--connect-timeout forever app list")
            .await
            .usage_error("forever");
        visor("app").await.usage_error("Usage");
        visor("instances --colour red")
            .await
            .usage_error("--colour");
        visor("hosts extra").await.usage_error("extra");
    })
    .await;
}
