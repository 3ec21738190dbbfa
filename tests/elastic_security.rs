//! What Elastic Security needs of the gateway's audit documents, against the real
//! Elasticsearch: the documents are reached through the rules' pattern
//! `logs-kubernetes.audit_logs-*`, and `event.ingested` is the time a document
//! reached Elasticsearch, also for documents held in the spool through an outage
//! (the rules look back a few minutes on `event.ingested`).

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::certs::tls_client;
use common::es::{require_es, wait_for_count_at, Es, EsInstance};
use common::webhook::{post_json, WebhookSetup};
use kube_log_gateway::sample;
use serde_json::{json, Value};

const BATCH: usize = 20;

/// Documents of `index` whose auditID starts with `prefix`, and of those the
/// ones with `event.ingested` before `before` (exact counts).
async fn ingested_before(es: &Es, index: &str, prefix: &str, before: DateTime<Utc>) -> (u64, u64) {
    let count = |query: Value| {
        let es = es.clone();
        let index = index.to_string();
        async move {
            let (status, v) =
                es.json(reqwest::Method::POST, &format!("/{index}/_count"), Some(json!({"query": query}))).await;
            assert_eq!(status, 200, "{v}");
            v["count"].as_u64().unwrap()
        }
    };
    let prefixed = json!({"prefix": {"kubernetes.audit.auditID": prefix}});
    let all = count(prefixed.clone()).await;
    let early = count(json!({"bool": {"filter": [prefixed,
        {"range": {"event.ingested": {"lt": before.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}}}]}}))
    .await;
    (all, early)
}

#[tokio::test]
async fn after_two_minutes_without_elasticsearch_every_held_document_is_stamped_when_it_landed() {
    require_es().await;
    let es = EsInstance::start();
    let mut setup = WebhookSetup::new("ingested");
    setup.config.elasticsearch.urls = vec![es.url()];
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let url = setup.url("/audit");
    let index = setup.audit_indices();
    let private = Es::at(&es.url());
    let mut sent = 0usize;
    let post = |prefix: String| {
        let body = sample::event_list(&prefix, BATCH, 10, 512);
        let (client, url) = (client.clone(), url.clone());
        async move {
            let (status, _, body) = post_json(&client, &url, body).await;
            assert_eq!(status, 200, "{prefix}: {body}");
        }
    };

    // Up: landed and stamped before the outage.
    for b in 0..5 {
        post(format!("before-b{b}")).await;
        sent += BATCH;
    }
    assert_eq!(wait_for_count_at(&es.url(), &index, sent as u64, Duration::from_secs(120)).await, sent as u64);
    es.stop();
    let stopped = Utc::now();

    // Down for at least two minutes, under load: 80 events/s go to the spool.
    let down = Instant::now();
    let mut b = 0;
    while down.elapsed() < Duration::from_secs(125) {
        post(format!("during-b{b}")).await;
        sent += BATCH;
        b += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let during = (b * BATCH) as u64;
    let back = Utc::now();
    es.resume();

    // Back: everything arrives, once, stamped after Elasticsearch came back.
    let want = sent as u64;
    let got = wait_for_count_at(&es.url(), &index, want, Duration::from_secs(300)).await;
    assert_eq!(got, want, "every acknowledged event present: {}", setup.log());
    setup.wait_spool_empty(Duration::from_secs(60)).await;
    assert_eq!(private.count(&index).await, want, "nothing arrived twice");
    let twice = private.terms(&index, "kubernetes.audit.auditID", 2, 10).await;
    assert!(twice.is_empty(), "auditIDs stored twice: {twice:?}");

    let (n, early) = ingested_before(&private, &index, "during-", back).await;
    assert_eq!((n, early), (during, 0), "every held document stamped after {back}");
    let (n, early) = ingested_before(&private, &index, "before-", stopped).await;
    assert_eq!((n, early), (5 * BATCH as u64, 5 * BATCH as u64), "documents sent before the outage keep their time");

    // The rules' pattern reaches them, with the integration's dataset.
    let alias = "logs-kubernetes.audit_logs-kube_log_gateway";
    let (status, v) = private.json(reqwest::Method::GET, &format!("/{index}/_alias/{alias}"), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(private.count("logs-kubernetes.audit_logs-*").await, want);
    let (status, v) = private
        .json(
            reqwest::Method::POST,
            "/logs-kubernetes.audit_logs-*/_count",
            Some(json!({"query": {"bool": {"filter": [
                {"term": {"data_stream.dataset": "kubernetes.audit_logs"}},
                {"term": {"event.dataset": "kubernetes.audit_logs"}},
                {"range": {"event.ingested": {"gte": "now-15m"}}}]}}})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["count"].as_u64().unwrap(), want);
    eprintln!("{during} events held through {:?} without Elasticsearch", back - stopped);
}

/// The rules' queries and the fields they name.
#[path = "elastic_security/queries.rs"]
mod queries;
/// The activity the rules watch for, against a real kube-apiserver.
#[path = "elastic_security/rules.rs"]
mod rules;
