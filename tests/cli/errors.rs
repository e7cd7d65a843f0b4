//! Failures and configuration shared by every `visor` command, run as the
//! built binary: an unreachable registry (exit 5), usage errors (exit 2, one
//! line, nothing connected or written), malformed stored values (skipped with
//! a warning), and endpoints and root taken from flags or the environment.

use serde_json::Value;

use visor_testkit::cli::{CLOSED_PORT, Cli, LIMIT, cells, column, visor, visor_with_env, words};
use visor_testkit::fixtures::{raw_keys, register_app};
use visor_testkit::{TestRegistry, within};

#[tokio::test]
async fn a_malformed_app_is_skipped_with_a_warning_naming_its_key() {
    within(
        LIMIT,
        "etcd start, etcdctl or visor app list hangs",
        async {
            let t = TestRegistry::start().await;
            let cli = Cli::new(&t);
            register_app(&t, "api").await;
            register_app(&t, "web").await;
            let endpoint = t.server.endpoint();
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
    within(
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
    within(LIMIT, "etcd start or visor app list hangs", async {
        let t = TestRegistry::start().await;
        register_app(&t, "web").await;
        let endpoint = t.server.endpoint();

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
async fn usage_errors_are_one_line_and_exit_2() {
    within(LIMIT, "visor argument parsing hangs", async {
        let table = [
            ("", "'visor' requires a subcommand"),
            ("app", "'visor app' requires a subcommand"),
            ("relation settings", "requires a subcommand"),
            ("frobnicate", "frobnicate"),
            ("-o xml app list", "'xml'"),
            ("--connect-timeout forever app list", "forever"),
            ("instances --colour red", "--colour"),
            ("app list --outptu json", "--outptu"),
            ("hosts extra", "extra"),
            ("app register web", "--repo-url <REPO_URL> --stack <STACK>"),
            ("--cert c.pem app list", "--key"),
            ("app show Web", "invalid app name \"Web\""),
            ("--root visor app list", "root prefix \"visor\""),
        ];
        for (line, mention) in table {
            let message = visor(line).await.usage_error(mention);
            assert!(
                !message.contains("Usage") && !message.contains("For more information"),
                "{line:?}: {message}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn help_and_version_print_on_stdout_and_exit_0() {
    within(LIMIT, "visor --help hangs", async {
        for (line, mention) in [
            ("--help", "Usage: visor"),
            ("app --help", "Usage: visor app"),
            ("help scale", "Usage: visor scale"),
            ("--version", "visor "),
        ] {
            let run = visor(line).await;
            assert!(run.ok().contains(mention), "{}", run.context());
        }
    })
    .await;
}

#[tokio::test]
async fn a_refused_command_writes_nothing_not_even_the_schema() {
    within(
        LIMIT,
        "etcd start or a refused visor command hangs",
        async {
            let t = TestRegistry::start().await;
            let flags = format!("--endpoints {} --root /fresh", t.server.endpoint());
            let refused = [
                (
                    "app register BAD_NAME --repo-url u --stack base",
                    "invalid app name \"BAD_NAME\"",
                ),
                (
                    "app register web --repo-url u --stack 'Bad Stack'",
                    "invalid stack name",
                ),
                ("app show Web", "invalid app name"),
                ("env set web 1BAD=x", "invalid env name \"1BAD\""),
                ("env set web A=1 A=2", "env var A is given more than once"),
                ("env unset web A A", "env var A is given more than once"),
                ("env get web BAD-KEY", "invalid env name"),
                (
                    "proc register web Bad_Proc --command c",
                    "invalid proc name",
                ),
                ("proc list Web", "invalid app name"),
                ("rev register web V1 --archive-url u", "invalid rev name"),
                (
                    "scale web v1 http=3 http=4",
                    "proc http is given more than once",
                ),
                ("scale web v1 Http=3", "invalid proc name"),
                ("scale web V1", "invalid rev name"),
                ("instances --host 'Bad Host'", "invalid host name"),
                ("tickets --host 'Bad Host'", "invalid host name"),
                ("relation add web web:http", "overlap"),
                ("relation add web db --name Bad", "invalid relation name"),
                ("relation show Web-db", "invalid relation name"),
                ("relation settings set web-db Db a=1", "invalid unit name"),
                ("relation state web-db Db", "invalid unit name"),
                ("hooks Unit", "invalid unit name"),
                ("service register db --app Web", "invalid app name"),
                ("service show DB", "invalid service name"),
                ("endpoints DB", "invalid service name"),
                ("watch --from=-1", "-1"),
            ];
            for (command, mention) in refused {
                let run = visor(&format!("{flags} {command}")).await;
                assert_eq!(
                    raw_keys(&t, "/fresh").await,
                    Vec::<String>::new(),
                    "a refused `{command}` wrote: {}",
                    run.context()
                );
                run.usage_error(mention);
            }
            for root in ["fresh", "/fresh/", "/fresh//x"] {
                let endpoint = t.server.endpoint();
                visor(&format!("--endpoints {endpoint} --root {root} app list"))
                    .await
                    .usage_error(&format!("{root:?}"));
            }
            assert_eq!(
                raw_keys(&t, "/").await,
                ["/visor/schema"],
                "only the harness's own connection wrote"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn endpoints_are_checked_before_anything_is_dialled() {
    within(
        LIMIT,
        "etcd start or visor with a bad endpoint hangs",
        async {
            let t = TestRegistry::start().await;
            register_app(&t, "web").await;
            let live = t.server.endpoint();
            let address = live
                .strip_prefix("http://")
                .expect("a plain-text test etcd");

            // Each is refused as a usage error naming it, even where etcd listens.
            for bad in [
                format!("ftp://{address}"),
                format!("unix://{address}"),
                format!("{live}/v3"),
                "127.0.0.1".to_owned(),
                "http://127.0.0.1".to_owned(),
                ":2379".to_owned(),
                "http://:2379".to_owned(),
                "127.0.0.1:0".to_owned(),
                "127.0.0.1:99999".to_owned(),
                "::1:2379".to_owned(),
                format!("{live},ftp://{address}"),
            ] {
                let line = format!("--endpoints {bad} --connect-timeout 1s app list");
                let message = visor(&line).await.usage_error("--endpoints");
                let named = bad.rsplit(',').next().expect("one entry at least");
                assert!(message.contains(&format!("'{named}'")), "{bad}: {message}");

                let env = [("VISOR_ENDPOINTS", bad.as_str())];
                visor_with_env(words("--connect-timeout 1s app list"), &env)
                    .await
                    .usage_error(named);
            }

            // The documented forms: with a scheme, bare host:port, bracketed IPv6.
            for good in [live.clone(), address.to_owned()] {
                let list = visor(&format!("--endpoints {good} -o json app list"))
                    .await
                    .json();
                assert_eq!(column(&list, "name"), ["web"], "{good}");
            }
            for ipv6 in ["[::1]:1", "http://[::1]:1"] {
                let line = format!("--endpoints {ipv6} --connect-timeout 1s app list");
                let message = visor(&line).await.error(5);
                assert!(message.contains(ipv6), "accepted and dialled: {message}");
            }
        },
    )
    .await;
}
