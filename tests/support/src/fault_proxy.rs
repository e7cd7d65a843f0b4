//! A loopback TCP proxy in front of etcd that makes writes' outcomes unknown.
//!
//! Armed, it waits for a large request from the client (a batch of start
//! tickets; reads, keep-alives and watch requests are small), forwards it
//! whole, waits until etcd's revision moves past what it was before the
//! request (the write committed), and then cuts the connection before the
//! response reaches the client: the client sees a reset, not the commit.
//!
//! Paused, it drops everything etcd sends to its clients (what a watch
//! misses while its connection hangs), until it is resumed by cutting every
//! connection it holds, so that clients reconnect and resume.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::AbortOnDropHandle;

use crate::raw;

/// A read from the client at least this large is taken for a batch write.
const LARGE_REQUEST: usize = 8 * 1024;
/// How long a cut connection waits for the commit before giving up.
const COMMIT_WAIT: Duration = Duration::from_secs(5);

/// What the proxy's connections share.
struct Faults {
    /// Faults still to inject.
    armed: AtomicUsize,
    /// Faults injected after a commit was seen.
    injected: AtomicUsize,
    /// Reads etcd's current revision, directly.
    etcd: etcd_client::Client,
    /// While set, nothing from etcd reaches any client.
    paused: AtomicBool,
    /// Bumped to cut every connection open at the time.
    cuts: tokio::sync::watch::Sender<u64>,
}

/// The proxy; stops (with every connection it holds) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    faults: Arc<Faults>,
    _accept: AbortOnDropHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (host:port).
    pub async fn start(upstream: &str, etcd: etcd_client::Client) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let faults = Arc::new(Faults {
            armed: AtomicUsize::new(0),
            injected: AtomicUsize::new(0),
            etcd,
            paused: AtomicBool::new(false),
            cuts: tokio::sync::watch::Sender::new(0),
        });
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let shared = faults.clone();
        let accept = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                connections.spawn(relay(client, server, shared.clone()));
            }
        });
        Self {
            addr,
            faults,
            _accept: AbortOnDropHandle::new(accept),
        }
    }

    /// The endpoint clients connect to.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts the connection after each of the next `count` large requests.
    pub fn arm(&self, count: usize) {
        self.faults.armed.store(count, Ordering::SeqCst);
    }

    /// Drops everything etcd sends to clients from now on.
    pub fn pause(&self) {
        self.faults.paused.store(true, Ordering::SeqCst);
    }

    /// Cuts every open connection and forwards again: clients reconnect.
    pub fn cut_and_resume(&self) {
        self.faults.paused.store(false, Ordering::SeqCst);
        self.faults.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// How many connections were cut after etcd committed what they carried.
    pub fn injected(&self) -> usize {
        self.faults.injected.load(Ordering::SeqCst)
    }
}

/// Relays one connection both ways until either side closes or a fault cuts it.
async fn relay(client: TcpStream, server: TcpStream, faults: Arc<Faults>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let swallow = Arc::new(AtomicBool::new(false));
    let mut cuts = faults.cuts.subscribe();
    let to_client = {
        let swallow = swallow.clone();
        let faults = faults.clone();
        async move {
            let mut buffer = vec![0; 64 * 1024];
            loop {
                let n = match server_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                // Once cut, nothing more of etcd's reaches the client.
                if swallow.load(Ordering::SeqCst) || faults.paused.load(Ordering::SeqCst) {
                    continue;
                }
                if client_write.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let to_server = async move {
        let mut buffer = vec![0; 64 * 1024];
        let mut cut_after: Option<i64> = None;
        loop {
            let read = match cut_after {
                // Keep forwarding the rest of the request while waiting for its commit.
                Some(before) => tokio::select! {
                    read = client_read.read(&mut buffer) => read,
                    () = committed_after(&faults, before) => return,
                },
                None => client_read.read(&mut buffer).await,
            };
            let n = match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if cut_after.is_none() && n >= LARGE_REQUEST && take_one(&faults.armed) {
                let Some(before) = raw::try_current_revision(&faults.etcd).await.ok() else {
                    return;
                };
                swallow.store(true, Ordering::SeqCst);
                cut_after = Some(before);
            }
            if server_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    // Whichever side ends first ends the connection: both halves drop here.
    tokio::select! {
        () = to_client => {}
        () = to_server => {}
        _ = cuts.changed() => {}
    }
}

/// Resolves once etcd's revision is past `before` (counting the fault), or
/// after [`COMMIT_WAIT`] without counting it.
async fn committed_after(faults: &Faults, before: i64) {
    let deadline = tokio::time::Instant::now() + COMMIT_WAIT;
    while tokio::time::Instant::now() < deadline {
        if raw::try_current_revision(&faults.etcd)
            .await
            .is_ok_and(|now| now > before)
        {
            faults.injected.fetch_add(1, Ordering::SeqCst);
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn take_one(armed: &AtomicUsize) -> bool {
    armed
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}
