//! Faults done for real, against the real Elasticsearch: kill -9 of the gateway
//! under load, Elasticsearch stopped for more than 30 s, a full spool, a
//! document that breaks the mapping, per-client rate limits, SIGTERM. Each test
//! counts documents in Elasticsearch against the events that got a 2xx.
//!
//! The kill -9 test's load is `KLG_FAULT_EVENTS` events (default 100,000).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::certs::tls_client;
use common::closed_port_url;
use common::es::{
    count, count_at, duplicated_ids, es_url, require_es, search, wait_for_count, wait_for_count_at, EsInstance,
};
use common::metrics::metric;
use common::reliability::Reliability;
use common::wait::wait_until;
use common::webhook::{post_json, send_all, WebhookSetup};
use kube_log_gateway::sample;
use serde_json::json;

const BATCH: usize = 400;

fn batches(prefix: &str, count: usize) -> Arc<Vec<String>> {
    Arc::new((0..count).map(|b| sample::event_list(&format!("{prefix}-b{b}"), BATCH, 10, 4096)).collect())
}

#[tokio::test]
async fn kill_9_under_load_then_restart_loses_nothing_and_duplicates_nothing() {
    require_es().await;
    let events: usize = std::env::var("KLG_FAULT_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let n_batches = events.div_ceil(BATCH);
    let setup = WebhookSetup::new("kill9");
    let mut gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let url = setup.url("/audit");
    let all = batches("kill9", n_batches);
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let sender = {
        let (client, url, all, acked, stop) = (client.clone(), url.clone(), all.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move { send_all(&client, &url, all, 4, acked, stop).await })
    };
    // Kill the gateway when about half of the batches are acknowledged.
    wait_until("half of the batches acknowledged (load too slow?)", Duration::from_secs(300), || {
        acked.load(Ordering::SeqCst) >= n_batches / 2
    })
    .await;
    gw.kill9();
    let acked_at_kill = acked.load(Ordering::SeqCst);
    let in_es_at_kill = count(&setup.audit_indices()).await;
    let statuses = sender.await.unwrap();
    eprintln!("killed with {acked_at_kill} batches acknowledged, {in_es_at_kill} events in Elasticsearch");

    // Restart; like kube-apiserver, resend every batch that did not get a 2xx.
    let _gw = setup.start();
    let retry: Vec<String> =
        statuses.iter().enumerate().filter(|(_, s)| **s != 200).map(|(i, _)| all[i].clone()).collect();
    let resent = retry.len();
    let statuses = send_all(&client, &url, Arc::new(retry), 4, Arc::new(AtomicUsize::new(0)), stop).await;
    assert!(statuses.iter().all(|s| *s == 200), "resends refused: {statuses:?}");

    let want = (n_batches * BATCH) as u64;
    let got = wait_for_count(&setup.audit_indices(), want, Duration::from_secs(600)).await;
    eprintln!("resent {resent} batches; {got} of {want} events in Elasticsearch");
    assert_eq!(got, want, "every acknowledged event present: {}", setup.log());
    // Nothing arrives later (the spool has nothing left to deliver), and no
    // auditID is there twice.
    setup.wait_spool_empty(Duration::from_secs(60)).await;
    let stored = count(&setup.audit_indices()).await;
    let duplicated = duplicated_ids(&setup.audit_indices()).await;
    Reliability {
        fault: "webhook: kill -9 under load, restart, resend what got no 2xx",
        sent: want,
        acknowledged: want,
        stored,
        duplicated: duplicated.len() as u64,
        set_aside: 0,
    }
    .report();
    assert_eq!(stored, want);
    assert_eq!(duplicated, Vec::<serde_json::Value>::new());
    assert_eq!(count(&setup.dead_letter_indices()).await, 0);
    setup.delete_indices().await;
}

#[tokio::test]
async fn elasticsearch_stopped_for_30s_then_the_spool_fills_and_nothing_acknowledged_is_lost() {
    require_es().await;
    let es = EsInstance::start();
    let mut setup = WebhookSetup::new("outage");
    setup.config.spool_max_bytes = Some(33_554_432);
    // Point this gateway at its own Elasticsearch.
    setup.config.elasticsearch.urls = vec![es.url()];
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let url = setup.url("/audit");
    let batch = |i: usize| sample::event_list(&format!("outage-b{i}"), BATCH, 10, 4096);
    let mut acked: Vec<usize> = Vec::new();

    // Elasticsearch up.
    for i in 0..10 {
        let (status, _, _) = post_json(&client, &url, batch(i)).await;
        assert_eq!(status, 200);
        acked.push(i);
    }

    // Elasticsearch down for more than 30 s: the webhook keeps answering 200,
    // fast, while the spool has room.
    es.stop();
    let down_since = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 10..40 {
        let started = Instant::now();
        let (status, _, body) = post_json(&client, &url, batch(i)).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(status, 200, "batch {i} during the outage: {body}");
        acked.push(i);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(down_since.elapsed() >= Duration::from_secs(30));
    assert!(slowest < Duration::from_secs(5), "the webhook must not wait on Elasticsearch (slowest {slowest:?})");

    // Still down: keep sending until the spool is full; the webhook says 429
    // with Retry-After.
    let mut refused = None;
    for i in 40..5000 {
        let (status, headers, body) = post_json(&client, &url, batch(i)).await;
        match status {
            200 => acked.push(i),
            429 => {
                refused = Some((i, headers, body));
                break;
            }
            other => panic!("batch {i}: unexpected {other}: {body}"),
        }
    }
    let (first_refused, headers, body) = refused.expect("the spool never filled");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry_after), "Retry-After {retry_after}");
    assert!(body["error"].as_str().unwrap().starts_with("spool is full"), "{body}");
    assert!(!acked.contains(&first_refused));

    // Elasticsearch back: everything acknowledged arrives, exactly once; the
    // refused batch is accepted once there is room again.
    es.resume();
    let want = (acked.len() * BATCH) as u64;
    let index = setup.audit_indices();
    let n = wait_for_count_at(&es.url(), &index, want, Duration::from_secs(300)).await;
    assert!(n >= want, "only {n} of {want} after the outage: {}", setup.log());
    setup.wait_spool_empty(Duration::from_secs(60)).await;
    let stored = count_at(&es.url(), &index).await;
    Reliability {
        fault: "webhook: Elasticsearch stopped > 30 s until the spool is full (429)",
        sent: ((first_refused + 1) * BATCH) as u64,
        acknowledged: want,
        stored,
        duplicated: stored.saturating_sub(want),
        set_aside: 0,
    }
    .report();
    assert_eq!(stored, want, "exactly the acknowledged events, none twice");
    let (status, _, _) = post_json(&client, &url, batch(first_refused)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_document_that_breaks_the_mapping_is_dead_lettered_and_the_rest_delivered() {
    require_es().await;
    let mut setup = WebhookSetup::new("poison");
    // Past the field limit, new keys are kept unindexed by default (audit_hostile.rs);
    // with that off, Elasticsearch refuses such a document whole.
    setup.config.elasticsearch.ignore_dynamic_beyond_limit = Some(false);
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let good: Vec<String> = (0..3).map(|i| sample::event(&format!("poison-ok-{i}"), i, false, 0)).collect();
    // More annotation keys than the index may map (`total_fields_limit` 2000): a valid
    // event the gateway cannot fix at the edge, which Elasticsearch refuses whole.
    let mut poison: serde_json::Value = serde_json::from_str(&sample::event("poison-bad", 1, false, 0)).unwrap();
    poison["annotations"] = (0..2100).map(|i| (format!("poison.example.com/k{i}"), json!("v"))).collect();
    let poison = poison.to_string();
    let body = format!(r#"{{"kind":"EventList","items":[{},{poison}]}}"#, good.join(","));
    let (status, _, resp) = post_json(&client, &setup.url("/audit"), body).await;
    assert_eq!(status, 200);
    assert_eq!(resp["accepted"], 4);
    assert_eq!(wait_for_count(&setup.dead_letter_indices(), 1, Duration::from_secs(30)).await, 1);
    assert_eq!(count(&setup.audit_indices()).await, 3);
    let dead = search(&setup.dead_letter_indices(), json!({"match_all": {}})).await;
    assert_eq!(dead[0]["dead_letter"]["status"], 400);
    assert_eq!(dead[0]["dead_letter"]["index"], format!("{}-audit-2026.11.09", setup.prefix));
    let message = dead[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("total fields"), "{message}");
    let original: serde_json::Value = serde_json::from_str(dead[0]["event"]["original"].as_str().unwrap()).unwrap();
    assert_eq!(original["kubernetes"]["audit"]["auditID"], "poison-bad");
    assert_eq!(metric(&setup.admin, "klg_documents_total", "outcome=\"dead_lettered\"").await, 1.0);
    setup.delete_indices().await;
}

#[tokio::test]
async fn per_client_rate_limit_answers_429_with_the_limiters_retry_after() {
    require_es().await;
    let mut setup = WebhookSetup::new("ratelimit");
    setup.config.server_mut().rate_limit = Some((200, 400));
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let url = setup.url("/audit");
    let batch = sample::event_list("rl", 400, 0, 0);
    let (status, _, _) = post_json(&client, &url, batch.clone()).await;
    assert_eq!(status, 200);
    let (status, headers, body) = post_json(&client, &url, batch.clone()).await;
    assert_eq!(status, 429, "{body}");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "400 events at 200/s: {retry_after}");
    assert_eq!(
        body["error"],
        format!("rate limit for cert:kube-apiserver exceeded (server.rate_limit); retry in {retry_after} s")
    );
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let (status, _, _) = post_json(&client, &url, batch).await;
    assert_eq!(status, 200);
    assert_eq!(wait_for_count(&setup.audit_indices(), 400, Duration::from_secs(30)).await, 400);
    setup.delete_indices().await;
}

#[tokio::test]
async fn sigterm_leaves_undelivered_events_in_the_spool_for_the_next_start() {
    require_es().await;
    let mut setup = WebhookSetup::new("sigterm");
    setup.config.shutdown_grace_period = Some("2s".into());
    // First run: Elasticsearch unreachable, so everything stays spooled.
    setup.config.elasticsearch.urls = vec![closed_port_url()];
    let mut gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let (status, _, _) = post_json(&client, &setup.url("/audit"), sample::event_list("term", 400, 10, 4096)).await;
    assert_eq!(status, 200);
    let started = Instant::now();
    let exit = gw.terminate();
    assert!(exit.success(), "{exit:?}: {}", setup.log());
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown took {:?}", started.elapsed());
    assert_eq!(count(&setup.audit_indices()).await, 0);

    // Second run, Elasticsearch reachable: the spool is replayed.
    setup.config.elasticsearch.urls = vec![es_url()];
    let _gw = setup.start();
    assert_eq!(wait_for_count(&setup.audit_indices(), 400, Duration::from_secs(60)).await, 400);
    assert!(setup.log().contains("replaying"), "{}", setup.log());
    setup.delete_indices().await;
}
