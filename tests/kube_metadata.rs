//! Kubernetes metadata on container documents, end to end: a REAL kube-apiserver
//! (`scripts/kube-apiserver.sh`, with its own etcd), pods created in it with
//! `spec.nodeName` set (no kubelet needed), kubelet-style log files
//! (`<root>/pods/<ns>_<pod>_<uid>/<container>/0.log` and a symlink in
//! `<root>/containers/`), the gateway binary, and the real Elasticsearch.
//!
//! The node role's manifests as the chart renders them (deploy/rendered/, RBAC included) are checked with
//! `kubectl apply --dry-run=server --validate=strict` by tests/kube_apiserver.rs,
//! which validates every manifest under deploy/.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::config::{Admin, Containers, GatewayConfig};
use common::es::{es_url, require_es, search, wait_for_count, Es};
use common::files::append;
use common::gateway::Home;
use common::kube_apiserver::{binaries_built_or_skip, KubeApiserver};
use common::proxy::GatedProxy;
use common::wait::poll;
use serde_json::{json, Value};

const NODE: &str = "node-a";
const CONTAINER_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// One kube-apiserver at a time: a start takes both cores for a few seconds.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A kube-apiserver that can be killed and started again at
/// the same URL (etcd's data and the certificates are kept across the restart).
struct Api {
    inner: KubeApiserver,
}

impl Api {
    fn start() -> Api {
        Self::start_with_args(&[])
    }

    fn start_with_args(extra_args: &[&str]) -> Api {
        Api { inner: KubeApiserver::start_with_args(None, extra_args) }
    }

    /// kube-apiserver again, at the same URL, with the same etcd.
    fn up(&mut self) {
        self.inner.restart();
    }

    /// SIGKILL to kube-apiserver only (etcd stays): the watches break mid-stream.
    fn kill_apiserver(&self) {
        self.inner.kill_apiserver();
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.inner.kubectl_ok(args)
    }

    fn apply(&self, dir: &Path, name: &str, yaml: &str) {
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        self.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    }

    /// Namespace `shop` (team=payments) and its `default` ServiceAccount (no
    /// controller-manager runs to create it; pod admission needs it).
    fn namespace(&self, dir: &Path) {
        self.apply(
            dir,
            "ns",
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"team":"payments"}}}"#,
        );
        self.apply(
            dir,
            "sa",
            r#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"default","namespace":"shop"}}"#,
        );
    }

    fn uid(&self, ns: &str, kind: &str, name: &str) -> String {
        self.kubectl(&["-n", ns, "get", kind, name, "-o", "jsonpath={.metadata.uid}"])
    }

    /// A pod on this node, controlled by `owner` (kind, name, uid), with a pod IP in its status.
    #[allow(clippy::too_many_arguments)]
    fn pod(
        &self,
        dir: &Path,
        ns: &str,
        name: &str,
        labels: &[(&str, &str)],
        owner: Option<(&str, &str, &str)>,
        image: &str,
        ip: &str,
    ) -> String {
        let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let mut meta = json!({"name": name, "namespace": ns, "labels": labels,
            "annotations": {"example.com/owner-team": "payments", "not.allowed/annotation": "x"}});
        if let Some((kind, oname, uid)) = owner {
            let api_version = if kind == "Job" { "batch/v1" } else { "apps/v1" };
            meta["ownerReferences"] =
                json!([{"apiVersion": api_version, "kind": kind, "name": oname, "uid": uid, "controller": true}]);
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": NODE, "restartPolicy": "Always", "containers": [{"name": "app", "image": image}]}});
        self.apply(dir, name, &pod.to_string());
        let status = json!({"status": {"podIP": ip, "podIPs": [{"ip": ip}]}}).to_string();
        self.kubectl(&["-n", ns, "patch", "pod", name, "--subresource=status", "--type=merge", "-p", &status]);
        self.uid(ns, "pod", name)
    }
}

/// The kubelet's layout under `root`: the pod's log file and its symlink.
struct LogFile {
    path: PathBuf,
}

impl LogFile {
    fn new(root: &Path, ns: &str, pod: &str, uid: &str, restart: u32) -> LogFile {
        let target = root.join(format!("pods/{ns}_{pod}_{uid}/app/{restart}.log"));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, b"").unwrap();
        let id = format!("{}{restart}", &CONTAINER_ID[..63]);
        let link = root.join(format!("containers/{pod}_{ns}_app-{id}.log"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        LogFile { path: target }
    }

    fn line(&self, text: &str) {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.9fZ");
        append(&self.path, format!("{now} stdout F {text}\n").as_bytes());
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
    home: Home,
    config: GatewayConfig,
}

/// The start of every test here: `None` (skipped) without the kube-apiserver binaries;
/// else one kube-apiserver test at a time, Elasticsearch up, and a fresh [`Setup`].
async fn begin(name: &str) -> Option<(tokio::sync::MutexGuard<'static, ()>, Setup)> {
    if !binaries_built_or_skip() {
        return None;
    }
    let one = ONE_AT_A_TIME.lock().await;
    require_es().await;
    Some((one, setup(name)))
}

fn setup(name: &str) -> Setup {
    let builder = tempfile::Builder::new().prefix("klg-kube-meta-").to_owned();
    let tmp = match std::env::var_os("KLG_KUBE_TEST_ROOT") {
        Some(root) => builder.tempdir_in(root),
        None => builder.tempdir(),
    }
    .unwrap();
    let dir = tmp.path().to_path_buf();
    let root = dir.join("log");
    std::fs::create_dir_all(root.join("containers")).unwrap();
    let home = Home::new(name);
    let mut config = GatewayConfig::for_test(&home.data_dir(), &es_url())
        .index("containers", &home.index("containers"))
        .index("dead_letter", &home.index("deadletter"));
    config.node_name = Some(NODE.into());
    config.admin = Admin::Listen(home.admin.clone());
    config.containers = Some(Containers {
        paths: vec![format!("{}/containers/*.log", root.display())],
        poll_interval: "100ms".into(),
        rotated_grace: "1s".into(),
        ..Containers::default()
    });
    Setup { _dir: tmp, dir, root, home, config }
}

impl Setup {
    fn enable_kubernetes(&mut self, api: &Api) {
        self.enable_kubernetes_with(api.inner.var("KUBECONFIG"));
    }

    fn enable_kubernetes_with(&mut self, kubeconfig: &str) {
        self.config.containers_mut().kubernetes = vec![
            ("enabled".into(), "true".into()),
            ("kubeconfig".into(), format!("{kubeconfig:?}")),
            ("annotations".into(), "[\"example.com/*\"]".into()),
            ("retry_max_backoff".into(), "1s".into()),
            ("initial_sync_timeout".into(), "30s".into()),
        ];
    }

    /// Waits (up to 60 s) until the pods watch's counter `metric` is at least `at_least`.
    async fn pods_metric_reaches(&self, metric: &str, at_least: f64) {
        self.home.wait_for_metric(metric, "resource=\"pods\"", Duration::from_secs(60), |v| v >= at_least).await;
    }

    async fn docs(&self) -> Vec<Value> {
        search(&self.home.indices("containers"), json!({"match_all": {}})).await
    }

    async fn doc_with_message(&self, message: &str) -> Option<Value> {
        self.docs().await.into_iter().find(|d| d["message"] == message)
    }

    async fn wait_for_message(&self, message: &str) -> Value {
        let (doc, ok) = poll(
            Duration::from_secs(60),
            Duration::from_millis(250),
            || self.doc_with_message(message),
            |d| d.is_some(),
        )
        .await;
        assert!(ok, "no document with message {message:?}; gateway log:\n{}", tail(&self.home.log()));
        doc.unwrap()
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn flags(doc: &Value) -> Vec<String> {
    doc["kube_log_gateway"]["flags"]
        .as_array()
        .map(|a| a.iter().map(|f| f.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The objects of the first test: namespace `shop` (team=payments), a Deployment's
/// ReplicaSet, a CronJob's Job and a StatefulSet, each with a pod on this node.
fn create_workloads(api: &Api, dir: &Path) -> [(String, String); 3] {
    api.namespace(dir);
    let template =
        json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "app", "image": "x"}]}});
    let selector = json!({"matchLabels": {"app": "x"}});
    api.apply(
        dir,
        "deploy",
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {"selector": selector, "template": template}})
        .to_string(),
    );
    let job_template = json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": "x"}]}}}});
    api.apply(
        dir,
        "cronjob",
        &json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "shop"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": job_template}})
        .to_string(),
    );
    api.apply(
        dir,
        "sts",
        &json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"selector": selector, "serviceName": "db", "template": template}})
        .to_string(),
    );
    let deploy_uid = api.uid("shop", "deployment", "checkout");
    let cron_uid = api.uid("shop", "cronjob", "nightly");
    api.apply(dir, "rs", &json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "checkout-5d9f8", "namespace": "shop",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout", "uid": deploy_uid, "controller": true}]},
        "spec": {"replicas": 0, "selector": selector, "template": template}}).to_string());
    api.apply(dir, "job", &json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "nightly-29400000", "namespace": "shop",
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": cron_uid, "controller": true}]},
        "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": "x"}]}}}}).to_string());
    let rs_uid = api.uid("shop", "replicaset", "checkout-5d9f8");
    let job_uid = api.uid("shop", "job", "nightly-29400000");
    let sts_uid = api.uid("shop", "statefulset", "db");
    let labels = [("app", "checkout"), ("app.kubernetes.io/name", "checkout"), ("app.kubernetes.io/part-of", "shop")];
    let web = api.pod(
        dir,
        "shop",
        "checkout-5d9f8-x2x7k",
        &labels,
        Some(("ReplicaSet", "checkout-5d9f8", &rs_uid)),
        "registry.example/checkout:1.4.2",
        "10.244.1.7",
    );
    let job = api.pod(
        dir,
        "shop",
        "nightly-29400000-7qz4p",
        &[("app", "nightly")],
        Some(("Job", "nightly-29400000", &job_uid)),
        "registry.example/report:3",
        "10.244.1.8",
    );
    let db = api.pod(
        dir,
        "shop",
        "db-0",
        &[("app", "db")],
        Some(("StatefulSet", "db", &sts_uid)),
        "postgres:16",
        "10.244.1.9",
    );
    [("checkout-5d9f8-x2x7k".to_string(), web), ("nightly-29400000-7qz4p".to_string(), job), ("db-0".to_string(), db)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_carry_labels_owners_image_and_ip_and_later_lines_see_label_changes() {
    let Some((_one, mut s)) = begin("kmeta").await else {
        return;
    };
    let api = Api::start();
    let [(web, web_uid), (job, job_uid), (db, db_uid)] = create_workloads(&api, &s.dir);
    s.enable_kubernetes(&api);
    let web_log = LogFile::new(&s.root, "shop", &web, &web_uid, 0);
    let job_log = LogFile::new(&s.root, "shop", &job, &job_uid, 0);
    let db_log = LogFile::new(&s.root, "shop", &db, &db_uid, 0);
    // A pod the API has never heard of (its uid is made up).
    let ghost_log = LogFile::new(&s.root, "shop", "ghost", "00000000-0000-0000-0000-000000000000", 0);
    web_log.line("web 1");
    job_log.line("job 1");
    db_log.line("db 1");
    ghost_log.line("ghost 1");
    let _gw = s.home.start(&s.config);

    let d = s.wait_for_message("web 1").await;
    let k = &d["kubernetes"];
    assert_eq!(k["namespace"], "shop", "{d}");
    assert_eq!(k["pod"]["name"], web.as_str());
    assert_eq!(k["pod"]["uid"], web_uid.as_str());
    assert_eq!(k["pod"]["ip"], "10.244.1.7");
    assert_eq!(k["labels"]["app"], "checkout");
    assert_eq!(k["labels"]["app.kubernetes.io/name"], "checkout", "label keys kept verbatim: {d}");
    assert_eq!(k["annotations"], json!({"example.com/owner-team": "payments"}), "only allow-listed annotations");
    assert_eq!(k["namespace_labels"]["team"], "payments", "{d}");
    assert_eq!(k["replicaset"]["name"], "checkout-5d9f8");
    assert_eq!(k["deployment"]["name"], "checkout");
    assert_eq!(d["container"]["image"]["name"], "registry.example/checkout:1.4.2");
    assert!(flags(&d).is_empty(), "{d}");

    let d = s.wait_for_message("job 1").await;
    assert_eq!(d["kubernetes"]["job"]["name"], "nightly-29400000", "{d}");
    assert_eq!(d["kubernetes"]["cronjob"]["name"], "nightly", "{d}");
    assert_eq!(d["container"]["image"]["name"], "registry.example/report:3");
    let d = s.wait_for_message("db 1").await;
    assert_eq!(d["kubernetes"]["statefulset"]["name"], "db", "{d}");
    assert_eq!(d["kubernetes"]["pod"]["ip"], "10.244.1.9");
    assert!(d["kubernetes"].get("deployment").is_none());

    let d = s.wait_for_message("ghost 1").await;
    assert_eq!(flags(&d), ["metadata_missing"], "{d}");
    assert_eq!(d["kubernetes"]["pod"]["name"], "ghost", "path metadata kept: {d}");
    assert!(d["kubernetes"].get("labels").is_none());
    assert!(s.home.metric("klg_containers_metadata_missing_total", "").await >= 1.0);
    assert_eq!(s.home.metric("klg_containers_kube_pods_cached", "").await, 3.0);

    // Kibana's queries work on the flattened labels.
    let index = s.home.indices("containers");
    let by_label = search(&index, json!({"term": {"kubernetes.labels.app.kubernetes.io/name": "checkout"}})).await;
    assert_eq!(by_label.len(), 1, "{by_label:?}");
    let by_ns_label = search(&index, json!({"term": {"kubernetes.namespace_labels.team": "payments"}})).await;
    assert_eq!(by_ns_label.len(), 3);

    // A label changed on the live pod shows up on later lines.
    api.kubectl(&["-n", "shop", "label", "pod", &web, "release=canary"]);
    let mut seen_at = None;
    for i in 0..100 {
        let msg = format!("web after label {i}");
        web_log.line(&msg);
        let d = s.wait_for_message(&msg).await;
        if d["kubernetes"]["labels"]["release"] == "canary" {
            seen_at = Some(i);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen_at = seen_at.expect("the new label never showed up");
    for i in 0..3 {
        let msg = format!("web later {i}");
        web_log.line(&msg);
        let d = s.wait_for_message(&msg).await;
        assert_eq!(d["kubernetes"]["labels"]["release"], "canary", "{d}");
        assert_eq!(d["kubernetes"]["labels"]["app"], "checkout");
    }
    let first = s.doc_with_message("web 1").await.unwrap();
    assert!(first["kubernetes"]["labels"].get("release").is_none(), "earlier lines keep what was true then");
    eprintln!("the new label showed up on line {seen_at} after the change");

    // A deleted pod stays cached for deleted_pod_retention (5m): a file opened
    // after the deletion (the container's next restart) is still enriched.
    api.kubectl(&["-n", "shop", "delete", "pod", &db, "--grace-period=0", "--force", "--wait=false"]);
    s.home.wait_for_metric("klg_containers_kube_pods_cached", "", Duration::from_secs(30), |v| v == 3.0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let db_again = LogFile::new(&s.root, "shop", &db, &db_uid, 1);
    db_again.line("db after delete");
    let d = s.wait_for_message("db after delete").await;
    assert_eq!(d["kubernetes"]["statefulset"]["name"], "db", "{d}");
    assert!(flags(&d).is_empty(), "{d}");
    s.home.delete_indices().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_killed_mid_run_loses_no_line_and_flags_only_pods_it_never_knew() {
    let Some((_one, mut s)) = begin("kmeta-down").await else {
        return;
    };
    let mut api = Api::start();
    api.namespace(&s.dir);
    let uid = api.pod(&s.dir, "shop", "web-1", &[("app", "web")], None, "nginx:1.27", "10.244.2.1");
    s.enable_kubernetes(&api);
    let known = LogFile::new(&s.root, "shop", "web-1", &uid, 0);
    known.line("before 0");
    let _gw = s.home.start(&s.config);
    let d = s.wait_for_message("before 0").await;
    assert_eq!(d["kubernetes"]["labels"]["app"], "web", "{d}");

    api.kill_apiserver();
    s.pods_metric_reaches("klg_containers_kube_watch_restarts_total", 1.0).await;
    // With the API gone: the known pod's lines keep their metadata; a pod that
    // appeared meanwhile (unknown to the cache) ships flagged.
    let newcomer_uid = "11111111-2222-3333-4444-555555555555";
    let newcomer = LogFile::new(&s.root, "shop", "web-2", newcomer_uid, 0);
    for i in 0..200 {
        known.line(&format!("down {i}"));
        newcomer.line(&format!("newcomer {i}"));
    }
    let index = s.home.indices("containers");
    assert_eq!(wait_for_count(&index, 401, Duration::from_secs(60)).await, 401, "no line lost while the API is down");
    for d in s.docs().await {
        let msg = d["message"].as_str().unwrap();
        if msg.starts_with("newcomer") {
            assert_eq!(flags(&d), ["metadata_missing"], "{d}");
            assert_eq!(d["kubernetes"]["pod"]["uid"], newcomer_uid);
        } else {
            assert!(flags(&d).is_empty(), "{d}");
            assert_eq!(d["kubernetes"]["labels"]["app"], "web", "{d}");
        }
    }
    assert!(s.home.metric("klg_containers_metadata_missing_total", "").await >= 200.0);

    // The API comes back at the same URL: the watches resume (or relist after a
    // 410 Gone) and a pod created now is enriched.
    api.up();
    let uid3 = api.pod(&s.dir, "shop", "web-3", &[("app", "web3")], None, "nginx:1.27", "10.244.2.3");
    let third = LogFile::new(&s.root, "shop", "web-3", &uid3, 0);
    let mut enriched = false;
    for i in 0..150 {
        let msg = format!("after {i}");
        third.line(&msg);
        let d = s.wait_for_message(&msg).await;
        if d["kubernetes"]["labels"]["app"] == "web3" {
            enriched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(enriched, "a pod created after the API came back was never enriched; log:\n{}", tail(&s.home.log()));
    let relists = s.home.metric("klg_containers_kube_relists_total", "resource=\"pods\"").await;
    let restarts = s.home.metric("klg_containers_kube_watch_restarts_total", "resource=\"pods\"").await;
    eprintln!("pods: {relists} lists, {restarts} failed requests");
    assert!(Es::test().terms(&index, "event.id", 2, 10).await.is_empty(), "an _id twice");
    s.home.delete_indices().await;
}

/// History expired while the gateway was cut off from the API: its watches come
/// back with a resourceVersion that etcd has compacted away, get 410 Gone, and list
/// again. What changed meanwhile (a label on a known pod, a new pod) is on the next
/// lines, and nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_expired_while_cut_off_gets_410_and_a_relist_that_sees_the_changes() {
    let Some((_one, mut s)) = begin("kmeta-410").await else {
        return;
    };
    // Without the watch cache, watches are served by etcd itself, which answers a
    // compacted resourceVersion with 410 Gone; kube-apiserver compacts every second.
    let api = Api::start_with_args(&["--watch-cache=false", "--etcd-compaction-interval=1s"]);
    api.namespace(&s.dir);
    let uid = api.pod(&s.dir, "shop", "web-1", &[("app", "web")], None, "nginx:1.27", "10.244.3.1");

    // The gateway reaches the API only through a proxy the test can cut.
    let kube_url = api.inner.var("KUBE_URL").to_string();
    let proxy = GatedProxy::start(kube_url.trim_start_matches("https://").to_string()).await;
    proxy.open();
    let proxied_url = proxy.url.replace("http://", "https://");
    let kubeconfig = s.dir.join("proxied.kubeconfig");
    let original = std::fs::read_to_string(api.inner.var("KUBECONFIG")).unwrap();
    assert!(original.contains(&kube_url), "the kubeconfig names {kube_url}:\n{original}");
    std::fs::write(&kubeconfig, original.replace(&kube_url, &proxied_url)).unwrap();
    s.enable_kubernetes_with(kubeconfig.to_str().unwrap());

    let web1 = LogFile::new(&s.root, "shop", "web-1", &uid, 0);
    web1.line("before 0");
    let _gw = s.home.start(&s.config);
    let d = s.wait_for_message("before 0").await;
    assert_eq!(d["kubernetes"]["labels"]["app"], "web", "{d}");
    let pods_lists = || s.home.metric("klg_containers_kube_relists_total", "resource=\"pods\"");
    assert_eq!(pods_lists().await, 1.0, "one list at start");

    // Cut: the watch streams break mid-stream and every reconnect fails.
    let list: Value = serde_json::from_str(&api.kubectl(&["get", "--raw", "/api/v1/pods?limit=1"])).unwrap();
    let cut_at = list["metadata"]["resourceVersion"].as_str().expect("a list's resourceVersion").to_string();
    proxy.cut();
    s.pods_metric_reaches("klg_containers_kube_watch_restarts_total", 1.0).await;
    // Meanwhile, unseen by the gateway: a label changes, a pod is created.
    api.kubectl(&["-n", "shop", "label", "pod", "web-1", "app=web-v2", "--overwrite"]);
    let uid2 = api.pod(&s.dir, "shop", "web-2", &[("app", "two")], None, "nginx:1.27", "10.244.3.2");
    // Wait until etcd has compacted the history the gateway would resume from: a
    // watch from the resourceVersion before the cut is refused with 410 Gone.
    let watch_from_cut = format!("/api/v1/pods?watch=1&resourceVersion={cut_at}&timeoutSeconds=1");
    let (_, expired) = poll(
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async { api.inner.kubectl(&["get", "--raw", &watch_from_cut]) },
        // An ERROR event with code 410 in the stream, or the request refused as Expired.
        |out| {
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            said.contains("\"code\":410") || said.contains("too old resource version")
        },
    )
    .await;
    assert!(
        expired,
        "etcd never compacted resourceVersion {cut_at}; kube-apiserver log:\n{}",
        tail(&api.inner.server_log())
    );

    // Back: the resumed watches get 410 Gone and list again.
    proxy.open();
    s.pods_metric_reaches("klg_containers_kube_relists_total", 2.0).await;
    // The relist is counted when it starts; its pods are applied when it ends. So
    // lines are written until they show the changes (never, without the relist:
    // the resumed watches would keep getting 410 and the cache would stay as it was).
    let web2 = LogFile::new(&s.root, "shop", "web-2", &uid2, 0);
    let mut written = 1;
    let mut seen = None;
    for i in 0..150 {
        web1.line(&format!("after {i}"));
        web2.line(&format!("newcomer {i}"));
        written += 2;
        let d1 = s.wait_for_message(&format!("after {i}")).await;
        let d2 = s.wait_for_message(&format!("newcomer {i}")).await;
        if d1["kubernetes"]["labels"]["app"] == "web-v2" && d2["kubernetes"]["labels"]["app"] == "two" {
            seen = Some((d1, d2));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (d1, d2) = seen.unwrap_or_else(|| {
        panic!("the changes made while cut off never showed after the relist; log:\n{}", tail(&s.home.log()))
    });
    assert_eq!(d1["kubernetes"]["labels"]["app"], "web-v2", "the label changed while cut off: {d1}");
    assert_eq!(d2["kubernetes"]["labels"]["app"], "two", "the pod created while cut off: {d2}");
    assert!(flags(&d2).is_empty(), "{d2}");
    assert_eq!(d2["kubernetes"]["pod"]["ip"], "10.244.3.2", "{d2}");
    let index = s.home.indices("containers");
    assert_eq!(wait_for_count(&index, written, Duration::from_secs(30)).await, written, "every line once");
    assert!(Es::test().terms(&index, "event.id", 2, 10).await.is_empty(), "an _id twice");
    s.home.delete_indices().await;
}
