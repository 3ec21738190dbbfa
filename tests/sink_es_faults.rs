//! The Elasticsearch sink against faults done for real on the real
//! Elasticsearch: a document too large for it, a closed index, an index with a
//! write block. Each test counts documents in Elasticsearch against the events
//! that got a 2xx: nothing lost, nothing twice, and the fault visible in a
//! metric and the log.

mod common;

use std::time::{Duration, Instant};

use common::certs::tls_client;
use common::es::{count, es_json, require_es, search};
use common::webhook::{event_list, post_json, WebhookSetup};
use kube_log_gateway::sample;
use reqwest::Method;
use serde_json::{json, Value};

/// The day the sample events are from, so the day's audit index is known.
const DAY: &str = "2026.11.09";

/// The day's audit index, where every sample event goes.
fn audit_index(setup: &WebhookSetup) -> String {
    format!("{}-audit-{DAY}", setup.prefix)
}

fn events(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| sample::event(&format!("{prefix}-{i}"), i as u32, false, 0)).collect()
}

/// Every auditID in `index`, sorted; a duplicate would show twice.
async fn audit_ids(index: &str) -> Vec<String> {
    let mut ids: Vec<String> = search(index, json!({"match_all": {}}))
        .await
        .iter()
        .map(|s| s["kubernetes"]["audit"]["auditID"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// `prefix-0` … `prefix-<n-1>`, sorted like [`audit_ids`].
fn sorted_ids(prefix: &str, n: usize) -> Vec<String> {
    let mut ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    ids.sort();
    ids
}

/// Waits until `n` attempts on `index` were refused for `reason` (the label
/// of `klg_index_blocked_total`) and a THROTTLED warning about it, saying
/// `logged_as`, is in the log.
async fn wait_blocked_and_logged(setup: &WebhookSetup, index: &str, reason: &str, logged_as: &str, n: usize) {
    let label = format!("reason=\"{reason}\"");
    setup.wait_for_metric("klg_index_blocked_total", &label, Duration::from_secs(60), |v| v >= n as f64).await;
    setup
        .wait_for_log_line(&format!("THROTTLED about {index}"), Duration::from_secs(60), |l| {
            l.contains("THROTTLED") && l.contains(index) && l.contains(logged_as)
        })
        .await;
}

/// Creates the day's audit index before the gateway writes to it, so the
/// test can close or block it (the gateway installed the template already).
async fn create_index(index: &str) {
    let (status, v) = es_json(Method::PUT, &format!("/{index}"), None).await;
    assert_eq!(status, 200, "create {index}: {v}");
    let (status, v) =
        es_json(Method::GET, &format!("/_cluster/health/{index}?wait_for_status=green&timeout=30s"), None).await;
    assert_eq!(status, 200, "{index} green: {v}");
}

#[tokio::test]
async fn a_document_too_large_for_elasticsearch_is_dead_lettered_not_retried_forever() {
    require_es().await;
    // The node's indexing pressure limit (10 % of the heap): the big event's
    // document holds its 30 MiB string twice (kubernetes.audit.requestURI and
    // url.original), so the request alone is over it.
    let (_, stats) = es_json(Method::GET, "/_nodes/stats/indexing_pressure", None).await;
    let limit = stats["nodes"].as_object().unwrap().values().next().unwrap()["indexing_pressure"]["memory"]
        ["limit_in_bytes"]
        .as_u64()
        .unwrap();
    const BIG: usize = 30 * 1024 * 1024;
    assert!(2 * BIG as u64 > limit, "this Elasticsearch's indexing pressure limit {limit} takes the big document");

    // The webhook takes a 64 MiB body; bulk bodies are not gzipped, because
    // gzip of 60 MiB in a debug build takes longer than the rest of the test
    // (Elasticsearch counts the inflated bytes: the 429 is the same).
    let mut setup = WebhookSetup::new("toolarge");
    setup.config.server_mut().max_body_bytes = Some(64 * 1024 * 1024);
    setup.config.elasticsearch.compression = Some(false);
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);

    let mut items = events("small", 4);
    let big = sample::event("big-one", 7, false, 0).replacen(
        r#""requestURI":""#,
        &format!(r#""requestURI":"/{}"#, "x".repeat(BIG)),
        1,
    );
    items.insert(2, big);
    let started = Instant::now();
    let (status, _, body) = post_json(&client, &setup.url("/audit"), event_list(&items)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 5, "{body}");
    let (status, _, body) = post_json(&client, &setup.url("/audit"), event_list(events("after", 3))).await;
    assert_eq!(status, 200, "{body}");

    // Within a bounded time: the spool drains, the small ones arrive, the big
    // one is a dead letter — not a request retried every few seconds forever.
    setup
        .wait_for_metric("klg_documents_total", "outcome=\"dead_lettered\"", Duration::from_secs(180), |n| n == 1.0)
        .await;
    setup.wait_spool_empty(Duration::from_secs(180)).await;
    eprintln!("drained in {:?}", started.elapsed());
    assert_eq!(count(&audit_index(&setup)).await, 7);
    let mut want: Vec<String> =
        (0..4).map(|i| format!("small-{i}")).chain((0..3).map(|i| format!("after-{i}"))).collect();
    want.sort();
    assert_eq!(audit_ids(&audit_index(&setup)).await, want, "each small event once");

    let dead = search(&setup.dead_letter_indices(), json!({"match_all": {}})).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(d["error"]["type"], "es_rejected_execution_exception");
    assert_eq!(d["dead_letter"]["status"], 429);
    assert_eq!(d["dead_letter"]["index"], audit_index(&setup));
    let message = d["error"]["message"].as_str().unwrap();
    eprintln!("dead letter: {}", &message[..message.len().min(600)]);
    assert!(message.contains("indexing pressure limit"), "{message}");
    assert!(message.contains("coordinating_operation_bytes="), "{message}");
    assert!(message.contains("event.original truncated to its first 1048576 of "), "{message}");
    let original = d["event"]["original"].as_str().unwrap();
    assert_eq!(original.len(), 1024 * 1024);
    assert!(original.starts_with('{'), "the start of the document: {}", &original[..200]);

    // The whole document is in the fsynced dead-letter file.
    let file = std::fs::read_to_string(setup.data_dir().join("dead-letter.ndjson")).unwrap();
    let lines: Vec<Value> = file.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    let whole: Value = serde_json::from_str(lines[0]["document"]["event"]["original"].as_str().unwrap()).unwrap();
    assert_eq!(whole["kubernetes"]["audit"]["auditID"], "big-one");
    let uri = whole["url"]["original"].as_str().unwrap();
    assert!(
        uri.len() > BIG && uri.ends_with("x/apis/apps/v1/namespaces/shop/endpointslices/"),
        "all of it: {} bytes",
        uri.len()
    );

    assert_eq!(setup.metric("klg_documents_too_large_total", "").await, 1.0);
    assert_eq!(setup.metric("klg_documents_total", "outcome=\"created\"").await, 7.0);
    assert_eq!(setup.metric("klg_documents_total", "outcome=\"dead_letter_file\"").await, 0.0);
    // Nothing more arrives: the spool is still empty.
    setup.wait_spool_empty(Duration::from_secs(30)).await;
    assert_eq!(count(&audit_index(&setup)).await, 7);
    assert_eq!(count(&setup.dead_letter_indices()).await, 1);
    setup.delete_indices().await;
}

#[tokio::test]
async fn a_closed_index_is_retried_until_it_is_opened_never_dead_lettered() {
    require_es().await;
    const N: usize = 25;
    let setup = WebhookSetup::new("closed");
    let _gw = setup.start();
    let index = audit_index(&setup);
    create_index(&index).await;
    let (status, v) = es_json(Method::POST, &format!("/{index}/_close"), None).await;
    assert_eq!(status, 200, "close: {v}");

    let (status, _, body) =
        post_json(&tls_client(&setup.certs(), true), &setup.url("/audit"), event_list(events("closed", N))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], N, "{body}");

    wait_blocked_and_logged(&setup, &index, "index_closed", "index_closed", N).await;
    setup
        .wait_for_metric("klg_documents_total", "outcome=\"retried\"", Duration::from_secs(60), |n| n >= N as f64)
        .await;
    assert_eq!(count(&setup.dead_letter_indices()).await, 0, "a closed index is not poison");
    assert_eq!(setup.metric("klg_documents_total", "outcome=\"dead_lettered\"").await, 0.0);
    assert!(setup.metric("klg_spool_entries", "").await >= 1.0, "held in the spool meanwhile");

    let (status, v) = es_json(Method::POST, &format!("/{index}/_open?wait_for_active_shards=1"), None).await;
    assert_eq!(status, 200, "open: {v}");
    setup.wait_for_metric("klg_spool_entries", "", Duration::from_secs(60), |n| n == 0.0).await;
    assert_eq!(count(&index).await, N as u64);
    assert_eq!(audit_ids(&index).await, sorted_ids("closed", N), "exactly N, each once");
    assert_eq!(count(&setup.dead_letter_indices()).await, 0);
    assert_eq!(setup.metric("klg_documents_total", "outcome=\"created\"").await, N as f64);
    setup.delete_indices().await;
}

#[tokio::test]
async fn a_write_block_is_logged_and_retried_until_it_is_lifted() {
    require_es().await;
    const N: usize = 25;
    let mut setup = WebhookSetup::new("wblock");
    setup.config.elasticsearch.dead_letter_log_interval = Some("2s".into());
    let _gw = setup.start();
    let index = audit_index(&setup);
    create_index(&index).await;
    let block = |on: bool| json!({"index.blocks.write": if on { json!(true) } else { Value::Null }});
    let (status, v) = es_json(Method::PUT, &format!("/{index}/_settings"), Some(block(true))).await;
    assert_eq!(status, 200, "block: {v}");

    let (status, _, body) =
        post_json(&tls_client(&setup.certs(), true), &setup.url("/audit"), event_list(events("blocked", N))).await;
    assert_eq!(status, 200, "{body}");

    wait_blocked_and_logged(&setup, &index, "write", "index write (api)", N).await;
    // Throttled: one line per dead_letter_log_interval, not one per attempt.
    // A rate, so measured over a fixed window of 5 s.
    let warnings = || setup.log().lines().filter(|l| l.contains("THROTTLED")).count();
    let attempts_before = setup.metric("klg_index_blocked_total", "reason=\"write\"").await;
    let lines_before = warnings();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let attempts = setup.metric("klg_index_blocked_total", "reason=\"write\"").await - attempts_before;
    let lines = warnings() - lines_before;
    eprintln!("in 5 s: {attempts} blocked attempts, {lines} warnings");
    assert!(attempts >= N as f64, "still retried: {attempts}");
    assert!((1..=4).contains(&lines), "a warning per 2 s while it lasts, not per attempt: {lines}");
    assert_eq!(count(&setup.dead_letter_indices()).await, 0);

    let (status, v) = es_json(Method::PUT, &format!("/{index}/_settings"), Some(block(false))).await;
    assert_eq!(status, 200, "unblock: {v}");
    setup.wait_for_metric("klg_spool_entries", "", Duration::from_secs(60), |n| n == 0.0).await;
    assert_eq!(audit_ids(&index).await, sorted_ids("blocked", N), "exactly N, each once");
    assert_eq!(count(&setup.dead_letter_indices()).await, 0);
    setup.delete_indices().await;
}
