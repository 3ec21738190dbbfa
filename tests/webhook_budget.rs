//! The webhook's memory budget under concurrent large uploads: requests over
//! it are answered 503 with `Retry-After` (read by the client, not a reset),
//! every batch answered 200 is in Elasticsearch exactly once, the refused ones
//! land once they are resent as kube-apiserver does, and the gateway's metrics
//! show that what requests held together never went over the budget.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Small enough that a handful of the batches below fill it.
const BUDGET: u64 = 24 * 1024 * 1024;
const BATCHES: usize = 12;
const EVENTS: usize = 100;
/// Each event carries this much of a ConfigMap value: batches of about 4 MB.
const PAD: usize = 40 * 1024;

fn batch(b: usize) -> String {
    let pad = "x".repeat(PAD);
    let items = (0..EVENTS).map(|e| {
        json!({
            "level": "Request",
            "auditID": format!("budget-{b}-{e}"),
            "stage": "ResponseComplete",
            "verb": "create",
            "stageTimestamp": format!("2026-11-09T06:00:{:02}.{:06}Z", b % 60, e),
            "requestObject": {"kind": "ConfigMap", "data": {"v": pad}},
        })
    });
    event_list(items)
}

/// One POST; the status, the `Retry-After` header and the answer's body, or
/// the transport error (a reset) as text.
async fn post(client: &reqwest::Client, url: &str, body: String) -> Result<(u16, Option<String>, Value), String> {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, retry_after, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

#[tokio::test]
async fn concurrent_large_uploads_over_the_budget_are_refused_with_retry_after_and_land_once() {
    over_the_budget("webhook-budget", false).await;
}

/// The same over HTTP/1.1, where a refused request's unread body would
/// otherwise reset the connection before the client reads the 503.
#[tokio::test]
async fn over_http1_the_refusals_are_read_too() {
    over_the_budget("webhook-budget-h1", true).await;
}

async fn over_the_budget(name: &str, http1: bool) {
    require_es().await;
    let mut setup = WebhookSetup::new(name);
    // A debug build on a busy machine needs time to decode 4 MB; the budget's
    // wait is short, so that requests over it are refused rather than queued.
    setup.config.server_mut().request_timeout = Some("120s".into());
    let yaml = setup.config.to_yaml().replacen(
        "server:\n",
        &format!("server:\n  memory_budget_bytes: {BUDGET}\n  memory_budget_wait: 50ms\n"),
        1,
    );
    assert!(yaml.contains("memory_budget_bytes"), "{yaml}");
    let config = setup.config_path();
    std::fs::write(&config, yaml).unwrap();
    let gw = Gateway::start(&config, &setup.admin, &setup.log_path());
    let limit = gw.metric("klg_webhook_budget_limit_bytes", "").await;
    assert_eq!(limit, BUDGET as f64, "{}", setup.log_tail(20));

    let client = match http1 {
        false => tls_client(&setup.certs(), true),
        true => tls_client_builder(&setup.certs(), true).http1_only().build().unwrap(),
    };
    let url = setup.url("/audit");
    let bodies: Vec<String> = (0..BATCHES).map(batch).collect();
    assert!(bodies[0].len() > 4_000_000, "{}", bodies[0].len());

    // Every batch at once; the refused ones are resent after their
    // Retry-After, as kube-apiserver does, until each is answered 200.
    let started = Instant::now();
    let mut pending: Vec<usize> = (0..BATCHES).collect();
    let mut refused = 0usize;
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(started.elapsed() < Duration::from_secs(600), "still refused after 10 min: {pending:?}");
        let sends = pending.iter().map(|&b| {
            let (client, url, body) = (client.clone(), url.clone(), bodies[b].clone());
            tokio::spawn(async move { (b, post(&client, &url, body).await) })
        });
        let answers = futures::future::join_all(sends).await;
        pending.clear();
        let mut wait = 0;
        for answer in answers {
            let (b, answer) = answer.unwrap();
            let (status, retry_after, body) = answer.unwrap_or_else(|e| panic!("batch {b}: no answer read: {e}"));
            match status {
                200 => assert_eq!(body, json!({"accepted": EVENTS, "rejected": 0}), "batch {b}"),
                503 => {
                    refused += 1;
                    let seconds: u64 = retry_after
                        .unwrap_or_else(|| panic!("batch {b}: 503 without Retry-After: {body}"))
                        .parse()
                        .unwrap();
                    assert!((1..=5).contains(&seconds), "{seconds}");
                    let error = body["error"].as_str().unwrap_or_default();
                    assert!(error.contains("server.memory_budget_bytes"), "batch {b}: {body}");
                    wait = wait.max(seconds);
                    pending.push(b);
                }
                other => panic!("batch {b}: answered {other}: {body}\n{}", setup.log_tail(20)),
            }
        }
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
    eprintln!("{BATCHES} batches answered 200 after {rounds} rounds, {refused} refusals, {:?}", started.elapsed());
    assert!(refused > 0, "{BATCHES} concurrent batches of 4 MB never went over a {BUDGET}-byte budget");

    // Every batch exactly once: no more, no fewer, no _id twice.
    let total = (BATCHES * EVENTS) as u64;
    let index = setup.audit_indices();
    assert_eq!(wait_for_count(&index, total, Duration::from_secs(300)).await, total, "{}", setup.log_tail(20));
    setup.wait_spool_empty(Duration::from_secs(60)).await;
    assert_eq!(count(&index).await, total);
    assert!(duplicated_ids(&index).await.is_empty());
    for b in [0, BATCHES - 1] {
        let hits = search(&index, json!({"prefix": {"kubernetes.audit.auditID": format!("budget-{b}-")}})).await;
        assert_eq!(hits.len(), EVENTS, "batch {b}");
    }

    // The budget held: never more than it in use, all of it released, and
    // every refusal the clients read counted.
    let peak = gw.metric("klg_webhook_budget_peak_bytes", "").await;
    assert!(peak > 0.0 && peak <= BUDGET as f64, "peak {peak} of {BUDGET}");
    assert_eq!(gw.metric("klg_webhook_budget_in_use_bytes", "").await, 0.0);
    assert_eq!(gw.metric("klg_webhook_budget_refused_total", "").await, refused as f64);
    assert!(gw.metric("klg_webhook_budget_waited_total", "").await >= refused as f64);
    assert_eq!(gw.metric("klg_webhook_requests_total", "code=\"503\"").await, refused as f64);
    drop(gw);
    delete_indices(&format!("{}-*", setup.prefix)).await;
}
