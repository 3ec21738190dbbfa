//! Kubernetes metadata for container documents (node role): a watch-based
//! cache of this node's pods, their namespaces and the owners that name their
//! workload. docs/containers.md, "Kubernetes metadata".
//!
//! * [`config`] — `sources.containers.kubernetes`.
//! * [`pod_cache`] — what the API said, reduced to what documents show; read by the tailer thread.
//! * `watch` — the list/watch loops that fill it (kube-runtime's `watcher`).
//! * [`metrics`] — pods cached, watch restarts, relists, lines shipped without metadata.
//!
//! Nothing here ever holds a line back: the tailer reads the cache as it is.

pub mod config;
pub mod metrics;
pub mod pod_cache;
mod watch;

use std::sync::Arc;

pub use self::config::KubernetesConfig;
pub use self::pod_cache::{PodCache, PodMetadata};
use crate::shutdown::Shutdown;

/// Starts the cache's watches on the current tokio runtime (they end at
/// shutdown) and returns the cache. `node` is the default for `node_name`.
pub fn start(cfg: &KubernetesConfig, node: &str, shutdown: Shutdown) -> Arc<PodCache> {
    let cache = Arc::new(PodCache::new(cfg.deleted_pod_retention, &cfg.annotations));
    let node = cfg.node_name.clone().unwrap_or_else(|| node.to_string());
    metrics::metrics();
    tokio::spawn(watch::run(cfg.clone(), node, cache.clone(), shutdown));
    cache
}
