//! The pod metadata cache's own metrics (`klg_containers_kube_*`,
//! `klg_containers_metadata_missing_total`).

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// `resource="pods"`, `"namespaces"`, `"replicasets"`, `"jobs"`.
pub type Resource = [(&'static str, &'static str); 1];

pub fn resource(name: &'static str) -> Resource {
    [("resource", name)]
}

#[derive(Default)]
pub struct Metrics {
    pub pods_cached: Gauge,
    pub watch_restarts: Family<Resource, Counter>,
    pub relists: Family<Resource, Counter>,
    pub metadata_missing: Counter,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let m = Metrics::default();
        crate::telemetry::register(|r| {
            r.register(
                "containers_kube_pods_cached",
                "Pods of this node in the metadata cache, deleted ones still in their retention included",
                m.pods_cached.clone(),
            );
            r.register(
                "containers_kube_watch_restarts",
                "Failed list or watch requests of the metadata cache, each followed by a retry after a backoff",
                m.watch_restarts.clone(),
            );
            r.register(
                "containers_kube_relists",
                "Full lists by the metadata cache: the first one, and one after every 410 Gone (history expired)",
                m.relists.clone(),
            );
            r.register(
                "containers_metadata_missing",
                "Container documents shipped with path metadata only (flag metadata_missing): pod unknown to the cache",
                m.metadata_missing.clone(),
            );
        });
        m
    })
}
