//! Shared helpers for integration tests against the real Elasticsearch that
//! `scripts/elasticsearch.sh start` runs (see `scripts/test.sh`).
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The Elasticsearch the tests use. A test that needs it and cannot reach it
/// fails with instructions, rather than skipping silently.
pub fn es_url() -> String {
    std::env::var("KLG_TEST_ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".into())
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// Fails loudly if Elasticsearch is not up.
pub async fn require_es() {
    let url = es_url();
    match http().get(format!("{url}/_cluster/health")).send().await {
        Ok(r) if r.status().is_success() => {}
        other => panic!(
            "Elasticsearch is not reachable at {url} ({other:?}). Start it with `scripts/elasticsearch.sh start` \
             or run the whole suite with `scripts/test.sh`."
        ),
    }
}

/// A lowercase prefix unique to this test run, so tests never see each
/// other's indices: `t<pid>-<name>`.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("t{}{}-{}", std::process::id(), nanos % 100_000, name).to_lowercase()
}

pub async fn es_json(method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, format!("{}{}", es_url(), path));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let resp = req.send().await.expect("Elasticsearch request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub async fn refresh(index: &str) {
    es_json(reqwest::Method::POST, &format!("/{index}/_refresh?ignore_unavailable=true&allow_no_indices=true"), None)
        .await;
}

/// Number of documents in `index` (a name or wildcard), after a refresh.
pub async fn count(index: &str) -> u64 {
    refresh(index).await;
    let path = format!("/{index}/_count?ignore_unavailable=true&allow_no_indices=true");
    let (status, v) = es_json_ready(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 200, "count {index}: {v}");
    v["count"].as_u64().unwrap()
}

/// Like [`es_json`], but a 503 — a just-created index whose shard is not yet
/// allocated (`no_shard_available_action_exception`) — is retried for up to 30 s:
/// it means "not yet", not "wrong".
pub async fn es_json_ready(method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = es_json(method.clone(), path, body.clone()).await;
        if status != 503 || Instant::now() > deadline {
            return (status, v);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Documents in `index` on another Elasticsearch at `es` (e.g. a test's own
/// instance); 0 while it is down or the index does not exist yet.
pub async fn count_at(es: &str, index: &str) -> u64 {
    let client = http();
    let _ = client.post(format!("{es}/{index}/_refresh?ignore_unavailable=true&allow_no_indices=true")).send().await;
    let Ok(resp) =
        client.get(format!("{es}/{index}/_count?ignore_unavailable=true&allow_no_indices=true")).send().await
    else {
        return 0;
    };
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap_or_default()).unwrap_or(Value::Null);
    v["count"].as_u64().unwrap_or(0)
}

/// `_source` of every hit of `query` in `index`, sorted by `@timestamp`.
pub async fn search(index: &str, query: Value) -> Vec<Value> {
    refresh(index).await;
    let body =
        serde_json::json!({ "query": query, "size": 10000, "sort": [{"@timestamp": "asc"}, {"event.id": "asc"}] });
    let (status, v) = es_json_ready(reqwest::Method::POST, &format!("/{index}/_search"), Some(body)).await;
    assert_eq!(status, 200, "search {index}: {v}");
    v["hits"]["hits"].as_array().unwrap().iter().map(|h| h["_source"].clone()).collect()
}

/// Polls until `count(index) >= want` or `timeout`; returns the last count.
pub async fn wait_for_count(index: &str, want: u64, timeout: Duration) -> u64 {
    let start = Instant::now();
    loop {
        let n = count(index).await;
        if n >= want || start.elapsed() > timeout {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Polls until the count stops changing for `quiet` (nothing more arriving).
pub async fn settle(index: &str, quiet: Duration, timeout: Duration) -> u64 {
    let start = Instant::now();
    let mut last = count(index).await;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = count(index).await;
        if n != last {
            last = n;
            since = Instant::now();
        } else if since.elapsed() >= quiet || start.elapsed() > timeout {
            return n;
        }
    }
}

pub async fn delete_indices(pattern: &str) {
    es_json(
        reqwest::Method::DELETE,
        &format!("/{pattern}?ignore_unavailable=true&allow_no_indices=true&expand_wildcards=all"),
        None,
    )
    .await;
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The gateway binary under test, run as a child process (so that tests can
/// kill -9 it).
pub struct Gateway {
    pub child: Child,
    pub admin: String,
}

impl Gateway {
    /// Starts `kube-log-gateway serve --config <config>` and waits for /readyz.
    /// The config must set `admin.listen` to `admin_addr`.
    pub fn start(config: &std::path::Path, admin_addr: &str, log: &std::path::Path) -> Gateway {
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kube-log-gateway"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("start the gateway");
        let mut gw = Gateway { child, admin: format!("http://{admin_addr}") };
        gw.wait_ready(log);
        gw
    }

    fn wait_ready(&mut self, log: &std::path::Path) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gateway exited with {status}: {}", std::fs::read_to_string(log).unwrap_or_default());
            }
            let ok = std::net::TcpStream::connect(self.admin.trim_start_matches("http://"))
                .ok()
                .and_then(|mut s| {
                    use std::io::{Read, Write};
                    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                    s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").ok()?;
                    let mut buf = String::new();
                    s.read_to_string(&mut buf).ok()?;
                    Some(buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200"))
                })
                .unwrap_or(false);
            if ok {
                return;
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("gateway not ready after 60 s: {}", std::fs::read_to_string(log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), "TERM");
        self.child.wait().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
}

/// `kube-log-gateway certs --out dir`: a fresh CA with server and client certificates.
pub fn make_certs(dir: &std::path::Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_kube-log-gateway"))
        .args(["certs", "--out"])
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "kube-log-gateway certs --out {}", dir.display());
}

/// A gateway set up for a test: certificates, config file, data dir, ports.
pub struct WebhookSetup {
    pub dir: tempfile::TempDir,
    pub prefix: String,
    pub port: u16,
    pub admin: String,
    pub config: std::path::PathBuf,
}

impl WebhookSetup {
    /// Writes certs and a config with mTLS, unique indices `<prefix>-audit-*` /
    /// `<prefix>-deadletter-*`, and `extra` YAML appended (top-level keys that
    /// the base does not set, or a replacement `server:` block via `server_extra`).
    pub fn new(name: &str, server_extra: &str, extra: &str) -> WebhookSetup {
        let dir = tempfile::tempdir().unwrap();
        let prefix = unique(name);
        let port = free_port();
        let admin = format!("127.0.0.1:{}", free_port());
        let certs = dir.path().join("certs");
        make_certs(&certs);
        let c = certs.display();
        let yaml = format!(
            "cluster_name: test\n\
             data_dir: {data}\n\
             server:\n  listen: 127.0.0.1:{port}\n  tls:\n    cert_file: {c}/server.crt\n    key_file: {c}/server.key\n    client_ca_file: {c}/ca.crt\n{server_extra}\
             admin:\n  listen: {admin}\n\
             elasticsearch:\n  urls: [\"{es}\"]\n  indices:\n    audit: \"{prefix}-audit-%Y.%m.%d\"\n    dead_letter: \"{prefix}-deadletter-%Y.%m.%d\"\n  \
             template:\n    number_of_replicas: 0\n    refresh_interval: 1s\n  batch:\n    linger: 50ms\n  retry:\n    initial_backoff: 50ms\n    max_backoff: 1s\n\
             {extra}",
            data = dir.path().join("data").display(),
            es = es_url(),
        );
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, yaml).unwrap();
        WebhookSetup { dir, prefix, port, admin, config }
    }

    pub fn start(&self) -> Gateway {
        Gateway::start(&self.config, &self.admin, &self.dir.path().join("gateway.log"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.port, path)
    }

    pub fn certs(&self) -> std::path::PathBuf {
        self.dir.path().join("certs")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn audit_indices(&self) -> String {
        format!("{}-audit-*", self.prefix)
    }

    pub fn dead_letter_indices(&self) -> String {
        format!("{}-deadletter-*", self.prefix)
    }
}

/// An HTTPS client trusting `certs/ca.crt`, presenting `certs/client.*` if `with_cert`.
pub fn tls_client(certs: &std::path::Path, with_cert: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.crt")).unwrap()).unwrap();
    let mut b = reqwest::Client::builder().use_rustls_tls().add_root_certificate(ca).timeout(Duration::from_secs(60));
    if with_cert {
        let mut pem = std::fs::read(certs.join("client.crt")).unwrap();
        pem.extend(std::fs::read(certs.join("client.key")).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// An HTTPS client that trusts `server_certs/ca.crt` but presents the client
/// certificate from `client_certs` (e.g. one signed by another CA).
pub fn tls_client_with(server_certs: &std::path::Path, client_certs: &std::path::Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(server_certs.join("ca.crt")).unwrap()).unwrap();
    let mut pem = std::fs::read(client_certs.join("client.crt")).unwrap();
    pem.extend(std::fs::read(client_certs.join("client.key")).unwrap());
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

/// POSTs `body` as JSON; returns status, headers and the parsed body.
pub async fn post_json(client: &reqwest::Client, url: &str, body: String) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client.post(url).header("content-type", "application/json").body(body).send().await.expect("POST");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A metric's value from the gateway's /metrics (sum over label sets that contain `labels`).
pub async fn metric(admin: &str, name: &str, labels: &str) -> f64 {
    let text = http().get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A second, private Elasticsearch on `port`, for tests that stop it.
pub struct EsInstance {
    pub port: u16,
}

impl EsInstance {
    pub fn script(port: u16, action: &str) -> bool {
        Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/elasticsearch.sh"))
            .arg(action)
            .env("ES_PORT", port.to_string())
            .env("ES_HEAP", "384m")
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    pub fn start(port: u16) -> EsInstance {
        assert!(Self::script(port, "start"), "could not start Elasticsearch on port {port}");
        EsInstance { port }
    }

    pub fn stop(&self) {
        assert!(Self::script(self.port, "stop"), "could not stop Elasticsearch on port {}", self.port);
    }

    pub fn resume(&self) {
        assert!(Self::script(self.port, "start"), "could not restart Elasticsearch on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for EsInstance {
    fn drop(&mut self) {
        Self::script(self.port, "wipe");
    }
}

/// Sends `batches` (bodies) with `concurrency` connections; returns, per batch,
/// the last HTTP status (0 = transport error). Stops early when `stop` is set.
pub async fn send_all(
    client: &reqwest::Client,
    url: &str,
    batches: std::sync::Arc<Vec<String>>,
    concurrency: usize,
    acked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<u16> {
    use std::sync::atomic::Ordering;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let statuses = std::sync::Arc::new(std::sync::Mutex::new(vec![0u16; batches.len()]));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, batches, next, statuses, acked, stop) = (
            client.clone(),
            url.to_string(),
            batches.clone(),
            next.clone(),
            statuses.clone(),
            acked.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= batches.len() {
                    return;
                }
                let status = match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(batches[i].clone())
                    .send()
                    .await
                {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                if status == 200 {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                statuses.lock().unwrap()[i] = status;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let out = statuses.lock().unwrap().clone();
    out
}

/// auditIDs present more than once in `index` (exact: one shard).
pub async fn duplicated_ids(index: &str) -> Vec<Value> {
    refresh(index).await;
    let body = serde_json::json!({"size": 0, "aggs": {"dups": {"terms": {"field": "kubernetes.audit.auditID", "min_doc_count": 2, "size": 10}}}});
    let (status, v) = es_json_ready(reqwest::Method::POST, &format!("/{index}/_search"), Some(body)).await;
    assert_eq!(status, 200, "{v}");
    v["aggregations"]["dups"]["buckets"].as_array().unwrap().clone()
}
