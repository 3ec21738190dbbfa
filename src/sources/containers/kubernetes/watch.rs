//! The watches that fill the [`PodCache`]: this node's pods (field selector
//! `spec.nodeName=<node>`, full objects, reduced at once to what documents
//! show) and, metadata only, every namespace, ReplicaSet and Job.
//!
//! kube-runtime's `watcher` lists, then watches from the list's
//! resourceVersion; when a watch ends or its connection breaks it watches
//! again from the last resourceVersion it saw (no relist); when the API
//! answers 410 Gone (that version is no longer in its history) it lists again
//! — `Event::Init` … `InitApply` … `InitDone` — and whatever was not in the
//! new list is treated as deleted. Failed requests are retried after an
//! exponential backoff (500 ms doubling up to `retry_max_backoff`). The
//! reflector's `Store` is not used: it keeps whole objects and forgets a
//! deleted pod at once, where this cache keeps a few names per object and
//! keeps deleted pods for `deleted_pod_retention`.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{metadata_watcher, WatchStreamExt};
use serde::de::DeserializeOwned;

use super::config::KubernetesConfig;
use super::metrics::{metrics, resource};
use super::pod_cache::{owner_named, OwnerMap, PodCache, PodInfo};
use crate::shutdown::Shutdown;
use crate::sources::kube_api::Backoff;

/// Runs every watch until shutdown. A client that cannot be made (no
/// in-cluster environment, an unreadable kubeconfig) is logged and tried
/// again after `retry_max_backoff`; meanwhile lines ship flagged.
pub async fn run(cfg: KubernetesConfig, node: String, cache: Arc<PodCache>, shutdown: Shutdown) {
    let client = loop {
        match cfg.connection().client().await {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(error = %e, "kubernetes metadata: cannot make an API client; lines ship flagged metadata_missing");
                metrics().watch_restarts.get_or_create(&resource("pods")).inc();
                cache.set_ready();
                tokio::select! {
                    _ = tokio::time::sleep(cfg.retry_max_backoff) => {}
                    _ = shutdown.stopping() => return,
                }
            }
        }
    };
    tracing::info!(node = %node, "kubernetes metadata: watching this node's pods, namespaces, ReplicaSets and Jobs");
    let timeout = u32::try_from(cfg.watch_timeout.as_secs()).unwrap_or(290);
    let base = watcher::Config::default().timeout(timeout);
    let pods =
        watch_pods(Api::all(client.clone()), base.clone().fields(&format!("spec.nodeName={node}")), &cfg, &cache);
    let namespaces = watch_meta::<Namespace>(Api::all(client.clone()), base.clone(), &cfg, &cache, Kind::Namespaces);
    let replicasets = watch_meta::<ReplicaSet>(
        Api::all(client.clone()),
        base.clone(),
        &cfg,
        &cache,
        Kind::Owners(OwnerMap::ReplicaSets),
    );
    let jobs = watch_meta::<Job>(Api::all(client), base, &cfg, &cache, Kind::Owners(OwnerMap::Jobs));
    let expiry = async {
        let mut tick = tokio::time::interval(
            Duration::from_secs(5).min(cfg.deleted_pod_retention.max(Duration::from_millis(100))),
        );
        loop {
            tick.tick().await;
            cache.expire(Instant::now());
            metrics().pods_cached.set(cache.pods_cached() as i64);
        }
    };
    tokio::select! {
        _ = pods => {}
        _ = namespaces => {}
        _ = replicasets => {}
        _ = jobs => {}
        _ = expiry => {}
        _ = shutdown.stopping() => {}
    }
}

fn failed(what: &'static str, error: &watcher::Error) {
    metrics().watch_restarts.get_or_create(&resource(what)).inc();
    tracing::warn!(resource = what, error = %error, "kubernetes metadata: list/watch failed; retrying after a backoff");
}

async fn watch_pods(api: Api<Pod>, wc: watcher::Config, cfg: &KubernetesConfig, cache: &PodCache) {
    let stream = watcher::watcher(api, wc).backoff(Backoff::new(cfg.retry_max_backoff));
    let mut stream = std::pin::pin!(stream);
    let mut seen: HashSet<String> = HashSet::new();
    let info = |pod: &Pod| PodInfo::from_pod(pod, |k| cache.keep_annotation(k));
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => {
                metrics().relists.get_or_create(&resource("pods")).inc();
                seen.clear();
            }
            Ok(Event::InitApply(pod)) => {
                if let Some(info) = info(&pod) {
                    seen.insert(info.uid.clone());
                    cache.apply_pod(info);
                }
            }
            Ok(Event::InitDone) => {
                cache.pods_relisted(&seen, Instant::now());
                seen = HashSet::new();
                tracing::info!(pods = cache.pods_cached(), "kubernetes metadata: pods listed");
            }
            Ok(Event::Apply(pod)) => {
                if let Some(info) = info(&pod) {
                    cache.apply_pod(info);
                }
            }
            Ok(Event::Delete(pod)) => {
                if let Some(uid) = &pod.metadata.uid {
                    cache.delete_pod(uid, Instant::now());
                }
            }
            Err(e) => failed("pods", &e),
        }
        metrics().pods_cached.set(cache.pods_cached() as i64);
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Namespaces,
    Owners(OwnerMap),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Namespaces => "namespaces",
            Kind::Owners(OwnerMap::ReplicaSets) => "replicasets",
            Kind::Owners(OwnerMap::Jobs) => "jobs",
        }
    }

    fn apply(self, cache: &PodCache, ns: &str, name: &str, meta: &kube::api::ObjectMeta) {
        match self {
            Kind::Namespaces => cache.apply_namespace(name, meta.labels.clone().unwrap_or_default()),
            Kind::Owners(map) => {
                let owner_kind = match map {
                    OwnerMap::ReplicaSets => "Deployment",
                    OwnerMap::Jobs => "CronJob",
                };
                cache.apply_owner(map, ns, name, owner_named(meta, owner_kind));
            }
        }
    }

    fn delete(self, cache: &PodCache, ns: &str, name: &str) {
        match self {
            Kind::Namespaces => cache.delete_namespace(name),
            Kind::Owners(map) => cache.delete_owner(map, ns, name),
        }
    }

    fn relisted(self, cache: &PodCache, seen: &HashSet<(String, String)>) {
        match self {
            Kind::Namespaces => cache.namespaces_relisted(&seen.iter().map(|(_, n)| n.clone()).collect()),
            Kind::Owners(map) => cache.owners_relisted(map, seen),
        }
    }
}

/// Namespaces (labels), ReplicaSets and Jobs (their owner): metadata only,
/// which is all the cache needs and a fraction of the objects.
async fn watch_meta<K>(api: Api<K>, wc: watcher::Config, cfg: &KubernetesConfig, cache: &PodCache, kind: Kind)
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let stream = metadata_watcher(api, wc).backoff(Backoff::new(cfg.retry_max_backoff));
    let mut stream = std::pin::pin!(stream);
    let mut seen = HashSet::new();
    let key = |obj: &PartialObjectMeta<K>| {
        let m = &obj.metadata;
        Some((m.namespace.clone().unwrap_or_default(), m.name.clone()?))
    };
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => {
                metrics().relists.get_or_create(&resource(kind.name())).inc();
                seen.clear();
            }
            Ok(Event::InitApply(obj)) => {
                if let Some((ns, name)) = key(&obj) {
                    kind.apply(cache, &ns, &name, &obj.metadata);
                    seen.insert((ns, name));
                }
            }
            Ok(Event::InitDone) => {
                kind.relisted(cache, &seen);
                seen = HashSet::new();
            }
            Ok(Event::Apply(obj)) => {
                if let Some((ns, name)) = key(&obj) {
                    kind.apply(cache, &ns, &name, &obj.metadata);
                }
            }
            Ok(Event::Delete(obj)) => {
                if let Some((ns, name)) = key(&obj) {
                    kind.delete(cache, &ns, &name);
                }
            }
            Err(e) => failed(kind.name(), &e),
        }
    }
}
