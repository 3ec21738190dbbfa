//! The Kubernetes Events source against a real kube-apiserver (etcd compacted
//! every second, no watch cache, so an old resourceVersion gets 410 Gone):
//! Events created and repeated (series), the gateway killed with SIGKILL and
//! restarted, the API server restarted. Every Event revision must be in
//! Elasticsearch exactly once: counted by `_id` and by (event, series count),
//! and compared with what was written to the API.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::config::{Admin, Events, GatewayConfig};
use common::es::{all_docs, es_url, require_es};
use common::gateway::Home;
use common::kube_apiserver::{binaries_built_or_skip, KubeApiserver};
use common::wait::wait_for;
use serde_json::{json, Value};

const NAMESPACE: &str = "klg-events";
const ALIAS: &str = "metrics-kubernetes.event-klg";

/// The API server as the admin, writing Events.
struct Api<'a> {
    api: &'a KubeApiserver,
    http: reqwest::Client,
}

impl Api<'_> {
    fn events_url(&self, name: Option<&str>) -> String {
        let base = self.api.url(&format!("/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events"));
        name.map_or(base.clone(), |n| format!("{base}/{n}"))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Value {
        let res = req.bearer_auth(self.api.var("KUBE_ADMIN_TOKEN")).send().await.unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert!(status.is_success(), "{status}: {body}");
        body
    }

    /// An eviction of pod `web-<i>`, as the kubelet reports it.
    async fn create(&self, i: usize) {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let event = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": { "name": format!("web-{i}.evicted"), "namespace": NAMESPACE },
            "eventTime": now,
            "reportingController": "kubelet", "reportingInstance": "node-1",
            "action": "Evicting", "reason": "Evicted", "type": "Warning",
            "note": format!("The node was low on resource: memory. Pod web-{i}"),
            "regarding": { "kind": "Pod", "namespace": NAMESPACE, "name": format!("web-{i}"),
                           "uid": format!("pod-uid-{i}"), "apiVersion": "v1" }
        });
        self.send(self.http.post(self.events_url(None)).json(&event)).await;
    }

    /// The event of pod `web-<i>` seen again: its series count becomes `count`.
    async fn repeat(&self, i: usize, count: u64) {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let patch = json!({ "series": { "count": count, "lastObservedTime": now } });
        let req = self
            .http
            .patch(self.events_url(Some(&format!("web-{i}.evicted"))))
            .header("Content-Type", "application/merge-patch+json")
            .body(patch.to_string());
        self.send(req).await;
    }

    /// True once a watch from `version` is refused with 410 Gone.
    async fn gone(&self, version: &str) -> bool {
        let url = format!("{}?watch=1&resourceVersion={version}&timeoutSeconds=1", self.events_url(None));
        let Ok(res) = self.http.get(url).bearer_auth(self.api.var("KUBE_ADMIN_TOKEN")).send().await else {
            return false;
        };
        let status = res.status().as_u16();
        let body = res.text().await.unwrap_or_default();
        status == 410 || body.contains("\"code\":410")
    }
}

/// (event name, series count) of each of our documents, with how many
/// documents each has and how many distinct `_id`s there are.
async fn revisions(index: &str) -> (BTreeMap<(String, u64), usize>, usize, usize) {
    let docs: Vec<(String, Value)> = all_docs(index)
        .await
        .into_iter()
        .filter(|(_, d)| d["kubernetes"]["event"]["metadata"]["namespace"] == NAMESPACE)
        .collect();
    let ids: BTreeSet<&str> = docs.iter().map(|(id, _)| id.as_str()).collect();
    let mut by_revision = BTreeMap::new();
    for (_, d) in &docs {
        let e = &d["kubernetes"]["event"];
        let key = (e["metadata"]["name"].as_str().unwrap().to_string(), e["count"].as_u64().unwrap());
        *by_revision.entry(key).or_insert(0) += 1;
    }
    (by_revision, docs.len(), ids.len())
}

async fn wait_for_revisions(index: &str, want: &BTreeSet<(String, u64)>, home: &Home) {
    wait_for(&format!("{} event revisions in {index}", want.len()), Duration::from_secs(120), || async move {
        let (got, _, _) = revisions(index).await;
        let keys: BTreeSet<(String, u64)> = got.keys().cloned().collect();
        if keys.len() > want.len() {
            panic!("more revisions than written: {keys:?}\n{}", home.log_tail(30));
        }
        &keys == want
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_revision_arrives_once_through_kill9_api_restart_and_410() {
    if !binaries_built_or_skip() {
        return;
    }
    require_es().await;
    let mut api = KubeApiserver::start_with_args(None, &["--watch-cache=false", "--etcd-compaction-interval=1s"]);
    api.kubectl_ok(&["create", "namespace", NAMESPACE]);
    let home = Home::new("events");
    let mut config = GatewayConfig::for_test(&home.data_dir(), &es_url()).index("events", &home.index("events"));
    config.admin = Admin::Listen(home.admin.clone());
    config.events = Some(Events {
        kubeconfig: api.var("KUBECONFIG").into(),
        watch_timeout: Some("20s".into()),
        retry_max_backoff: Some("1s".into()),
        checkpoint_interval: Some("100ms".into()),
    });
    let index = home.indices("events");
    let writer = Api { api: &api, http: api.client() };
    let mut want: BTreeSet<(String, u64)> = BTreeSet::new();
    let name = |i: usize| format!("web-{i}.evicted");

    // Events created and repeated while the gateway watches.
    let mut gateway = home.start(&config);
    for i in 0..10 {
        writer.create(i).await;
        want.insert((name(i), 1));
    }
    wait_for_revisions(&index, &want, &home).await;
    for i in 0..5 {
        writer.repeat(i, 2).await;
        want.insert((name(i), 2));
    }
    wait_for_revisions(&index, &want, &home).await;
    let finished = home
        .wait_for_metric("klg_documents_total", "source=\"events\",outcome=\"created\"", Duration::from_secs(30), |v| {
            v >= 15.0
        })
        .await;
    assert_eq!(finished, 15.0);

    // SIGKILL; Events written while it is down; its resume point compacted away.
    let position = home.data_dir().join("events").join("resource-version");
    let saved_file = &position;
    wait_for("the resume point saved", Duration::from_secs(30), || async move {
        std::fs::read_to_string(saved_file).is_ok_and(|s| !s.trim().is_empty())
    })
    .await;
    gateway.kill9();
    let saved = std::fs::read_to_string(&position).unwrap().trim().to_string();
    for i in 10..15 {
        writer.create(i).await;
        want.insert((name(i), 1));
    }
    wait_for("the saved resourceVersion answered with 410 Gone", Duration::from_secs(60), || writer.gone(&saved)).await;
    let _gateway = home.start(&config);
    wait_for_revisions(&index, &want, &home).await;
    assert!(home.metric("klg_events_relists_total", "").await >= 1.0, "410 Gone listed again\n{}", home.log_tail(30));
    assert!(home.log().contains("410 Gone"), "{}", home.log_tail(30));
    // The relist read the 10 Events delivered before again (each at its newest revision): 409s.
    home.wait_for_metric(
        "klg_documents_total",
        "source=\"events\",outcome=\"duplicate\"",
        Duration::from_secs(30),
        |v| v >= 10.0,
    )
    .await;

    // The API server restarted under the watch; Events repeated again after.
    api.kill_apiserver();
    api.restart();
    let writer = Api { api: &api, http: api.client() };
    for i in [0, 5, 10] {
        let count = if i < 5 { 3 } else { 2 };
        writer.repeat(i, count).await;
        want.insert((name(i), count));
    }
    wait_for_revisions(&index, &want, &home).await;

    let (got, docs, ids) = revisions(&index).await;
    assert_eq!(want.len(), 23, "10 created, 5 repeated, 5 created while down, 3 repeated after the API restart");
    assert_eq!((docs, ids), (23, 23), "one document per revision, each its own _id: {got:?}");
    assert!(got.values().all(|n| *n == 1), "a revision twice: {got:?}");

    // The same documents under the alias Elastic users query.
    let (status, aliases) = common::es::es_json(reqwest::Method::GET, &format!("/{index}/_alias/{ALIAS}"), None).await;
    assert_eq!(status, 200, "{aliases}");
    assert!(aliases.as_object().is_some_and(|o| !o.is_empty()), "{aliases}");
    let doc = &all_docs(&index)
        .await
        .into_iter()
        .find(|(_, d)| {
            d["kubernetes"]["event"]["metadata"]["name"] == "web-0.evicted" && d["kubernetes"]["event"]["count"] == 3
        })
        .unwrap()
        .1;
    assert_eq!(doc["event"]["reason"], "Evicted");
    assert_eq!(doc["kubernetes"]["pod"]["name"], "web-0");
    assert_eq!(doc["kubernetes"]["node"]["name"], "node-1");
    assert_eq!(doc["kubernetes"]["namespace"], NAMESPACE);
    common::es::delete_indices(&index).await;
}
