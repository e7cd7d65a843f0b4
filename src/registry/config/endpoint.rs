//! The syntax of a registry endpoint: `http://host:port`, `https://host:port`
//! or bare `host:port` (plain text), with IPv6 addresses in brackets.
//!
//! Checked before anything connects, so a typo (`ftp://`, a missing port) is
//! refused naming the endpoint instead of being resolved or dialled.

use std::net::Ipv6Addr;

/// Why an endpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEndpoint {
    /// Nothing between two commas, or only spaces.
    #[error("empty endpoint")]
    Empty,
    /// A scheme other than `http` or `https`.
    #[error("scheme {0:?} is not supported: use http://, https:// or a bare host:port")]
    Scheme(String),
    /// Nothing before the port.
    #[error("no host")]
    NoHost,
    /// A host with characters no host name or address has.
    #[error("host {0:?} is not a host name or an IP address")]
    Host(String),
    /// An IPv6 address written without brackets, so its port cannot be told apart.
    #[error("an IPv6 address needs brackets, e.g. [::1]:2379")]
    UnbracketedIpv6,
    /// No `:port` after the host.
    #[error("no port: give host:port")]
    NoPort,
    /// A port that is not a number from 1 to 65535.
    #[error("port {0:?} is not a number from 1 to 65535")]
    Port(String),
    /// Anything after the port (etcd endpoints have no path).
    #[error("unexpected {0:?} after the port: give host:port only")]
    Trailing(String),
}

/// Checks one endpoint as given (surrounding spaces allowed).
pub fn check(endpoint: &str) -> Result<(), InvalidEndpoint> {
    let endpoint = endpoint.trim();
    if endpoint.is_empty() {
        return Err(InvalidEndpoint::Empty);
    }
    let authority = match endpoint.split_once("://") {
        Some(("http" | "https", authority)) => authority,
        Some((scheme, _)) => return Err(InvalidEndpoint::Scheme(scheme.to_owned())),
        None => endpoint,
    };
    let port = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (address, after) = bracketed
                .split_once(']')
                .ok_or_else(|| InvalidEndpoint::Host(authority.to_owned()))?;
            if address.parse::<Ipv6Addr>().is_err() {
                return Err(InvalidEndpoint::Host(address.to_owned()));
            }
            match after.strip_prefix(':') {
                Some(port) => port,
                None if after.is_empty() => return Err(InvalidEndpoint::NoPort),
                None => return Err(InvalidEndpoint::Trailing(after.to_owned())),
            }
        }
        None => {
            let (host, port) = authority.rsplit_once(':').ok_or(InvalidEndpoint::NoPort)?;
            if host.contains(':') {
                return Err(InvalidEndpoint::UnbracketedIpv6);
            }
            check_host(host)?;
            port
        }
    };
    check_port(port)
}

fn check_host(host: &str) -> Result<(), InvalidEndpoint> {
    if host.is_empty() {
        return Err(InvalidEndpoint::NoHost);
    }
    // Host names (letters, digits, `-`, `.`, and `_` as some resolvers allow) and IPv4.
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if !host.chars().all(allowed) {
        return Err(InvalidEndpoint::Host(host.to_owned()));
    }
    Ok(())
}

fn check_port(port: &str) -> Result<(), InvalidEndpoint> {
    let digits = port
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(port.len());
    let (number, trailing) = port.split_at(digits);
    if number.is_empty() {
        return match trailing {
            "" => Err(InvalidEndpoint::NoPort),
            other => Err(InvalidEndpoint::Port(other.to_owned())),
        };
    }
    if !trailing.is_empty() {
        return Err(InvalidEndpoint::Trailing(trailing.to_owned()));
    }
    match number.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(InvalidEndpoint::Port(number.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        for endpoint in [
            "http://127.0.0.1:2379",
            "https://etcd-1.example.com:2379",
            "127.0.0.1:2379",
            "localhost:1",
            "etcd_1.internal:65535",
            "[::1]:2379",
            "http://[::1]:2379",
            "https://[fe80::1]:2379",
            " http://127.0.0.1:2379 ",
        ] {
            assert_eq!(check(endpoint), Ok(()), "{endpoint:?}");
        }
    }

    #[test]
    fn refuses_everything_else_with_the_reason() {
        use InvalidEndpoint::*;
        let table = [
            ("", Empty),
            ("  ", Empty),
            ("ftp://host:21", Scheme("ftp".into())),
            ("ftp://host", Scheme("ftp".into())),
            ("unix:///run/etcd.sock", Scheme("unix".into())),
            ("HTTP://host:2379", Scheme("HTTP".into())),
            ("host", NoPort),
            ("http://host", NoPort),
            ("host:", NoPort),
            ("[::1]", NoPort),
            (":2379", NoHost),
            ("http://:2379", NoHost),
            ("host:0", Port("0".into())),
            ("host:65536", Port("65536".into())),
            ("host:99999999999", Port("99999999999".into())),
            ("host:abc", Port("abc".into())),
            ("host:-1", Port("-1".into())),
            ("http://host:2379/", Trailing("/".into())),
            ("http://host:2379/v3", Trailing("/v3".into())),
            ("[::1]x:2379", Trailing("x:2379".into())),
            ("::1:2379", UnbracketedIpv6),
            ("http://user@host:2379", Host("user@host".into())),
            ("host name:2379", Host("host name".into())),
            ("[::1:2379", Host("[::1:2379".into())),
            ("[not-v6]:2379", Host("not-v6".into())),
        ];
        for (endpoint, reason) in table {
            assert_eq!(check(endpoint), Err(reason), "{endpoint:?}");
        }
    }
}
