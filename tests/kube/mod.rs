//! Helpers for `tests/kube_apiserver.rs` only: a real kube-apiserver (and etcd) run by
//! `scripts/kube-apiserver.sh` in a test's own directory, the gateway binary as a child
//! process, and reads of Elasticsearch. Kept apart from `tests/common` on purpose: these
//! tests need little of it, and it changes under other work.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kube-apiserver.sh");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The environment variable that lets these tests skip when the binaries are not built.
pub const SKIP_VAR: &str = "KLG_SKIP_KUBE_APISERVER_TESTS";

/// (auditID, stage)
pub type Pair = (String, String);

// ------------------------------------------------------------------- Elasticsearch

pub fn es_url() -> String {
    std::env::var("KLG_TEST_ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".into())
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

pub async fn es(method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, format!("{}{}", es_url(), path));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let resp = req.send().await.unwrap_or_else(|e| {
        panic!("Elasticsearch at {} not reachable ({e}); start it with scripts/elasticsearch.sh start", es_url())
    });
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Every document of `pattern` (`_id` and `_source`), after a refresh. A 503 (a
/// just-created index whose shard is not allocated yet) means "not yet": retried.
pub async fn all_docs(pattern: &str) -> Vec<(String, Value)> {
    let opts = "ignore_unavailable=true&allow_no_indices=true";
    es(reqwest::Method::POST, &format!("/{pattern}/_refresh?{opts}"), None).await;
    let body = serde_json::json!({"query": {"match_all": {}}, "size": 10000, "track_total_hits": true});
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = es(reqwest::Method::POST, &format!("/{pattern}/_search?{opts}"), Some(body.clone())).await;
        if status == 503 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        assert_eq!(status, 200, "search {pattern}: {v}");
        let total = v["hits"]["total"]["value"].as_u64().unwrap();
        assert!(total < 10000, "more documents than one search returns: {total}");
        return v["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["_id"].as_str().unwrap().to_string(), h["_source"].clone()))
            .collect();
    }
}

/// The (auditID, stage) of each audit document, with how often each occurs.
pub async fn es_pairs(pattern: &str) -> BTreeMap<Pair, usize> {
    let mut out = BTreeMap::new();
    for (_, doc) in all_docs(pattern).await {
        let a = &doc["kubernetes"]["audit"];
        let pair = (
            a["auditID"].as_str().unwrap_or_else(|| panic!("no kubernetes.audit.auditID: {doc}")).to_string(),
            a["stage"].as_str().unwrap_or_else(|| panic!("no kubernetes.audit.stage: {doc}")).to_string(),
        );
        *out.entry(pair).or_insert(0) += 1;
    }
    out
}

pub async fn delete_indices(pattern: &str) {
    es(
        reqwest::Method::DELETE,
        &format!("/{pattern}?ignore_unavailable=true&allow_no_indices=true&expand_wildcards=all"),
        None,
    )
    .await;
}

/// A lowercase name unique to this process and moment.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("t{}{}-{}", std::process::id(), nanos % 100_000, name).to_lowercase()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ------------------------------------------------------------------------- gateway

/// The gateway binary (audit webhook role, mTLS) with its own certificates, spool
/// directory and index names `<prefix>-audit-*` / `<prefix>-deadletter-*`.
pub struct Gateway {
    pub dir: PathBuf,
    pub prefix: String,
    pub port: u16,
    admin: String,
    config: PathBuf,
    child: Option<Child>,
}

impl Gateway {
    pub fn new(dir: &Path, name: &str) -> Gateway {
        let dir = dir.join("gateway");
        std::fs::create_dir_all(&dir).unwrap();
        let certs = dir.join("certs");
        let status = Command::new(env!("CARGO_BIN_EXE_kube-log-gateway"))
            .args(["certs", "--out"])
            .arg(&certs)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "kube-log-gateway certs --out {}", certs.display());
        let prefix = unique(name);
        let port = free_port();
        let admin = format!("127.0.0.1:{}", free_port());
        let c = certs.display();
        // allowed_client_names: only kube-apiserver's certificate (CN kube-apiserver), as
        // deploy/gateway configures it.
        let yaml = format!(
            "cluster_name: kube-e2e\n\
             data_dir: {data}\n\
             server:\n  listen: 127.0.0.1:{port}\n  tls:\n    cert_file: {c}/server.crt\n    key_file: {c}/server.key\n    \
             client_ca_file: {c}/ca.crt\n    allowed_client_names: [kube-apiserver]\n\
             admin:\n  listen: {admin}\n\
             elasticsearch:\n  urls: [\"{es}\"]\n  indices:\n    audit: \"{prefix}-audit-%Y.%m.%d\"\n    \
             dead_letter: \"{prefix}-deadletter-%Y.%m.%d\"\n  template:\n    number_of_replicas: 0\n    refresh_interval: 1s\n  \
             batch:\n    linger: 50ms\n  retry:\n    initial_backoff: 50ms\n    max_backoff: 1s\n",
            data = dir.join("data").display(),
            es = es_url(),
        );
        let config = dir.join("gateway.yaml");
        std::fs::write(&config, yaml).unwrap();
        Gateway { dir, prefix, port, admin, config, child: None }
    }

    pub fn certs(&self) -> PathBuf {
        self.dir.join("certs")
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/audit", self.port)
    }

    pub fn audit_indices(&self) -> String {
        format!("{}-audit-*", self.prefix)
    }

    pub fn all_indices(&self) -> String {
        format!("{}-*", self.prefix)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    /// Starts `kube-log-gateway serve` and waits for its /readyz.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "gateway already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("gateway.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kube-log-gateway"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the gateway");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                panic!("gateway exited with {status}: {}", self.log());
            }
            if http_get_ok(&self.admin, "/readyz") {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "gateway not ready after 60 s: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn http_get_ok(addr: &str, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

// ------------------------------------------------------------------ kube-apiserver

/// Whether `scripts/kube-apiserver.sh build` has built the binaries. When not: the
/// test fails, unless `KLG_SKIP_KUBE_APISERVER_TESTS=1` says to skip (returns false).
pub fn binaries_built_or_skip() -> bool {
    let out = Command::new("bash").arg(SCRIPT).arg("built").output().expect("run scripts/kube-apiserver.sh built");
    if out.status.success() {
        return true;
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let skip = std::env::var(SKIP_VAR).map(|v| matches!(v.as_str(), "1" | "true" | "yes")).unwrap_or(false);
    assert!(
        skip,
        "kube-apiserver and kubectl are not built in {dir}: run `bash scripts/kube-apiserver.sh build` \
         (once, about 15-25 minutes), or set {SKIP_VAR}=1 to skip these tests"
    );
    eprintln!("SKIPPED: kube-apiserver/kubectl not built in {dir} and {SKIP_VAR} is set");
    false
}

/// A kube-apiserver + etcd started by `scripts/kube-apiserver.sh start` in its own
/// directory; `stop` on drop, so nothing outlives the test (a panic included).
pub struct KubeApiserver {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
}

/// Where kube-apiserver's audit webhook points.
pub struct Webhook {
    pub url: String,
    /// ca.crt (the gateway's CA), client.crt and client.key (kube-apiserver's).
    pub certs: PathBuf,
}

impl KubeApiserver {
    pub fn start(dir: &Path, webhook: Option<Webhook>) -> KubeApiserver {
        let dir = dir.join("kube");
        let mut cmd = Command::new("bash");
        cmd.arg(SCRIPT).arg("start").env("KUBE_DIR", &dir);
        for v in ["KLG_WEBHOOK_URL", "KLG_WEBHOOK_CA", "KLG_WEBHOOK_CERT", "KLG_WEBHOOK_KEY", "KUBE_PORT", "ETCD_PORT"]
        {
            cmd.env_remove(v);
        }
        if let Some(w) = &webhook {
            cmd.env("KLG_WEBHOOK_URL", &w.url)
                .env("KLG_WEBHOOK_CA", w.certs.join("ca.crt"))
                .env("KLG_WEBHOOK_CERT", w.certs.join("client.crt"))
                .env("KLG_WEBHOOK_KEY", w.certs.join("client.key"));
        }
        // Constructed before the start, so a start that fails half-way is stopped too.
        let mut api = KubeApiserver { dir: dir.clone(), env: HashMap::new() };
        let out = cmd.output().expect("run scripts/kube-apiserver.sh start");
        assert!(
            out.status.success(),
            "scripts/kube-apiserver.sh start failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(dir.join("env")).expect("the instance's env file");
        api.env = env.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        api
    }

    pub fn var(&self, name: &str) -> &str {
        self.env.get(name).unwrap_or_else(|| panic!("{name} not in {}/env", self.dir.display()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.var("KUBE_URL"), path)
    }

    /// An HTTPS client that trusts this kube-apiserver's CA; tokens go per request.
    pub fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.var("KUBE_CA")).unwrap()).unwrap();
        reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    /// `kubectl` as the admin (system:masters).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.var("KUBECTL"))
            .args(args)
            .env("KUBECONFIG", self.var("KUBECONFIG"))
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kube-apiserver.log")).unwrap_or_default()
    }

    /// Every (auditID, stage) in kube-apiserver's own audit log (--audit-log-path, json):
    /// the ground truth. A last line still being written is left for the next read.
    pub fn audit_log_pairs(&self) -> BTreeSet<Pair> {
        let text = std::fs::read_to_string(self.var("AUDIT_LOG")).unwrap_or_default();
        let mut out = BTreeSet::new();
        for line in text.lines() {
            let Ok(ev) = serde_json::from_str::<Value>(line) else {
                assert!(!text.ends_with('\n') && text.ends_with(line), "unparsable audit log line: {line}");
                continue;
            };
            out.insert((ev["auditID"].as_str().unwrap().to_string(), ev["stage"].as_str().unwrap().to_string()));
        }
        out
    }

    /// The events kube-apiserver reports it could not deliver to the webhook (after its
    /// retries, or at once for an error it does not retry, e.g. connection refused):
    /// k8s.io/apiserver's `HandlePluginError` logs "Error in audit plugin 'webhook'"
    /// followed by one `AUDIT: id="…" stage="…"` line per impacted event.
    pub fn webhook_dropped_pairs(&self) -> BTreeSet<Pair> {
        let log = self.server_log();
        let mut out = BTreeSet::new();
        let mut in_webhook_error = false;
        for line in log.lines() {
            // A klog header (`E1125 10:00:00.000000 ...`) starts a new message.
            let b = line.as_bytes();
            if b.len() > 5 && b"IWEF".contains(&b[0]) && b[1..5].iter().all(u8::is_ascii_digit) {
                in_webhook_error = line.contains("Error in audit plugin '") && line.contains("webhook");
                continue;
            }
            if !in_webhook_error {
                continue;
            }
            let Some((_, rest)) = line.split_once("AUDIT: id=\"") else { continue };
            let id = rest.split('"').next().unwrap().to_string();
            let stage = rest.split_once("stage=\"").map(|(_, r)| r.split('"').next().unwrap().to_string()).unwrap();
            out.insert((id, stage));
        }
        out
    }

    /// How many times the webhook reported an error (retried or not).
    pub fn webhook_error_lines(&self) -> Vec<String> {
        self.server_log().lines().filter(|l| l.contains("Error in audit plugin 'webhook'")).map(String::from).collect()
    }

    pub fn stop(&mut self) {
        let out = Command::new("bash").arg(SCRIPT).arg("stop").env("KUBE_DIR", &self.dir).output();
        if let Ok(o) = out {
            if !o.status.success() {
                eprintln!("scripts/kube-apiserver.sh stop: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
    }
}

impl Drop for KubeApiserver {
    fn drop(&mut self) {
        self.stop();
    }
}
