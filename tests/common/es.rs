//! Elasticsearch, as the tests see it: the one that `scripts/elasticsearch.sh
//! start` runs for the suite (`KLG_TEST_ES_URL`, see `scripts/test.sh`), and
//! private instances for tests that stop theirs or need security on.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::wait::poll;

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

const LENIENT: &str = "ignore_unavailable=true&allow_no_indices=true";

/// One Elasticsearch at `url`, as a client: plain HTTP, or HTTPS with a CA
/// and basic auth.
#[derive(Clone)]
pub struct Es {
    pub url: String,
    client: reqwest::Client,
    basic: Option<(String, String)>,
}

impl Es {
    /// The suite's Elasticsearch ([`es_url`]).
    pub fn test() -> Es {
        Es::at(&es_url())
    }

    pub fn at(url: &str) -> Es {
        Es { url: url.to_string(), client: http(), basic: None }
    }

    /// HTTPS trusting `ca_file`, as `user`.
    pub fn secured(url: &str, ca_file: &Path, user: &str, password: &str) -> Es {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_file).unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Es { url: url.to_string(), client, basic: Some((user.into(), password.into())) }
    }

    /// The same Elasticsearch as another user.
    pub fn as_user(&self, user: &str, password: &str) -> Es {
        Es { basic: Some((user.into(), password.into())), ..self.clone() }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> reqwest::Result<(u16, Value)> {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some((user, password)) = &self.basic {
            req = req.basic_auth(user, Some(password));
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// A request that must reach Elasticsearch; status and parsed body.
    pub async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(method, path, body.as_ref()).await.expect("Elasticsearch request")
    }

    /// Like [`Es::json`], but a 503 — a just-created index whose shard is not
    /// yet allocated (`no_shard_available_action_exception`) — is retried for up
    /// to 30 s: it means "not yet", not "wrong".
    pub async fn json_ready(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let not_503 = |r: &(u16, Value)| r.0 != 503;
        let request = || self.json(method.clone(), path, body.clone());
        poll(Duration::from_secs(30), Duration::from_millis(250), request, not_503).await.0
    }

    pub async fn refresh(&self, index: &str) {
        let _ = self.send(reqwest::Method::POST, &format!("/{index}/_refresh?{LENIENT}"), None).await;
    }

    /// Number of documents in `index` (a name or wildcard), after a refresh.
    pub async fn count(&self, index: &str) -> u64 {
        self.refresh(index).await;
        let (status, v) = self.json_ready(reqwest::Method::GET, &format!("/{index}/_count?{LENIENT}"), None).await;
        assert_eq!(status, 200, "count {index}: {v}");
        v["count"].as_u64().unwrap()
    }

    /// Like [`Es::count`], but 0 while Elasticsearch is down or the index
    /// cannot be counted yet.
    pub async fn count_or_zero(&self, index: &str) -> u64 {
        self.refresh(index).await;
        match self.send(reqwest::Method::GET, &format!("/{index}/_count?{LENIENT}"), None).await {
            Ok((_, v)) => v["count"].as_u64().unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Polls until at least `want` documents are in `index` or `timeout`
    /// passes (Elasticsearch down counts as 0); returns the last count.
    pub async fn wait_for_count(&self, index: &str, want: u64, timeout: Duration) -> u64 {
        poll(timeout, Duration::from_millis(300), || self.count_or_zero(index), |n| *n >= want).await.0
    }

    /// `_source` of every hit of `query` in `index`, sorted by `@timestamp`.
    pub async fn search(&self, index: &str, query: Value) -> Vec<Value> {
        self.refresh(index).await;
        let body =
            serde_json::json!({ "query": query, "size": 10000, "sort": [{"@timestamp": "asc"}, {"event.id": "asc"}] });
        let (status, v) = self.json_ready(reqwest::Method::POST, &format!("/{index}/_search"), Some(body)).await;
        assert_eq!(status, 200, "search {index}: {v}");
        v["hits"]["hits"].as_array().unwrap().iter().map(|h| h["_source"].clone()).collect()
    }

    /// Every document of `index` as (`_id`, `_source`), unsorted, after a
    /// refresh; panics if there are more than one search returns (10 000).
    pub async fn all_docs(&self, index: &str) -> Vec<(String, Value)> {
        self.refresh(index).await;
        let body = serde_json::json!({"query": {"match_all": {}}, "size": 10000, "track_total_hits": true});
        let (status, v) =
            self.json_ready(reqwest::Method::POST, &format!("/{index}/_search?{LENIENT}"), Some(body)).await;
        assert_eq!(status, 200, "search {index}: {v}");
        let total = v["hits"]["total"]["value"].as_u64().unwrap();
        assert!(total < 10000, "more documents than one search returns: {total}");
        let hits = v["hits"]["hits"].as_array().unwrap();
        hits.iter().map(|h| (h["_id"].as_str().unwrap().to_string(), h["_source"].clone())).collect()
    }

    /// The terms buckets of `field` in `index` with at least `min_doc_count`
    /// documents (exact: one shard).
    pub async fn terms(&self, index: &str, field: &str, min_doc_count: u64, size: u64) -> Vec<Value> {
        self.refresh(index).await;
        let body = serde_json::json!({"size": 0, "aggs": {"t": {"terms": {"field": field, "min_doc_count": min_doc_count, "size": size}}}});
        let (status, v) = self.json_ready(reqwest::Method::POST, &format!("/{index}/_search"), Some(body)).await;
        assert_eq!(status, 200, "{v}");
        v["aggregations"]["t"]["buckets"].as_array().unwrap().clone()
    }

    pub async fn delete_indices(&self, pattern: &str) {
        let path = format!("/{pattern}?{LENIENT}&expand_wildcards=all");
        let _ = self.send(reqwest::Method::DELETE, &path, None).await;
    }

    /// The backing indices of data stream `name`, oldest first (generations
    /// count up): the last is its write index. Empty while the stream does not
    /// exist. From `_resolve/index`, which every server has (the `_data_stream`
    /// API is a module the suite's Elasticsearch build leaves out).
    pub async fn backing_indices(&self, name: &str) -> Vec<String> {
        let (status, v) = self.json(reqwest::Method::GET, &format!("/_resolve/index/{name}"), None).await;
        let streams = v["data_streams"].as_array().cloned().unwrap_or_default();
        let Some(stream) = streams.iter().find(|s| s["name"] == name).filter(|_| status == 200) else {
            return Vec::new();
        };
        let mut indices: Vec<String> =
            stream["backing_indices"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_string()).collect();
        indices.sort_by_key(|i| i.rsplit('-').next().unwrap().to_string());
        indices
    }

    /// How many distinct values `field` has in `index`, and those held by more
    /// than one document. Exact across any number of shards and backing indices
    /// (a composite aggregation, paged), unlike a terms aggregation.
    pub async fn distinct_and_repeated(&self, index: &str, field: &str) -> (u64, Vec<String>) {
        self.refresh(index).await;
        let (mut distinct, mut repeated, mut after) = (0u64, Vec::new(), Value::Null);
        loop {
            let mut composite = serde_json::json!({"size": 10000, "sources": [{"v": {"terms": {"field": field}}}]});
            if !after.is_null() {
                composite["after"] = after.clone();
            }
            let body = serde_json::json!({"size": 0, "aggs": {"c": {"composite": composite}}});
            let (status, v) = self.json_ready(reqwest::Method::POST, &format!("/{index}/_search"), Some(body)).await;
            assert_eq!(status, 200, "composite on {index}: {v}");
            let buckets = v["aggregations"]["c"]["buckets"].as_array().cloned().unwrap_or_default();
            if buckets.is_empty() {
                return (distinct, repeated);
            }
            distinct += buckets.len() as u64;
            for b in &buckets {
                if b["doc_count"].as_u64().unwrap() > 1 {
                    repeated.push(b["key"]["v"].as_str().unwrap_or_default().to_string());
                }
            }
            after = v["aggregations"]["c"]["after_key"].clone();
        }
    }

    /// Rolls data stream (or alias) `name` over now, unconditionally: status and body.
    pub async fn rollover(&self, name: &str) -> (u16, Value) {
        self.json(reqwest::Method::POST, &format!("/{name}/_rollover"), None).await
    }

    /// Deletes, where the server can, every data stream whose name contains
    /// `part` (`DELETE /_data_stream/…`: not on the suite's Elasticsearch build,
    /// whose streams stay until `scripts/elasticsearch.sh wipe`), then every index
    /// template with an index pattern that contains it and no stream left using it.
    pub async fn delete_data_streams_and_templates(&self, part: &str) {
        let (_, resolved) = self.json(reqwest::Method::GET, &format!("/_resolve/index/*{part}*"), None).await;
        for s in resolved["data_streams"].as_array().cloned().unwrap_or_default() {
            let name = s["name"].as_str().unwrap_or_default();
            let _ = self.send(reqwest::Method::DELETE, &format!("/_data_stream/{name}"), None).await;
        }
        let (_, templates) = self.json(reqwest::Method::GET, "/_index_template", None).await;
        for t in templates["index_templates"].as_array().cloned().unwrap_or_default() {
            let patterns = t["index_template"]["index_patterns"].to_string();
            if patterns.contains(part) {
                let name = t["name"].as_str().unwrap();
                let _ = self.send(reqwest::Method::DELETE, &format!("/_index_template/{name}"), None).await;
            }
        }
    }
}

// The suite's Elasticsearch, as free functions.

pub async fn es_json(method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    Es::test().json(method, path, body).await
}

pub async fn es_json_ready(method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    Es::test().json_ready(method, path, body).await
}

pub async fn refresh(index: &str) {
    Es::test().refresh(index).await
}

/// Number of documents in `index` (a name or wildcard), after a refresh.
pub async fn count(index: &str) -> u64 {
    Es::test().count(index).await
}

/// Documents in `index` on another Elasticsearch at `es` (e.g. a test's own
/// instance); 0 while it is down or the index does not exist yet.
pub async fn count_at(es: &str, index: &str) -> u64 {
    Es::at(es).count_or_zero(index).await
}

/// `_source` of every hit of `query` in `index`, sorted by `@timestamp`.
pub async fn search(index: &str, query: Value) -> Vec<Value> {
    Es::test().search(index, query).await
}

/// Every document of `index` as (`_id`, `_source`).
pub async fn all_docs(index: &str) -> Vec<(String, Value)> {
    Es::test().all_docs(index).await
}

/// Polls until `count(index) >= want` or `timeout`; returns the last count.
pub async fn wait_for_count(index: &str, want: u64, timeout: Duration) -> u64 {
    Es::test().wait_for_count(index, want, timeout).await
}

/// Like [`wait_for_count`], on the Elasticsearch at `es`.
pub async fn wait_for_count_at(es: &str, index: &str, want: u64, timeout: Duration) -> u64 {
    Es::at(es).wait_for_count(index, want, timeout).await
}

pub async fn delete_indices(pattern: &str) {
    Es::test().delete_indices(pattern).await
}

/// auditIDs present more than once in `index` (exact: one shard).
pub async fn duplicated_ids(index: &str) -> Vec<Value> {
    Es::test().terms(index, "kubernetes.audit.auditID", 2, 10).await
}

/// A private Elasticsearch (`scripts/elasticsearch.sh` with `ES_PORT`), for
/// tests that stop it or need other settings (`env`). Its port is picked from
/// a pool and claimed, so that test suites running side by side on one
/// machine (other work trees, CI) never share, stop or wipe each other's
/// instance. Drop wipes it.
pub struct EsInstance {
    pub port: u16,
    env: Vec<(String, OsString)>,
    claim: std::path::PathBuf,
}

/// HTTP ports of private instances; the script puts transport on port + 100.
const PRIVATE_PORTS: std::ops::Range<u16> = 9400..9500;

/// Claims a free port of [`PRIVATE_PORTS`] (and its transport port) with a
/// file created exclusively; a claim older than a day is a crashed run's.
fn claim_port() -> (u16, std::path::PathBuf) {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let len = PRIVATE_PORTS.len() as u32;
    let start = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
        ^ std::process::id())
        % len;
    for i in 0..len {
        let port = PRIVATE_PORTS.start + ((start + i) % len) as u16;
        let claim = std::env::temp_dir().join(format!("klg-test-es-{port}.claim"));
        let stale = std::fs::metadata(&claim)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(86_400));
        if stale {
            let _ = std::fs::remove_file(&claim);
        }
        if free(port) && free(port + 100) && std::fs::File::create_new(&claim).is_ok() {
            return (port, claim);
        }
    }
    panic!("no free port for a private Elasticsearch in {PRIVATE_PORTS:?}");
}

impl EsInstance {
    fn script(&self, action: &str) -> bool {
        Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/elasticsearch.sh"))
            .arg(action)
            .env("ES_PORT", self.port.to_string())
            .env("ES_HEAP", "384m")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Starts a plain private instance.
    pub fn start() -> EsInstance {
        EsInstance::start_with(Vec::new())
    }

    /// Starts a private instance with extra script `env` (`ES_SECURE`, …).
    /// Whatever a crashed earlier run left on its port is wiped first.
    pub fn start_with(env: Vec<(String, OsString)>) -> EsInstance {
        let (port, claim) = claim_port();
        let es = EsInstance { port, env, claim };
        es.script("wipe");
        // On a loaded machine the JVM can miss the script's 120 s start timeout
        // (the script then kills it): one more try before giving up.
        let started = es.script("start") || {
            eprintln!("Elasticsearch on port {port} did not start in time; trying once more");
            es.script("start")
        };
        assert!(started, "could not start Elasticsearch on port {port}");
        es
    }

    pub fn stop(&self) {
        assert!(self.script("stop"), "could not stop Elasticsearch on port {}", self.port);
    }

    pub fn resume(&self) {
        assert!(self.script("start"), "could not restart Elasticsearch on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for EsInstance {
    fn drop(&mut self) {
        self.script("wipe");
        let _ = std::fs::remove_file(&self.claim);
    }
}
