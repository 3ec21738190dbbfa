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

/// A free TCP port on 127.0.0.1 (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An `http://` URL where nothing listens: an Elasticsearch that is down.
pub fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}
