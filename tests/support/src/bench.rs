//! What the benchmarks that run on both registries share: which registries
//! a run takes (`VISOR_BENCH_REGISTRIES`), and many hosts written at once
//! on one lease, as a fleet's registrations stand once it is up.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use etcd_client::{PutOptions, Txn, TxnOp};
use visor::Visor;
use visor::model::{Host, Name};
use visor::registry::{Lease, LocalServer};

use crate::fixtures::name;
use crate::raw::bounded;

/// The registries `VISOR_BENCH_REGISTRIES` names (comma-separated `etcd`,
/// `embedded`), in its order; both, etcd first, when it is unset.
pub fn registries_from_env() -> Vec<&'static str> {
    let Some(value) = std::env::var("VISOR_BENCH_REGISTRIES")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return vec!["etcd", "embedded"];
    };
    value
        .split(',')
        .map(|registry| match registry.trim() {
            "etcd" => "etcd",
            "embedded" => "embedded",
            other => panic!("VISOR_BENCH_REGISTRIES={value:?}: {other:?} is not etcd or embedded"),
        })
        .collect()
}

/// The server that runs `registry` (`etcd` or `embedded`).
pub fn server(registry: &str) -> LocalServer {
    match registry {
        "embedded" => LocalServer::Embedded {
            visor: crate::cli::visor_binary(),
        },
        _ => LocalServer::Etcd,
    }
}

/// Writes hosts `host-0000`, `host-0001`, ... (`count` of them), each taking
/// `capacity` instances of stack `base`, bound to one shared lease that lives
/// (kept alive) while the returned handle does; 128 to a transaction.
pub async fn register_hosts(visor: &Visor, count: usize, capacity: u32) -> (Lease, Vec<Name>) {
    let lease = bounded(
        "grant the hosts' lease",
        Lease::grant(visor.registry(), Duration::from_secs(60)),
    )
    .await
    .expect("grant the hosts' lease");
    let hosts: Vec<Name> = (0..count).map(|i| name(&format!("host-{i:04}"))).collect();
    let mut kv = visor.registry().etcd().kv_client();
    for chunk in hosts.chunks(128) {
        let puts: Vec<TxnOp> = chunk
            .iter()
            .map(|host| {
                let value = Host {
                    addr: "10.0.0.1:4000".into(),
                    capacity,
                    labels: BTreeMap::new(),
                    stacks: vec![name("base")],
                    registered_at: Utc::now(),
                    draining: false,
                    admin_url: None,
                    boot_id: None,
                    incarnation: 0,
                };
                TxnOp::put(
                    visor.registry().keys().host(host),
                    serde_json::to_vec(&value).expect("hosts serialize"),
                    Some(PutOptions::new().with_lease(lease.id())),
                )
            })
            .collect();
        bounded("write a batch of hosts", kv.txn(Txn::new().and_then(puts)))
            .await
            .expect("write a batch of hosts");
    }
    (lease, hosts)
}
