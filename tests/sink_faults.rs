//! The Elasticsearch sink against a fault-injecting stand-in for Elasticsearch:
//! per-item 429s, mapping errors, a refusing dead-letter index, 413s, 5xx and
//! a dead node, a node that refuses requests beyond a few at once. These
//! faults are hard to provoke on demand in a real cluster;
//! the real-cluster behaviour is covered by tests/delivery_faults.rs.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::Router;
use common::{closed_port_url, wait_until, GatewayConfig};
use kube_log_gateway::config::Config;
use kube_log_gateway::document::{Document, SourceKind};
use kube_log_gateway::shutdown::Shutdown;
use kube_log_gateway::sink::{Cancelled, DeliveryReport};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
struct Item {
    index: String,
    id: String,
    source: Value,
}

type Script = dyn Fn(usize, &[Item]) -> (u16, Value) + Send + Sync;

struct Fake {
    requests: Mutex<Vec<Vec<Item>>>,
    script: Box<Script>,
}

async fn bulk(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let items = read_items(&headers, &body);
    let n = {
        let mut r = fake.requests.lock().unwrap();
        r.push(items.clone());
        r.len() - 1
    };
    let (status, body) = (fake.script)(n, &items);
    (StatusCode::from_u16(status).unwrap(), body.to_string())
}

/// The documents of one bulk request body (gzip or not).
fn read_items(headers: &HeaderMap, body: &[u8]) -> Vec<Item> {
    let mut text = String::new();
    if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        flate2::read::GzDecoder::new(body).read_to_string(&mut text).unwrap();
    } else {
        text = String::from_utf8(body.to_vec()).unwrap();
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() % 2, 0, "NDJSON has action/source pairs");
    lines
        .chunks(2)
        .map(|pair| {
            let action: Value = serde_json::from_str(pair[0]).unwrap();
            Item {
                index: action["create"]["_index"].as_str().unwrap().to_string(),
                id: action["create"]["_id"].as_str().unwrap().to_string(),
                source: serde_json::from_str(pair[1]).unwrap(),
            }
        })
        .collect()
}

/// A bulk response with one item per document: `status(i)` for item i.
fn items_response(items: &[Item], mut status: impl FnMut(usize, &Item) -> u16) -> (u16, Value) {
    let out: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let s = status(i, it);
            let mut r = json!({"_index": it.index, "_id": it.id, "status": s});
            match s {
                429 => r["error"] = json!({"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"}),
                409 => r["error"] = json!({"type": "version_conflict_engine_exception", "reason": "document already exists"}),
                400 => r["error"] = json!({"type": "document_parsing_exception", "reason": "[1:10] failed to parse field [n] of type [long]",
                                           "caused_by": {"type": "illegal_argument_exception", "reason": "For input string: \"abc\""}}),
                _ => {}
            }
            json!({"create": r})
        })
        .collect();
    (200, json!({"took": 1, "errors": out.iter().any(|i| i["create"]["status"] != 201), "items": out}))
}

/// `GET /` of Elasticsearch 8.19, as the sink asks it at start.
const ELASTICSEARCH_ROOT: &str = r#"{"name":"es-1","cluster_name":"logs","cluster_uuid":"f0XhKb3vS6yqUC1zXoWm6w","version":{"number":"8.19.0","build_flavor":"default","build_type":"docker","build_hash":"0000000","build_date":"2025-07-01T00:00:00.000Z","build_snapshot":false,"lucene_version":"9.12.2","minimum_wire_compatibility_version":"7.17.0","minimum_index_compatibility_version":"7.0.0"},"tagline":"You Know, for Search"}"#;

async fn start_fake(script: impl Fn(usize, &[Item]) -> (u16, Value) + Send + Sync + 'static) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake { requests: Mutex::new(Vec::new()), script: Box::new(script) });
    let app = Router::new()
        .route("/", get(|| async { ELASTICSEARCH_ROOT }))
        .route("/_bulk", post(bulk))
        .route("/_index_template/{name}", put(|| async { r#"{"acknowledged":true}"# }))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

fn config(urls: &[String], data_dir: &std::path::Path) -> Config {
    load(&GatewayConfig::sink_only(data_dir, urls))
}

/// The gateway's own `Config` of a test config, as `serve` would load it.
fn load(config: &GatewayConfig) -> Config {
    let f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(f.path(), config.to_yaml()).unwrap();
    Config::load_with_env(f.path(), []).unwrap()
}

fn docs(n: usize) -> Vec<Document> {
    (0..n)
        .map(|i| Document {
            index: "kubelet-2026.11.09".into(),
            id: format!("doc-{i}"),
            body: Bytes::from(format!("{{\"n\":{i}}}")),
            source: SourceKind::Journald,
        })
        .collect()
}

fn ids(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.id.as_str()).collect()
}

async fn deliver(urls: &[String], n: usize) -> (Result<DeliveryReport, Cancelled>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(urls, dir.path());
    let (sink, _task) = kube_log_gateway::serve::start_sink(&cfg, Shutdown::new()).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(20), sink.deliver(docs(n))).await.expect("delivery finished");
    (report, dir)
}

#[tokio::test]
async fn per_item_429_resends_only_those_items() {
    let (url, fake) = start_fake(|n, items| match n {
        0 => items_response(items, |i, _| if i == 2 || i == 4 { 429 } else { 201 }),
        _ => items_response(items, |_, _| 201),
    })
    .await;
    let (report, _dir) = deliver(&[url], 6).await;
    assert_eq!(report.unwrap(), DeliveryReport { created: 6, duplicates: 0, dead_lettered: 0 });
    let requests = fake.requests.lock().unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(ids(&requests[0]), ["doc-0", "doc-1", "doc-2", "doc-3", "doc-4", "doc-5"]);
    assert_eq!(ids(&requests[1]), ["doc-2", "doc-4"], "only the 429 items are resent");
}

#[tokio::test]
async fn conflict_on_create_counts_as_delivered() {
    let (url, fake) = start_fake(|_, items| items_response(items, |i, _| if i == 0 { 409 } else { 201 })).await;
    let (report, _dir) = deliver(&[url], 3).await;
    assert_eq!(report.unwrap(), DeliveryReport { created: 2, duplicates: 1, dead_lettered: 0 });
    assert_eq!(fake.requests.lock().unwrap().len(), 1, "a 409 is final, never resent");
}

#[tokio::test]
async fn mapping_error_goes_to_the_dead_letter_index_and_the_rest_is_delivered() {
    let (url, fake) = start_fake(|n, items| match n {
        0 => items_response(items, |i, _| if i == 1 { 400 } else { 201 }),
        _ => items_response(items, |_, _| 201),
    })
    .await;
    let (report, _dir) = deliver(&[url], 3).await;
    assert_eq!(report.unwrap(), DeliveryReport { created: 2, duplicates: 0, dead_lettered: 1 });
    let requests = fake.requests.lock().unwrap();
    assert_eq!(requests.len(), 2);
    let dl = &requests[1];
    assert_eq!(dl.len(), 1);
    assert!(dl[0].index.starts_with("deadletter-"), "{}", dl[0].index);
    assert_eq!(dl[0].id, "doc-1");
    assert_eq!(dl[0].source["event"]["original"], "{\"n\":1}");
    assert_eq!(dl[0].source["error"]["type"], "document_parsing_exception");
    assert_eq!(
        dl[0].source["error"]["message"],
        "document_parsing_exception: [1:10] failed to parse field [n] of type [long]; caused by illegal_argument_exception: For input string: \"abc\""
    );
    assert_eq!(dl[0].source["dead_letter"]["index"], "kubelet-2026.11.09");
    assert_eq!(dl[0].source["dead_letter"]["status"], 400);
    assert_eq!(dl[0].source["dead_letter"]["source"], "journald");
}

#[tokio::test]
async fn refused_dead_letters_are_appended_to_a_file() {
    let (url, _fake) = start_fake(|n, items| match n {
        0 => items_response(items, |i, _| if i == 0 { 400 } else { 201 }),
        _ => items_response(items, |_, _| 400),
    })
    .await;
    let (report, dir) = deliver(&[url], 2).await;
    assert_eq!(report.unwrap(), DeliveryReport { created: 1, duplicates: 0, dead_lettered: 1 });
    let text = std::fs::read_to_string(dir.path().join("dead-letter.ndjson")).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert!(lines[0]["refused_by_dead_letter_index"].as_str().unwrap().starts_with("400 document_parsing_exception"));
    assert_eq!(lines[0]["document"]["event"]["original"], "{\"n\":0}");
}

#[tokio::test]
async fn a_dead_node_and_a_503_are_retried_on_the_next_url() {
    let dead = closed_port_url();
    let (url, fake) = start_fake(|n, items| match n {
        0 => (503, json!({"error": "unavailable"})),
        _ => items_response(items, |_, _| 201),
    })
    .await;
    let (report, _dir) = deliver(&[dead, url], 4).await;
    assert_eq!(report.unwrap().created, 4);
    let requests = fake.requests.lock().unwrap();
    assert_eq!(requests.len(), 2, "one 503, then the resend");
    assert_eq!(ids(&requests[1]), ["doc-0", "doc-1", "doc-2", "doc-3"]);
}

#[tokio::test]
async fn too_large_requests_are_split() {
    let (url, fake) =
        start_fake(|_, items| if items.len() > 2 { (413, json!({})) } else { items_response(items, |_, _| 201) }).await;
    let (report, _dir) = deliver(&[url], 4).await;
    assert_eq!(report.unwrap().created, 4);
    let sizes: Vec<usize> = fake.requests.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes, [4, 2, 2]);
}

#[tokio::test]
async fn shutdown_cancels_instead_of_acknowledging() {
    let (url, fake) = start_fake(|_, _| (503, json!({"error": "down"}))).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&[url], dir.path());
    let shutdown = Shutdown::new();
    let (sink, task) = kube_log_gateway::serve::start_sink(&cfg, shutdown.clone()).unwrap();
    let pending = tokio::spawn(async move { sink.deliver(docs(2)).await });
    // Abort while the sink is retrying the 503s.
    wait_until("a first attempt", Duration::from_secs(10), || !fake.requests.lock().unwrap().is_empty()).await;
    shutdown.abort();
    let result = tokio::time::timeout(Duration::from_secs(5), pending).await.unwrap().unwrap();
    assert_eq!(result, Err(Cancelled));
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_document_over_max_document_bytes_is_dead_lettered_truncated_without_being_sent() {
    let (url, fake) = start_fake(|_, items| items_response(items, |_, _| 201)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = GatewayConfig::sink_only(dir.path(), &[url]);
    config.elasticsearch.max_document_bytes = Some(4096);
    config.elasticsearch.dead_letter_max_original_bytes = Some(1024);
    config.elasticsearch.retry = None;
    let cfg = load(&config);
    let (sink, _task) = kube_log_gateway::serve::start_sink(&cfg, Shutdown::new()).unwrap();
    let mut batch = docs(2);
    batch[1].body = Bytes::from(format!("{{\"n\":\"{}\"}}", "y".repeat(8000)));
    let report = tokio::time::timeout(Duration::from_secs(20), sink.deliver(batch)).await.expect("delivery finished");
    assert_eq!(report.unwrap(), DeliveryReport { created: 1, duplicates: 0, dead_lettered: 1 });

    let requests = fake.requests.lock().unwrap();
    assert_eq!(requests.len(), 1, "the big one is never sent; its dead letter goes with the rest");
    let sent = &requests[0];
    assert_eq!(ids(sent), ["doc-0", "doc-1"]);
    assert_eq!(sent[0].index, "kubelet-2026.11.09");
    let dl = &sent[1];
    assert!(dl.index.starts_with("deadletter-"), "{}", dl.index);
    assert_eq!(dl.source["error"]["type"], "document_too_large");
    assert_eq!(dl.source["event"]["original"].as_str().unwrap().len(), 1024);
    let message = dl.source["error"]["message"].as_str().unwrap();
    assert!(message.contains("over elasticsearch.max_document_bytes (4096)"), "{message}");
    assert!(message.contains("event.original truncated to its first 1024 of 8008 bytes"), "{message}");
    assert!(dl.source["dead_letter"].get("status").is_none(), "refused by the gateway, not by Elasticsearch");

    // The whole document, in the dead-letter file.
    let text = std::fs::read_to_string(dir.path().join("dead-letter.ndjson")).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert!(lines[0]["refused_by_dead_letter_index"].as_str().unwrap().starts_with("too large for Elasticsearch"));
    assert_eq!(lines[0]["document"]["event"]["original"].as_str().unwrap().len(), 8008);
}

/// A node that takes `capacity` bulk requests at once, each answered after
/// `delay`, and refuses any beyond with a whole-request 429, as a node whose
/// write queue is full does. It creates each `_id` once (a second `create`
/// is a 409) and counts what it saw.
struct Crowd {
    capacity: usize,
    delay: Duration,
    in_flight: AtomicUsize,
    most_at_once: AtomicUsize,
    requests: AtomicUsize,
    refused: AtomicUsize,
    created: Mutex<HashMap<String, usize>>,
}

async fn crowd_bulk(State(crowd): State<Arc<Crowd>>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    struct Leave<'a>(&'a AtomicUsize);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let items = read_items(&headers, &body);
    crowd.requests.fetch_add(1, Ordering::SeqCst);
    let now = crowd.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _leave = Leave(&crowd.in_flight);
    crowd.most_at_once.fetch_max(now, Ordering::SeqCst);
    if now > crowd.capacity {
        crowd.refused.fetch_add(1, Ordering::SeqCst);
        let busy = json!({"error": {"type": "es_rejected_execution_exception",
            "reason": "rejected execution of coordinating operation"}, "status": 429});
        return (StatusCode::TOO_MANY_REQUESTS, busy.to_string());
    }
    tokio::time::sleep(crowd.delay).await;
    let (status, body) = {
        let mut created = crowd.created.lock().unwrap();
        items_response(&items, |_, it| {
            let n = created.entry(it.id.clone()).or_default();
            *n += 1;
            if *n == 1 {
                201
            } else {
                409
            }
        })
    };
    (StatusCode::from_u16(status).unwrap(), body.to_string())
}

async fn start_crowd(capacity: usize, delay: Duration) -> (String, Arc<Crowd>) {
    let crowd = Arc::new(Crowd {
        capacity,
        delay,
        in_flight: AtomicUsize::new(0),
        most_at_once: AtomicUsize::new(0),
        requests: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
        created: Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route("/", get(|| async { ELASTICSEARCH_ROOT }))
        .route("/_bulk", post(crowd_bulk))
        .route("/_index_template/{name}", put(|| async { r#"{"acknowledged":true}"# }))
        .with_state(crowd.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, crowd)
}

/// A sink of 10-document bulk requests with `concurrency` (`adaptive` or
/// `fixed`), `max_in_flight` and, if adaptive, `initial`.
fn crowd_sink(
    url: &str,
    dir: &std::path::Path,
    concurrency: &str,
    max_in_flight: usize,
    initial: usize,
) -> kube_log_gateway::sink::Sink {
    let mut config = GatewayConfig::sink_only(dir, &[url.to_string()]);
    config.elasticsearch.max_documents = Some(10);
    config.elasticsearch.concurrency = Some(concurrency.into());
    config.elasticsearch.max_in_flight = Some(max_in_flight);
    config.elasticsearch.adaptive_initial = Some(initial);
    let (sink, _task) = kube_log_gateway::serve::start_sink(&load(&config), Shutdown::new()).unwrap();
    sink
}

/// Every document was created exactly once at the node: none missing, none twice.
fn assert_each_created_once(crowd: &Crowd, n: usize) {
    let created = crowd.created.lock().unwrap();
    assert_eq!(created.len(), n, "every document reached the node");
    let twice: Vec<_> = created.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "documents sent again after they were created: {twice:?}");
}

#[tokio::test]
async fn adaptive_concurrency_backs_off_a_node_that_refuses_a_crowd_and_loses_nothing() {
    const DOCS: usize = 1500;
    // The same load against a node taking 2 bulk requests at once: first with
    // the old fixed 8 in flight, then adaptive starting at (and bounded by) 8.
    let mut refusals = Vec::new();
    for concurrency in ["fixed", "adaptive"] {
        let (url, crowd) = start_crowd(2, Duration::from_millis(20)).await;
        let dir = tempfile::tempdir().unwrap();
        let sink = crowd_sink(&url, dir.path(), concurrency, 8, 8);
        assert_eq!(sink.concurrency_limit(), 8);
        let delivery = tokio::spawn({
            let sink = sink.clone();
            async move { sink.deliver(docs(DOCS)).await }
        });
        if concurrency == "adaptive" {
            wait_until("the limit to come down to what the node takes", Duration::from_secs(30), || {
                sink.concurrency_limit() <= 3
            })
            .await;
        }
        let report = tokio::time::timeout(Duration::from_secs(60), delivery).await.expect("delivered").unwrap();
        assert_eq!(report.unwrap(), DeliveryReport { created: DOCS, duplicates: 0, dead_lettered: 0 });
        assert_each_created_once(&crowd, DOCS);
        if concurrency == "fixed" {
            assert_eq!(sink.concurrency_limit(), 8, "fixed never moves");
        }
        let refused = crowd.refused.load(Ordering::SeqCst);
        assert!(refused > 0, "{concurrency}: the crowd was refused at first");
        eprintln!("{concurrency}: {refused} of {} requests refused", crowd.requests.load(Ordering::SeqCst));
        refusals.push(refused);
    }
    // Adaptive still probes (2 → 3 → refused → 2): some refusals remain, far fewer.
    let [fixed, adaptive] = refusals[..] else { unreachable!() };
    assert!(adaptive * 2 < fixed, "adaptive relieves the node: {adaptive} requests refused, fixed {fixed}");
}

#[tokio::test]
async fn adaptive_concurrency_grows_to_max_in_flight_against_a_fast_node() {
    const DOCS: usize = 6000;
    let (url, crowd) = start_crowd(usize::MAX, Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let sink = crowd_sink(&url, dir.path(), "adaptive", 6, 1);
    assert_eq!(sink.concurrency_limit(), 1);
    let delivery = tokio::spawn({
        let sink = sink.clone();
        async move { sink.deliver(docs(DOCS)).await }
    });
    wait_until("the limit to grow to max_in_flight", Duration::from_secs(30), || sink.concurrency_limit() == 6).await;
    let report = tokio::time::timeout(Duration::from_secs(60), delivery).await.expect("delivered").unwrap();
    assert_eq!(report.unwrap(), DeliveryReport { created: DOCS, duplicates: 0, dead_lettered: 0 });
    assert_each_created_once(&crowd, DOCS);
    assert_eq!(crowd.most_at_once.load(Ordering::SeqCst), 6, "never more than max_in_flight at the node");
    assert_eq!(crowd.refused.load(Ordering::SeqCst), 0);
    let metrics = kube_log_gateway::telemetry::encode();
    for name in ["klg_elasticsearch_concurrency_limit", "klg_elasticsearch_in_flight_requests"] {
        assert!(metrics.contains(name), "{name} is exported");
    }
}

/// A server that refuses one template for now (403: the credentials lack the
/// privilege) and takes the others.
struct Templates {
    refuse_containers: std::sync::atomic::AtomicBool,
    puts: Mutex<Vec<String>>,
}

async fn put_template(State(t): State<Arc<Templates>>, Path(name): Path<String>) -> (StatusCode, &'static str) {
    t.puts.lock().unwrap().push(name.clone());
    if name == "kube-log-gateway-containers" && t.refuse_containers.load(Ordering::SeqCst) {
        return (
            StatusCode::FORBIDDEN,
            r#"{"error":{"root_cause":[{"type":"security_exception","reason":"action [indices:admin/index_template/put] is unauthorized for user [klg] with effective roles [klg_writer], this action is granted by the cluster privileges [manage_index_templates,manage,all]"}],"type":"security_exception","reason":"action [indices:admin/index_template/put] is unauthorized for user [klg] with effective roles [klg_writer], this action is granted by the cluster privileges [manage_index_templates,manage,all]"},"status":403}"#,
        );
    }
    (StatusCode::OK, r#"{"acknowledged":true}"#)
}

async fn all_created(body: Bytes) -> String {
    let items = read_items(&HeaderMap::new(), &body);
    items_response(&items, |_, _| 201).1.to_string()
}

fn docs_for(index: &str, n: usize) -> Vec<Document> {
    let mut d = docs(n);
    for doc in &mut d {
        doc.index = index.to_string();
    }
    d
}

#[tokio::test]
async fn a_template_refused_for_one_source_holds_back_only_that_sources_documents() {
    let templates = Arc::new(Templates { refuse_containers: true.into(), puts: Mutex::default() });
    let app = Router::new()
        .route("/", get(|| async { ELASTICSEARCH_ROOT }))
        .route("/_bulk", post(all_created))
        .route("/_index_template/{name}", put(put_template))
        .with_state(templates.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let mut gc = GatewayConfig::sink_only(dir.path(), std::slice::from_ref(&url));
    gc.elasticsearch.compression = Some(false);
    let cfg = load(&gc);
    let (sink, _task) = kube_log_gateway::serve::start_sink(&cfg, Shutdown::new()).unwrap();

    // The containers template is refused: its documents wait...
    let containers = tokio::spawn({
        let sink = sink.clone();
        async move { sink.deliver(docs_for("containers-2026.11.09", 3)).await }
    });
    // ...while audit documents are delivered.
    let audit = tokio::time::timeout(Duration::from_secs(20), sink.deliver(docs_for("audit-2026.11.09", 5)))
        .await
        .expect("audit delivered while the containers template is refused");
    assert_eq!(audit, Ok(DeliveryReport { created: 5, duplicates: 0, dead_lettered: 0 }));
    let refused = || templates.puts.lock().unwrap().iter().filter(|n| *n == "kube-log-gateway-containers").count();
    wait_until("the containers template is asked again", Duration::from_secs(20), || refused() >= 2).await;
    assert!(!containers.is_finished(), "no containers document is sent before its template is in");

    // Once the server takes it, the containers documents follow.
    templates.refuse_containers.store(false, Ordering::SeqCst);
    let report = tokio::time::timeout(Duration::from_secs(60), containers).await.expect("delivered").unwrap();
    assert_eq!(report, Ok(DeliveryReport { created: 3, duplicates: 0, dead_lettered: 0 }));
}
