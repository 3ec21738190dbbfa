//! A multi-node Elasticsearch cluster, as `scripts/elasticsearch.sh cluster-start`
//! runs it: node N listens on the first node's port + N - 1. Tests that need it
//! run only when `KLG_TEST_ES_CLUSTER_URLS` lists its nodes (comma-separated,
//! node 1 first); `scripts/test.sh` starts the cluster and sets it for one step.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::es::{http, Es};
use super::wait::poll;

pub const ES_CLUSTER_URLS_VAR: &str = "KLG_TEST_ES_CLUSTER_URLS";

pub struct EsCluster {
    /// Every node's HTTP URL, node 1 first.
    pub urls: Vec<String>,
    first_port: u16,
}

impl EsCluster {
    /// The cluster of `KLG_TEST_ES_CLUSTER_URLS`; a test that needs it fails
    /// when it is not set (the test is `#[ignore]`d, so only `--ignored` runs it).
    pub fn from_env() -> EsCluster {
        let Some(raw) = std::env::var(ES_CLUSTER_URLS_VAR).ok().filter(|v| !v.trim().is_empty()) else {
            panic!(
                "{ES_CLUSTER_URLS_VAR} is not set. This test needs a multi-node Elasticsearch: \
                 `bash scripts/elasticsearch.sh cluster-start`, then \
                 {ES_CLUSTER_URLS_VAR}=http://127.0.0.1:9201,http://127.0.0.1:9202,http://127.0.0.1:9203 \
                 (scripts/test.sh runs it in its es-cluster step)"
            );
        };
        let urls: Vec<String> = raw.split(',').map(|u| u.trim().trim_end_matches('/').to_string()).collect();
        assert!(urls.len() >= 3, "{ES_CLUSTER_URLS_VAR}: at least three nodes, got {urls:?}");
        let port = |u: &str| -> u16 {
            u.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {u}"))
        };
        let first_port = port(&urls[0]);
        for (i, u) in urls.iter().enumerate() {
            assert_eq!(
                port(u),
                first_port + i as u16,
                "{ES_CLUSTER_URLS_VAR}: node N must be on the first port + N - 1 (scripts/elasticsearch.sh)"
            );
        }
        EsCluster { urls, first_port }
    }

    /// A client for node `n` (1-based).
    pub fn node(&self, n: usize) -> Es {
        Es::at(&self.urls[n - 1])
    }

    fn script(&self, args: &[&str]) {
        let status = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/elasticsearch.sh"))
            .args(args)
            .env("ES_PORT", self.first_port.to_string())
            .env("ES_CLUSTER_NODES", self.urls.len().to_string())
            .stdout(Stdio::inherit())
            .status()
            .expect("run scripts/elasticsearch.sh");
        assert!(status.success(), "scripts/elasticsearch.sh {args:?}: {status}");
    }

    /// SIGKILL node `n`: a crash, not a shutdown.
    pub fn kill_node(&self, n: usize) {
        self.script(&["kill-node", &n.to_string()]);
    }

    /// Starts node `n` again (it rejoins the cluster).
    pub fn start_node(&self, n: usize) {
        self.script(&["start-node", &n.to_string()]);
    }

    /// The cluster's health as node `n` sees it (`Null` while it does not answer).
    pub async fn health(&self, n: usize) -> serde_json::Value {
        self.health_of(n, "").await
    }

    /// The health of `index` (a name or pattern; "" for the whole cluster) as node `n` sees it.
    pub async fn health_of(&self, n: usize, index: &str) -> serde_json::Value {
        let url = format!("{}/_cluster/health/{index}", self.urls[n - 1]);
        match http().get(url).send().await {
            Ok(r) => r.json().await.unwrap_or(serde_json::Value::Null),
            Err(_) => serde_json::Value::Null,
        }
    }

    /// Waits until node `n` reports every node in the cluster and `status`
    /// (`green`: every replica assigned). Panics with the last health after `timeout`.
    pub async fn wait_for_health(&self, n: usize, status: &str, timeout: Duration) -> serde_json::Value {
        let nodes = self.urls.len() as u64;
        let (h, ok) = poll(
            timeout,
            Duration::from_millis(500),
            || self.health(n),
            |h| h["status"] == status && h["number_of_nodes"] == nodes,
        )
        .await;
        assert!(ok, "cluster not {status} with {nodes} nodes after {timeout:?}: {h}");
        h
    }

    /// Waits until every shard copy of `index` is started (green, as node `n`
    /// sees it): each primary has a replica on another node.
    pub async fn wait_for_index_green(&self, n: usize, index: &str, timeout: Duration) {
        let (h, ok) =
            poll(timeout, Duration::from_millis(300), || self.health_of(n, index), |h| h["status"] == "green").await;
        assert!(ok, "{index} not green after {timeout:?}: {h}");
    }
}
