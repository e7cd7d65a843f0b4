//! Table tests of the endpoint rules: defaults, validation, URLs, and what
//! counts as a birth or a death.

use super::*;

fn endpoint(ports: &[(&str, &str)]) -> ServiceEndpoint {
    ServiceEndpoint {
        hostname: "db1.example.com".into(),
        ports: ports
            .iter()
            .map(|(s, p)| ((*s).to_owned(), (*p).to_owned()))
            .collect(),
        private_hostname: String::new(),
        private_ports: BTreeMap::new(),
        user: String::new(),
        password: String::new(),
        critical: false,
        host: None,
        instance: None,
        departed: false,
        departed_at: None,
        registered_at: DateTime::<Utc>::UNIX_EPOCH,
    }
}

#[test]
fn private_address_defaults_to_the_public_one() {
    let valid = endpoint(&[("http", "80")]).validate().expect("valid");
    assert_eq!(valid.private_hostname, "db1.example.com");
    assert_eq!(valid.private_ports, valid.ports);
    let mut own = endpoint(&[("http", "80")]);
    own.private_hostname = "10.0.0.1".into();
    own.private_ports.insert("http".into(), "8080".into());
    let valid = own.validate().expect("valid");
    assert_eq!(valid.private_hostname, "10.0.0.1");
    assert_eq!(valid.private_ports["http"], "8080");
}

#[test]
fn bad_documents_are_refused_naming_the_field() {
    let mut empty_host = endpoint(&[("http", "80")]);
    empty_host.hostname.clear();
    let table: Vec<(ServiceEndpoint, &str)> = vec![
        (empty_host, "invalid hostname \"\": must not be empty"),
        (endpoint(&[]), "ports: at least one port is required"),
        (
            endpoint(&[("http", "abc")]),
            "invalid port \"abc\" for scheme \"http\" in ports",
        ),
        (
            endpoint(&[("http", "0")]),
            "in ports: must be a number from 1 to 65535",
        ),
        (endpoint(&[("http", "70000")]), "invalid port \"70000\""),
        (endpoint(&[("http", "+80")]), "invalid port \"+80\""),
        (
            endpoint(&[("1http", "80")]),
            "invalid scheme \"1http\" in ports",
        ),
        (endpoint(&[("", "80")]), "invalid scheme \"\" in ports"),
    ];
    for (document, message) in table {
        let error = document.validate().expect_err(message).to_string();
        assert!(
            error.contains(message),
            "{error:?} should contain {message:?}"
        );
    }
    let mut private = endpoint(&[("http", "80")]);
    private.private_ports.insert("http".into(), "x".into());
    let error = private
        .validate()
        .expect_err("bad private port")
        .to_string();
    assert!(error.contains("in private_ports"), "{error}");
    let mut spaced = endpoint(&[("http", "80")]);
    spaced.private_hostname = "a b".into();
    let error = spaced
        .validate()
        .expect_err("bad private hostname")
        .to_string();
    assert!(error.starts_with("invalid private_hostname"), "{error}");
}

#[test]
fn urls_carry_credentials_and_pick_the_address() {
    let mut e = endpoint(&[("http", "80"), ("https", "8443")]);
    e.private_hostname = "10.0.0.1".into();
    e.private_ports.insert("http".into(), "8080".into());
    assert_eq!(e.url("http", false), Ok("http://db1.example.com/".into()));
    assert_eq!(e.url("http", true), Ok("http://10.0.0.1:8080/".into()));
    e.user = "admin".into();
    e.password = "secret".into();
    assert_eq!(
        e.url("https", false),
        Ok("https://admin:secret@db1.example.com:8443/".into())
    );
    assert_eq!(
        e.url("https", true),
        Err(UnknownScheme {
            scheme: "https".into(),
            which: "private"
        })
    );
    let error = e.url("ftp", false).expect_err("unknown").to_string();
    assert_eq!(
        error,
        "unknown scheme \"ftp\": the endpoint has no public port for it"
    );
    // Documents written without a private address use the public one.
    let bare = endpoint(&[("http", "80")]);
    assert_eq!(bare.url("http", true), Ok("http://db1.example.com/".into()));
}

#[test]
fn urls_encode_credentials_and_bracket_ipv6_hosts() {
    let mut e = endpoint(&[("postgres", "5432"), ("http", "8080")]);
    e.hostname = "::1".into();
    e.user = "app user".into();
    e.password = "p@ss:w/rd#1".into();
    assert_eq!(
        e.url("postgres", false),
        Ok("postgres://app%20user:p%40ss%3Aw%2Frd%231@[::1]:5432".into())
    );
    e.user.clear();
    assert_eq!(e.url("http", false), Ok("http://[::1]:8080/".into()));
    // What is written unvalidated and makes no URL offers no port.
    e.ports.insert("http".into(), "http".into());
    assert!(!e.offers("http", false));
    e.hostname = "bad host".into();
    assert!(!e.offers("postgres", false));
}

fn seen(created: i64, live: bool) -> Option<EndpointSeen> {
    Some(EndpointSeen { created, live })
}

#[test]
fn only_the_loss_of_a_live_endpoint_is_a_death() {
    let change = |before, after| {
        let c = endpoint_change(before, after);
        (c.new, c.down)
    };
    // (new, down)
    assert_eq!(change(None, seen(5, true)), (true, false), "registered");
    assert_eq!(
        change(seen(5, true), seen(5, true)),
        (false, false),
        "updated"
    );
    assert_eq!(change(seen(5, true), None), (false, true), "died");
    assert_eq!(
        change(seen(5, true), seen(5, false)),
        (false, false),
        "stopped"
    );
    assert_eq!(
        change(seen(5, false), None),
        (false, false),
        "tombstone removed"
    );
    assert_eq!(
        change(None, seen(5, false)),
        (false, false),
        "tombstone appeared"
    );
    assert_eq!(
        change(seen(5, false), seen(9, true)),
        (true, false),
        "back after a stop"
    );
    assert_eq!(
        change(seen(5, true), seen(9, true)),
        (true, true),
        "died and came back"
    );
    assert_eq!(
        change(seen(5, true), seen(9, false)),
        (false, true),
        "died, then a tombstone"
    );
}

#[test]
fn a_relist_diff_reports_births_and_deaths_but_not_clean_stops() {
    let live = endpoint(&[("http", "80")]);
    let mut gone = live.clone();
    gone.departed = true;
    let old: BTreeMap<String, ServiceEndpoint> = [
        ("a".to_owned(), live.clone()), // dies
        ("b".to_owned(), live.clone()), // stops cleanly
        ("c".to_owned(), live.clone()), // stays
        ("d".to_owned(), gone.clone()), // tombstone removed
    ]
    .into();
    let new: BTreeMap<String, ServiceEndpoint> = [
        ("b".to_owned(), gone.clone()),
        ("c".to_owned(), live.clone()),
        ("e".to_owned(), live.clone()), // born
        ("f".to_owned(), gone.clone()), // born and stopped in between
    ]
    .into();
    assert_eq!(
        diff_endpoints(&old, &new),
        (vec!["e".to_owned()], vec!["a".to_owned()])
    );

    let old = [(
        "a".to_owned(),
        EndpointSeen {
            created: 3,
            live: true,
        },
    )]
    .into();
    let new = [(
        "a".to_owned(),
        EndpointSeen {
            created: 8,
            live: true,
        },
    )]
    .into();
    assert_eq!(
        diff_endpoint_incarnations(&old, &new),
        (vec!["a".to_owned()], vec!["a".to_owned()])
    );
}
