//! Audit events written to a data stream (`elasticsearch.data_stream.enabled`),
//! on the real server. `scripts/test.sh` runs this file on Elasticsearch 8.19 in
//! its main step and on Elasticsearch 9.x, OpenSearch 2.x and 3.x in its
//! server-matrix step.
//!
//! What is proven: the gateway installs an index template with `data_stream`
//! for each plain index name and the audit events land in that stream, each
//! once; a resend after the stream rolled over is not written again into the
//! new write index (a document `_id` is unique only inside one backing index,
//! so without the gateway's look-up in the earlier backing indices it would be
//! a second copy), whether the events are older than the rollover or newer;
//! a kill -9 under load while the stream rolls over every 300 ms loses no
//! acknowledged event and stores none twice; a dated index pattern with data
//! streams on stops the gateway at start, naming both settings.
//!
//! The kill -9 test's load is `KLG_FAULT_EVENTS` events (default 20,000).

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::certs::tls_client;
use common::config::DataStream;
use common::es::{count, es_json, require_es, wait_for_count, Es};
use common::metrics::documents_finished;
use common::reliability::Reliability;
use common::wait::wait_until;
use common::webhook::{event_list, post_json, send_all, WebhookSetup};
use kube_log_gateway::sample;
use reqwest::Method;
use serde_json::{json, Value};

/// Documents found already stored in an earlier backing index, and so not written again.
const COPIES_FOUND: &str = "klg_data_stream_copies_found_total";
const CREATED: &str = r#"source="audit",outcome="created""#;
const DUPLICATE: &str = r#"source="audit",outcome="duplicate""#;

/// A webhook gateway with data streams on and a plain name for every kind:
/// the audit stream is `logs-kubernetes.audit_logs-<prefix>` (returned).
fn stream_setup(name: &str) -> (WebhookSetup, String) {
    let mut setup = WebhookSetup::new(name);
    let p = setup.prefix.clone();
    let audit = format!("logs-kubernetes.audit_logs-{p}");
    setup.config.elasticsearch.indices = vec![
        ("audit".into(), audit.clone()),
        ("kubelet".into(), format!("logs-kubernetes.kubelet-{p}")),
        ("containers".into(), format!("logs-kubernetes.container_logs-{p}")),
        ("events".into(), format!("logs-kubernetes.events-{p}")),
        ("dead_letter".into(), format!("logs-kube_log_gateway.dead_letter-{p}")),
    ];
    setup.config.elasticsearch.data_stream = Some(DataStream { enabled: true, resend_check_margin: None });
    (setup, audit)
}

/// The dead-letter stream of a [`stream_setup`].
fn dead_letter_stream(setup: &WebhookSetup) -> String {
    format!("logs-kube_log_gateway.dead_letter-{}", setup.prefix)
}

/// `n` audit events `<prefix>-<i>` whose stage time (the document's
/// `@timestamp`) is `at` + i ms, as EventLists of 100. The same lists posted
/// again are a resend: the same `_id`s.
fn event_lists(prefix: &str, n: usize, at: DateTime<Utc>) -> Vec<String> {
    let events: Vec<String> = (0..n)
        .map(|i| {
            let mut e: Value =
                serde_json::from_str(&sample::event(&format!("{prefix}-{i}"), i as u32, false, 0)).unwrap();
            let time = (at + chrono::Duration::milliseconds(i as i64)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            e["requestReceivedTimestamp"] = json!(time);
            e["stageTimestamp"] = json!(time);
            e.to_string()
        })
        .collect();
    events.chunks(100).map(|c| event_list(c.iter())).collect()
}

/// POSTs each list to the webhook; each must be acknowledged.
async fn post_all(setup: &WebhookSetup, lists: &[String]) {
    let client = tls_client(&setup.certs(), true);
    for (i, list) in lists.iter().enumerate() {
        let (status, _, body) = post_json(&client, &setup.url("/audit"), list.clone()).await;
        assert_eq!(status, 200, "list {i}: {body}");
    }
}

/// The index template whose pattern covers `stream` (found in the listing, not
/// by its name): its name and `index_template`.
async fn template_for(stream: &str) -> Option<(String, Value)> {
    let (status, all) = es_json(Method::GET, "/_index_template", None).await;
    assert_eq!(status, 200, "{all}");
    let covers = |pattern: &str| match pattern.strip_suffix('*') {
        Some(stem) => !stem.contains('*') && stream.starts_with(stem),
        None => pattern == stream,
    };
    all["index_templates"].as_array().unwrap().iter().find_map(|t| {
        let patterns = t["index_template"]["index_patterns"].as_array()?;
        patterns
            .iter()
            .any(|p| p.as_str().is_some_and(covers))
            .then(|| (t["name"].as_str().unwrap().to_string(), t["index_template"].clone()))
    })
}

/// Waits until the gateway has finished (created or found already there)
/// `want` audit documents in all; panics with the log after 120 s.
async fn wait_finished(setup: &WebhookSetup, want: u64) {
    let finished = || documents_finished(&setup.admin, "audit");
    let (last, done) =
        common::wait::poll(Duration::from_secs(120), Duration::from_millis(100), finished, |v| *v >= want as f64).await;
    assert!(done, "{last} of {want} audit documents finished after 120 s: {}", setup.log());
}

#[tokio::test]
async fn audit_events_land_in_a_data_stream_exactly_once() {
    require_es().await;
    let es = Es::test();
    let (setup, stream) = stream_setup("ds-land");
    let gw = setup.start();
    post_all(&setup, &event_lists("ds-land", 500, Utc::now())).await;
    setup.wait_spool_empty(Duration::from_secs(120)).await;
    assert_eq!(wait_for_count(&stream, 500, Duration::from_secs(60)).await, 500, "{}", setup.log());

    // A data stream, not an index or an alias of that name, backed by `.ds-` indices.
    let (status, resolved) = es_json(Method::GET, &format!("/_resolve/index/{stream}"), None).await;
    assert_eq!(status, 200, "{resolved}");
    let indices = resolved["indices"].as_array().unwrap();
    assert!(!indices.iter().any(|i| i["name"] == stream.as_str()), "{resolved}");
    assert_eq!(resolved["aliases"], json!([]), "{resolved}");
    let streams = resolved["data_streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{resolved}");
    assert_eq!(streams[0]["name"], stream.as_str(), "{resolved}");
    let backing = streams[0]["backing_indices"].as_array().unwrap();
    assert_eq!(backing.len(), 1, "{resolved}");
    assert!(backing[0].as_str().unwrap().starts_with(&format!(".ds-{stream}-")), "{resolved}");
    assert_eq!(count(backing[0].as_str().unwrap()).await, 500);

    // Each event once: 500 distinct auditIDs in 500 documents.
    let (distinct, repeated) = es.distinct_and_repeated(&stream, "kubernetes.audit.auditID").await;
    assert_eq!((distinct, repeated), (500, Vec::<String>::new()));
    assert_eq!(gw.metric("klg_documents_total", CREATED).await, 500.0);
    assert_eq!(gw.metric("klg_documents_total", DUPLICATE).await, 0.0);
    assert_eq!(gw.metric(COPIES_FOUND, "").await, 0.0);
    assert_eq!(count(&dead_letter_stream(&setup)).await, 0);

    // The template the stream was made from says `data_stream`.
    let (name, template) = template_for(&stream).await.expect("a template covering the audit stream");
    assert!(template["data_stream"].is_object(), "template {name}: {template}");
    let (status, by_name) = es_json(Method::GET, &format!("/_index_template/{name}"), None).await;
    assert_eq!(status, 200, "{by_name}");
    assert!(by_name["index_templates"][0]["index_template"]["data_stream"].is_object(), "{by_name}");
    es.delete_data_streams_and_templates(&setup.prefix).await;
}

/// Rolls `stream` over and returns its new write index, which must be empty.
async fn roll_over(es: &Es, stream: &str) -> String {
    let before = es.backing_indices(stream).await;
    let (status, body) = es.rollover(stream).await;
    assert_eq!(status, 200, "rollover of {stream}: {body}");
    assert_eq!(body["rolled_over"], true, "{body}");
    let after = es.backing_indices(stream).await;
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    let write = after.last().unwrap().clone();
    assert_eq!(count(&write).await, 0);
    write
}

/// Posts `lists` (`n` events) again after a rollover and waits until the
/// gateway finished them; the stream must then hold `stored` documents, each
/// auditID once, and the write index none.
async fn resend_and_check(setup: &WebhookSetup, stream: &str, lists: &[String], n: u64, stored: u64, write: &str) {
    let es = Es::test();
    let duplicates_before = setup.metric("klg_documents_total", DUPLICATE).await;
    let created_before = setup.metric("klg_documents_total", CREATED).await;
    let copies_before = setup.metric(COPIES_FOUND, "").await;
    post_all(setup, lists).await;
    setup
        .wait_for_metric("klg_documents_total", DUPLICATE, Duration::from_secs(120), |v| {
            v >= duplicates_before + n as f64
        })
        .await;
    setup.wait_spool_empty(Duration::from_secs(60)).await;
    assert_eq!(count(stream).await, stored, "the resend written again: {}", setup.log_tail(40));
    assert_eq!(count(write).await, 0, "the resend went to the new write index {write}");
    let (distinct, repeated) = es.distinct_and_repeated(stream, "kubernetes.audit.auditID").await;
    assert_eq!((distinct, repeated.len()), (stored, 0), "auditIDs stored twice: {repeated:?}");
    assert_eq!(setup.metric("klg_documents_total", DUPLICATE).await - duplicates_before, n as f64);
    assert_eq!(setup.metric("klg_documents_total", CREATED).await - created_before, 0.0);
    assert_eq!(setup.metric(COPIES_FOUND, "").await - copies_before, n as f64);
}

#[tokio::test]
async fn a_resend_after_a_rollover_is_not_a_duplicate() {
    require_es().await;
    let es = Es::test();
    let (setup, stream) = stream_setup("ds-resend");
    let _gw = setup.start();
    const N: usize = 500;

    // Events an hour old: older than any backing index, so older than the
    // write index's creation + the margin (5 m) after the rollover.
    let old = event_lists("ds-old", N, Utc::now() - chrono::Duration::hours(1));
    post_all(&setup, &old).await;
    assert_eq!(wait_for_count(&stream, N as u64, Duration::from_secs(60)).await, N as u64, "{}", setup.log());
    wait_finished(&setup, N as u64).await;
    assert_eq!(setup.metric(COPIES_FOUND, "").await, 0.0, "nothing was there before the first post");
    let first = es.backing_indices(&stream).await;
    assert_eq!(first.len(), 1, "{first:?}");
    let write = roll_over(&es, &stream).await;
    resend_and_check(&setup, &stream, &old, N as u64, N as u64, &write).await;
    assert_eq!(count(&first[0]).await, N as u64, "every event still in the first backing index");

    // Events stamped after that rollover, stored in its write index; rolled
    // over again, their resend is within the margin of the newest write index.
    let fresh = event_lists("ds-fresh", N, Utc::now());
    post_all(&setup, &fresh).await;
    assert_eq!(wait_for_count(&stream, 2 * N as u64, Duration::from_secs(60)).await, 2 * N as u64);
    wait_finished(&setup, 3 * N as u64).await;
    assert_eq!(count(&write).await, N as u64, "the fresh events in the rollover's write index");
    let newest = roll_over(&es, &stream).await;
    resend_and_check(&setup, &stream, &fresh, N as u64, 2 * N as u64, &newest).await;
    assert_eq!(count(&dead_letter_stream(&setup)).await, 0);
    es.delete_data_streams_and_templates(&setup.prefix).await;
}

const BATCH: usize = 400;
/// Rollovers at most, so that the shared server keeps room for shards.
const MAX_ROLLOVERS: usize = 150;

#[tokio::test]
async fn kill_9_with_rollovers_under_load_loses_and_duplicates_nothing() {
    require_es().await;
    let es = Es::test();
    let events: usize = std::env::var("KLG_FAULT_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let n_batches = events.div_ceil(BATCH);
    let (setup, stream) = stream_setup("ds-kill9");
    let mut gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let url = setup.url("/audit");
    let all: Arc<Vec<String>> =
        Arc::new((0..n_batches).map(|b| sample::event_list(&format!("ds-kill9-b{b}"), BATCH, 10, 4096)).collect());
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // The stream rolls over every 300 ms from its first document until the end.
    let rolling = Arc::new(AtomicBool::new(true));
    let roller = {
        let (es, stream, rolling) = (es.clone(), stream.clone(), rolling.clone());
        tokio::spawn(async move {
            let mut rollovers = 0;
            while rolling.load(Ordering::SeqCst) && rollovers < MAX_ROLLOVERS {
                if es.rollover(&stream).await.0 == 200 {
                    rollovers += 1;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            rollovers
        })
    };
    let sender = {
        let (client, url, all, acked, stop) = (client.clone(), url.clone(), all.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move { send_all(&client, &url, all, 4, acked, stop).await })
    };
    wait_until("half of the batches acknowledged (load too slow?)", Duration::from_secs(300), || {
        acked.load(Ordering::SeqCst) >= n_batches / 2
    })
    .await;
    gw.kill9();
    let acked_at_kill = acked.load(Ordering::SeqCst);
    let in_es_at_kill = count(&stream).await;
    let statuses = sender.await.unwrap();
    let backing_at_kill = es.backing_indices(&stream).await.len();
    eprintln!(
        "killed with {acked_at_kill} batches acknowledged, {in_es_at_kill} events in {backing_at_kill} backing indices"
    );

    // Restart over the same data dir; like kube-apiserver, resend every batch
    // that did not get a 2xx, while the stream keeps rolling over.
    let gw = setup.start();
    let retry: Vec<String> =
        statuses.iter().enumerate().filter(|(_, s)| **s != 200).map(|(i, _)| all[i].clone()).collect();
    let resent = retry.len();
    let statuses = send_all(&client, &url, Arc::new(retry), 4, Arc::new(AtomicUsize::new(0)), stop).await;
    assert!(statuses.iter().all(|s| *s == 200), "resends refused: {statuses:?}");
    let want = (n_batches * BATCH) as u64;
    let got = wait_for_count(&stream, want, Duration::from_secs(600)).await;
    setup.wait_spool_empty(Duration::from_secs(120)).await;
    rolling.store(false, Ordering::SeqCst);
    let rollovers = roller.await.unwrap();
    let backing = es.backing_indices(&stream).await.len();
    eprintln!("resent {resent} batches; {got} of {want} events; {rollovers} rollovers, {backing} backing indices");

    // Every acknowledged event once, across all backing indices.
    let stored = count(&stream).await;
    let (distinct, repeated) = es.distinct_and_repeated(&stream, "kubernetes.audit.auditID").await;
    let copies_found = gw.metric(COPIES_FOUND, "").await;
    eprintln!("{copies_found} copies found in earlier backing indices after the restart");
    Reliability {
        fault: "webhook, data stream rolled over every 300 ms: kill -9 under load, restart, resend what got no 2xx",
        sent: want,
        acknowledged: want,
        stored: distinct,
        duplicated: stored.saturating_sub(distinct),
        set_aside: 0,
    }
    .report();
    assert!(rollovers >= 2, "the stream rolled over {rollovers} times only");
    assert_eq!(stored, want, "every acknowledged event present, none twice: {}", setup.log_tail(40));
    assert_eq!((distinct, repeated.len()), (want, 0), "auditIDs stored twice: {repeated:?}");
    assert_eq!(count(&dead_letter_stream(&setup)).await, 0);
    es.delete_data_streams_and_templates(&setup.prefix).await;
}

#[tokio::test]
async fn a_dated_index_with_data_streams_enabled_stops_the_gateway_at_start_naming_both_settings() {
    require_es().await;
    let (mut setup, _) = stream_setup("ds-dated");
    let dated = setup.home.index("audit");
    assert!(dated.contains("%Y.%m.%d"), "{dated}");
    setup.config.elasticsearch.indices.retain(|(kind, _)| kind != "audit");
    setup.config.elasticsearch.indices.push(("audit".into(), dated));
    let config = setup.home.write_config(&setup.config);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(setup.home.log_path()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-log-gateway"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start the gateway");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the gateway still runs after 60 s: {}", setup.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "{}", setup.log());
    let log = setup.log();
    for setting in ["elasticsearch.indices.audit", "elasticsearch.data_stream.enabled"] {
        assert!(log.contains(setting), "{setting:?} not in: {log}");
    }
    // Refused before anything was installed for its indices.
    assert_eq!(template_for(&format!("{}-audit-2026.11.09", setup.prefix)).await, None);
    assert_eq!(template_for(&format!("logs-kubernetes.kubelet-{}", setup.prefix)).await, None);
}
