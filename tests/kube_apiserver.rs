//! End to end with a REAL kube-apiserver (built by `scripts/kube-apiserver.sh build`,
//! run with its own etcd by `scripts/kube-apiserver.sh start`), its audit webhook
//! pointed at the gateway binary (mTLS), and the real Elasticsearch.
//!
//! The ground truth is kube-apiserver's own audit log (`--audit-log-path`, json): its
//! log backend gets exactly the events the webhook backend gets. So the set of
//! (auditID, stage) pairs in that file must equal the set in the gateway's audit index,
//! each pair exactly once; with the gateway killed mid-traffic, every event that
//! kube-apiserver did not report as dropped must still arrive exactly once.
//!
//! Without the binaries these tests fail, unless KLG_SKIP_KUBE_APISERVER_TESTS=1.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::es::all_docs;
use common::kube_apiserver::{binaries_built_or_skip, es_pairs, kube_webhook_setup, KubeApiserver, Pair, Webhook};
use common::reliability::Reliability;
use common::unique;
use common::wait::poll;
use common::webhook::WebhookSetup;
use serde_json::{json, Value};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// One kube-apiserver at a time: each start takes both cores for a few seconds, and the
/// kill test's timing should not depend on another test's start.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// What one request must answer.
async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<(&str, Value)>,
    want: u16,
) -> String {
    let mut req = client.request(method.clone(), url).bearer_auth(token);
    if let Some((content_type, b)) = body {
        req = req.header("content-type", content_type).body(b.to_string());
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, want, "{method} {url}: {text}");
    text
}

/// Everything a test needs to drive kube-apiserver from a spawned task.
#[derive(Clone)]
struct Driver {
    client: reqwest::Client,
    base: String,
    admin: String,
    nobody: String,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl Driver {
    fn new(api: &KubeApiserver) -> Driver {
        Driver {
            client: api.client(),
            base: api.var("KUBE_URL").to_string(),
            admin: api.var("KUBE_ADMIN_TOKEN").to_string(),
            nobody: api.var("KUBE_USER_TOKEN").to_string(),
            kubectl: api.var("KUBECTL").into(),
            kubeconfig: api.var("KUBECONFIG").into(),
        }
    }

    async fn kubectl(&self, args: &[&str]) {
        let mut cmd = std::process::Command::new(&self.kubectl);
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig).stdin(std::process::Stdio::null());
        let what = args.join(" ");
        let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One round of ordinary API traffic in namespace `ns`: creates, a Secret with
    /// data, patches, a delete, reads, a 403, a 401, a short watch, and kubectl.
    /// Returns the Secret values it wrote (plain and base64), which must never be
    /// stored anywhere.
    async fn round(&self, ns: &str) -> Vec<String> {
        use reqwest::Method;
        let (c, a) = (&self.client, self.admin.as_str());
        let u = |p: &str| format!("{}{}", self.base, p);
        let j = "application/json";
        call(
            c,
            Method::POST,
            &u("/api/v1/namespaces"),
            a,
            Some((j, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))),
            201,
        )
        .await;
        for i in 0..3 {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}")},
                            "data": {"k": format!("v-{i}")}});
            call(c, Method::POST, &u(&format!("/api/v1/namespaces/{ns}/configmaps")), a, Some((j, cm)), 201).await;
        }
        let password = format!("pw-{}-Zq8xK", unique(ns));
        let token = format!("tok-{}-Lm3vR", unique(ns));
        let rotated = format!("rot-{}-Pp7wE", unique(ns));
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "type": "Opaque",
                            "data": {"password": b64(&password)}, "stringData": {"token": token}});
        call(c, Method::POST, &u(&format!("/api/v1/namespaces/{ns}/secrets")), a, Some((j, secret)), 201).await;
        let patch = json!({"data": {"password": b64(&rotated)}});
        call(
            c,
            Method::PATCH,
            &u(&format!("/api/v1/namespaces/{ns}/secrets/db")),
            a,
            Some(("application/merge-patch+json", patch)),
            200,
        )
        .await;
        call(c, Method::GET, &u(&format!("/api/v1/namespaces/{ns}/secrets/db")), a, None, 200).await;
        self.kubectl(&["-n", ns, "patch", "configmap", "cm-0", "--type=merge", "-p", r#"{"data":{"k":"patched"}}"#])
            .await;
        call(c, Method::DELETE, &u(&format!("/api/v1/namespaces/{ns}/configmaps/cm-1")), a, None, 200).await;
        call(c, Method::GET, &u(&format!("/api/v1/namespaces/{ns}/configmaps")), a, None, 200).await;
        // The low-privilege user has no RBAC grant: 403. A token nobody issued: 401.
        call(c, Method::GET, &u(&format!("/api/v1/namespaces/{ns}/secrets")), &self.nobody, None, 403).await;
        call(c, Method::GET, &u("/api/v1/namespaces"), "not-a-valid-token", None, 401).await;
        // A short watch: kube-apiserver ends it after timeoutSeconds.
        let t0 = Instant::now();
        call(
            c,
            Method::GET,
            &u(&format!("/api/v1/namespaces/{ns}/configmaps?watch=true&timeoutSeconds=1")),
            a,
            None,
            200,
        )
        .await;
        assert!(t0.elapsed() < Duration::from_secs(30));
        self.kubectl(&["get", "configmaps", "-n", ns, "-o", "name"]).await;
        [password, token, rotated].iter().flat_map(|v| [v.clone(), b64(v)]).collect()
    }
}

/// Polls until the gateway's index holds exactly the events kube-apiserver's audit log
/// has, less the events kube-apiserver reports as dropped by the webhook (`dropped`
/// counts only when `allow_dropped`); those may or may not be there (a batch can be
/// spooled and its answer lost). Then asserts it, with the differences, and that no
/// pair is there twice. Returns (log, in Elasticsearch, dropped).
async fn assert_index_matches_audit_log(
    api: &KubeApiserver,
    setup: &WebhookSetup,
    allow_dropped: bool,
    timeout: Duration,
) -> (BTreeSet<Pair>, BTreeMap<Pair, usize>, BTreeSet<Pair>) {
    let read = || async {
        let dropped = if allow_dropped { api.webhook_dropped_pairs() } else { BTreeSet::new() };
        let es = es_pairs(&setup.audit_indices()).await;
        // Read the log after the index: whatever is in the index is in the log by then.
        let log = api.audit_log_pairs();
        (log, es, dropped)
    };
    let missing_from = |(log, es, dropped): &(BTreeSet<Pair>, BTreeMap<Pair, usize>, BTreeSet<Pair>)| -> Vec<Pair> {
        log.iter().filter(|p| !es.contains_key(*p) && !dropped.contains(*p)).cloned().collect()
    };
    let unexpected_in = |(log, es, _): &(BTreeSet<Pair>, BTreeMap<Pair, usize>, BTreeSet<Pair>)| -> Vec<Pair> {
        es.keys().filter(|p| !log.contains(*p)).cloned().collect()
    };
    let matches = |state: &_| missing_from(state).is_empty() && unexpected_in(state).is_empty();
    let (state, _) = poll(timeout, Duration::from_millis(500), read, matches).await;
    let (missing, unexpected) = (missing_from(&state), unexpected_in(&state));
    let (log, es, dropped) = state;
    assert!(
        unexpected.is_empty(),
        "{} pairs in Elasticsearch that kube-apiserver never logged, e.g. {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)]
    );
    assert!(
        missing.is_empty(),
        "{} of {} logged pairs not in Elasticsearch after {timeout:?} ({} reported dropped), e.g. {:?}\n\
         gateway log tail:\n{}\nkube-apiserver webhook errors: {:?}",
        missing.len(),
        log.len(),
        dropped.len(),
        &missing[..missing.len().min(10)],
        setup.log_tail(30),
        api.webhook_error_lines()
    );
    let twice: Vec<_> = es.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "pairs stored more than once: {twice:?}");
    assert!(!log.is_empty(), "the audit log is empty");
    (log, es, dropped)
}

/// No Secret value, plain or base64, in any document of the gateway's indices.
async fn assert_no_secret_values(setup: &WebhookSetup, values: &[String]) {
    let docs = all_docs(&setup.all_indices()).await;
    assert!(!docs.is_empty());
    for (id, doc) in &docs {
        let text = doc.to_string();
        for v in values {
            assert!(!text.contains(v.as_str()), "Secret value {v:?} stored in document {id}: {text}");
        }
    }
    eprintln!("no Secret value among {} values in {} documents", values.len(), docs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audit_event_of_a_real_kube_apiserver_arrives_exactly_once_without_secret_values() {
    if !binaries_built_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let setup = kube_webhook_setup("kube-e2e");
    let _gw = setup.start();
    let api = KubeApiserver::start(Some(Webhook::of(&setup)));
    let driver = Driver::new(&api);

    let mut secrets = Vec::new();
    for i in 0..3 {
        secrets.extend(driver.round(&format!("klg-e2e-{i}")).await);
    }

    let (log, es, _) = assert_index_matches_audit_log(&api, &setup, false, Duration::from_secs(90)).await;
    assert!(api.webhook_error_lines().is_empty(), "webhook errors: {:?}", api.webhook_error_lines());
    eprintln!("{} (auditID, stage) pairs in kube-apiserver's audit log = {} in Elasticsearch", log.len(), es.len());

    // The traffic produced what it was meant to (the sets being equal, these are in
    // Elasticsearch too).
    let events = api.audit_log_events();
    let has = |f: &dyn Fn(&Value) -> bool| events.iter().any(f);
    let code = |e: &Value| e["responseStatus"]["code"].as_u64().unwrap_or(0);
    assert!(has(&|e| code(e) == 403 && e["user"]["username"] == "klg-nobody"), "a 403 of the no-RBAC user");
    assert!(has(&|e| code(e) == 401), "a 401 of the bad token");
    assert!(has(&|e| e["verb"] == "watch" && e["stage"] == "ResponseComplete"), "a finished watch");
    assert!(has(&|e| e["verb"] == "patch" && e["objectRef"]["resource"] == "secrets"), "the Secret patch");
    assert!(has(&|e| e["verb"] == "delete" && e["objectRef"]["resource"] == "configmaps"), "the delete");
    assert!(has(&|e| e["userAgent"].as_str().unwrap_or("").starts_with("kubectl/v1.36.3")), "kubectl's requests");
    // And Elasticsearch has the 401 (empty user) as a document of its own.
    let four01: Vec<&Pair> = log
        .iter()
        .filter(|p| events.iter().any(|e| e["auditID"] == p.0.as_str() && e["stage"] == p.1.as_str() && code(e) == 401))
        .collect();
    assert!(four01.iter().all(|p| es.contains_key(*p)));

    assert_no_secret_values(&setup, &secrets).await;
    drop(api);
    setup.delete_indices().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_and_restarted_mid_traffic_loses_no_acknowledged_event_and_duplicates_none() {
    if !binaries_built_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let setup = kube_webhook_setup("kube-kill9");
    let mut gw = setup.start();
    let api = KubeApiserver::start(Some(Webhook::of(&setup)));
    let driver = Driver::new(&api);

    // Traffic in the background, round after round, until told to stop.
    let rounds = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (driver, rounds, stop) = (driver.clone(), rounds.clone(), stop.clone());
        tokio::spawn(async move {
            let mut secrets = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                secrets.extend(driver.round(&format!("klg-kill-{i}")).await);
                i += 1;
                rounds.store(i, Ordering::SeqCst);
            }
            secrets
        })
    };
    let wait_rounds = |n: usize| {
        let rounds = rounds.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while rounds.load(Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "traffic too slow");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // Mid-traffic (one round done, the next one running, batches in flight every
    // second): SIGKILL, a few seconds down, restart on the same port and spool.
    wait_rounds(1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let in_es_before = es_pairs(&setup.audit_indices()).await.len();
    gw.kill9();
    let killed_at_round = rounds.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _restarted = setup.start();
    let restarted_at_round = rounds.load(Ordering::SeqCst);
    wait_rounds(restarted_at_round + 2).await;
    stop.store(true, Ordering::SeqCst);
    let secrets = traffic.await.unwrap();
    eprintln!(
        "killed during round {killed_at_round} with {in_es_before} pairs in Elasticsearch; restarted during round \
         {restarted_at_round}; {} rounds in all",
        rounds.load(Ordering::SeqCst)
    );

    // kube-apiserver retries a reset 5 times from 10 s (x1.5): wait long enough.
    let (log, es, dropped) = assert_index_matches_audit_log(&api, &setup, true, Duration::from_secs(180)).await;
    let dropped_but_stored = dropped.iter().filter(|p| es.contains_key(*p)).count();
    eprintln!(
        "{} pairs in kube-apiserver's audit log; {} in Elasticsearch, each once; {} reported dropped by kube-apiserver's \
         webhook after its retries, {dropped_but_stored} of them stored anyway",
        log.len(),
        es.len(),
        dropped.len()
    );
    let errors = api.webhook_error_lines();
    eprintln!("kube-apiserver's webhook reported {} errors, e.g. {:?}", errors.len(), errors.first());
    // Everything that arrived before the kill is still there, and more came after it.
    assert!(es.len() > in_es_before);
    assert_eq!(log.len() - (dropped.len() - dropped_but_stored), es.len());
    // Down for a few seconds, every batch got through on a retry: nothing was given up,
    // so the index holds exactly what the audit log holds.
    assert!(dropped.is_empty(), "kube-apiserver gave up on {} events: {errors:?}", dropped.len());
    assert_eq!(es.keys().cloned().collect::<BTreeSet<_>>(), log);
    Reliability {
        fault: "kube-apiserver's webhook: the gateway killed -9 and restarted mid-traffic",
        sent: log.len() as u64,
        acknowledged: (log.len() - dropped.len()) as u64,
        stored: es.len() as u64,
        duplicated: es.values().map(|n| (n - 1) as u64).sum(),
        set_aside: 0,
    }
    .report();
    assert_no_secret_values(&setup, &secrets).await;
    drop(api);
    setup.delete_indices().await;
}

/// Every `.yaml` file under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_policy_and_webhook_kubeconfig_load_and_every_deploy_manifest_passes_server_validation() {
    if !binaries_built_or_skip() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let setup = kube_webhook_setup("kube-deploy");
    let _gw = setup.start();
    // The script starts kube-apiserver with deploy/kube-apiserver/audit-policy.yaml as it
    // is and with deploy/kube-apiserver/audit-webhook-kubeconfig.yaml with only its
    // server URL and three file paths replaced; a file it cannot load stops the start.
    let api = KubeApiserver::start(Some(Webhook::of(&setup)));
    let deploy = Path::new(REPO).join("deploy");
    let documented = std::fs::read_to_string(deploy.join("kube-apiserver/audit-webhook-kubeconfig.yaml")).unwrap();
    let used = std::fs::read_to_string(api.dir.join("audit-webhook-kubeconfig.yaml")).unwrap();
    let changed: Vec<(&str, &str)> = documented.lines().zip(used.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(documented.lines().count(), used.lines().count());
    assert_eq!(changed.len(), 4, "only the server URL and the three paths differ: {changed:?}");

    // The policy does what docs/audit-webhook.md says (and the events got through).
    let driver = Driver::new(&api);
    let secrets = driver.round("klg-policy").await;
    let (_, es, _) = assert_index_matches_audit_log(&api, &setup, false, Duration::from_secs(90)).await;
    let events = api.audit_log_events();
    let level_of = |resource: &str, verb: &str| -> BTreeSet<String> {
        events
            .iter()
            .filter(|e| e["objectRef"]["resource"] == resource && e["verb"] == verb)
            .map(|e| e["level"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(level_of("secrets", "create"), BTreeSet::from(["Metadata".to_string()]));
    assert_eq!(level_of("namespaces", "create"), BTreeSet::from(["RequestResponse".to_string()]));
    assert!(events.iter().all(|e| e["stage"] != "RequestReceived"), "omitStages: [RequestReceived]");
    assert!(events.iter().all(|e| e["requestURI"] != "/readyz"), "health checks are not audited");
    assert_no_secret_values(&setup, &secrets).await;
    eprintln!("policy checks on {} events ({} in Elasticsearch)", events.len(), es.len());

    // The kubeadm snippet names real kube-apiserver flags.
    let apiserver_bin = Path::new(api.var("KUBECTL")).with_file_name("kube-apiserver");
    let help = std::process::Command::new(&apiserver_bin).arg("--help").output().unwrap();
    let help = format!("{}{}", String::from_utf8_lossy(&help.stdout), String::from_utf8_lossy(&help.stderr));
    let kubeadm = std::fs::read_to_string(deploy.join("kube-apiserver/kubeadm-clusterconfiguration.yaml")).unwrap();
    let flags: Vec<&str> =
        kubeadm.lines().filter_map(|l| l.trim().strip_prefix("- name: ")).filter(|n| *n != "audit").collect();
    assert!(flags.len() >= 5, "{flags:?}");
    for flag in &flags {
        assert!(
            help.contains(&format!("--{flag} ")),
            "kubeadm snippet: --{flag} is not a kube-apiserver {} flag",
            "v1.36.3"
        );
    }

    // Every Kubernetes manifest under deploy/ (deploy/kube-apiserver/ holds files for
    // kube-apiserver itself, checked above) passes the server's strict validation.
    // Server-side dry runs do not create namespaces, so those are created for real first.
    let manifests: Vec<PathBuf> =
        yaml_files(&deploy).into_iter().filter(|p| !p.starts_with(deploy.join("kube-apiserver"))).collect();
    assert!(manifests.len() >= 8, "{manifests:?}");
    for m in &manifests {
        if std::fs::read_to_string(m).unwrap().lines().any(|l| l.trim() == "kind: Namespace") {
            api.kubectl_ok(&["apply", "-f", m.to_str().unwrap()]);
        }
    }
    let mut failures = Vec::new();
    for m in &manifests {
        let out = api.kubectl(&["apply", "--dry-run=server", "--validate=strict", "-f", m.to_str().unwrap()]);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        eprintln!("{}: {}", m.strip_prefix(REPO).unwrap().display(), text.trim());
        if !out.status.success() || text.contains("Warning:") {
            failures.push(format!("{}: {}", m.display(), text.trim()));
        }
    }
    assert!(failures.is_empty(), "manifests refused by kube-apiserver v1.36.3:\n{}", failures.join("\n"));
    drop(api);
    setup.delete_indices().await;
}
