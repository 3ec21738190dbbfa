//! Shared helpers for the integration tests. Every test binary includes this
//! module (`mod common;`) and uses what it needs:
//!
//! - [`es`]: the Elasticsearch the tests run against (`KLG_TEST_ES_URL`), counts,
//!   searches, waits on counts, and private instances for tests that stop one;
//! - [`es_cluster`]: the three-node cluster of `scripts/elasticsearch.sh cluster-start`
//!   (`KLG_TEST_ES_CLUSTER_URLS`), its nodes killed and started again;
//! - [`container_node`]: a node's container log layout and its gateway config;
//! - [`config`]: one typed builder for every gateway config the tests write;
//! - [`gateway`]: a gateway's home directory and the binary run as a child process;
//! - [`webhook`]: a gateway with the audit webhook over mTLS, and its clients;
//! - [`certs`]: certificates, TLS clients and raw TLS connections;
//! - [`kube_apiserver`]: a real kube-apiserver with its webhook on a gateway,
//!   and its audit log and webhook errors read as (auditID, stage) pairs;
//! - [`secured`]: a private server with security on, and gateways pointed at it
//!   with some credentials;
//! - [`proxy`]: a TCP proxy switched on and off (a backend down, then back);
//! - [`metrics`]: reading the gateway's /metrics and waiting on a metric;
//! - [`files`]: appending to files;
//! - [`reliability`]: each fault test's counts, for the reliability table;
//! - [`pressure`]: `scripts/pressure.sh` for the length of a test (stopped on drop);
//! - [`wait`]: waiting on a condition (the only place that polls).
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod config;
pub mod container_node;
pub mod es;
pub mod es_cluster;
pub mod files;
pub mod gateway;
pub mod kube_apiserver;
pub mod metrics;
pub mod pressure;
pub mod proxy;
pub mod reliability;
pub mod secured;
pub mod wait;
pub mod webhook;

pub use certs::*;
pub use config::*;
pub use container_node::*;
pub use es::*;
pub use es_cluster::*;
pub use files::*;
pub use gateway::*;
pub use kube_apiserver::*;
pub use metrics::*;
pub use pressure::*;
pub use proxy::*;
pub use reliability::*;
pub use wait::*;
pub use webhook::*;

/// A lowercase prefix unique to this test run, so tests never see each
/// other's indices: `t<pid>-<name>`.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("t{}{}-{}", std::process::id(), nanos % 100_000, name).to_lowercase()
}

/// A free TCP port on 127.0.0.1 (nothing listens on it once this returns), for a
/// server the test starts a moment later.
///
/// Not the kernel's `bind(0)` pick: that comes from the ephemeral range, which every
/// client socket draws from too, so between this probe and the server's bind an
/// outgoing connection (kube-apiserver to etcd, the gateway to Elasticsearch) could
/// take the port and the server would fail with "address in use". The ports here are
/// below that range, and one process-wide cursor (starting at a pid-derived offset, so
/// test binaries run side by side rarely meet) never hands the same port out twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_low.min(65_536));
    if high <= low + 1_000 {
        // An unusual ephemeral range with no room below it: the kernel's pick.
        return std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    }
    let span = high - low;
    let _ = CURSOR.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = (low + CURSOR.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 between {low} and {high}");
}

/// An `http://` URL where nothing listens: an Elasticsearch that is down.
pub fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}
