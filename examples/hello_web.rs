//! The example app's web process: answers HTTP on `$PORT` (loopback
//! unless `$BIND` says otherwise) with who it is, `/healthz` for readiness
//! checks, and one line on stdout per request, for `visor logs`.
//!
//! Standard library only, so the quick start needs nothing but the Rust
//! toolchain.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let listener = match TcpListener::bind(format!("{bind}:{port}")) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("hello-web: cannot listen on {bind}:{port}: {error}");
            std::process::exit(1);
        }
    };
    println!("hello-web: listening on {bind}:{port}");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || answer(stream));
    }
}

fn answer(mut stream: TcpStream) {
    let mut request_line = String::new();
    let mut reader = BufReader::new(&stream);
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // The headers are read and ignored: the answer depends on the path only.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| "?".to_owned());
    let body = match path {
        "/healthz" => "ok\n".to_owned(),
        _ => format!(
            "hello from {} {} ({}), instance {} on port {}\n",
            var("VISOR_APP"),
            var("VISOR_REV"),
            var("VISOR_PROC"),
            var("VISOR_INSTANCE"),
            var("PORT")
        ),
    };
    println!(
        "hello-web: {} {path}",
        request_line.split_whitespace().next().unwrap_or("?")
    );
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}
