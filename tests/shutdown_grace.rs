//! Shutdown ends inside the grace period even when Elasticsearch accepts
//! connections and never answers (a listener in this test that reads and
//! never writes: the fault, not an imitation of Elasticsearch). What was in
//! flight stays spooled and reaches the real Elasticsearch after a restart.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::certs::tls_client;
use common::es::{count, duplicated_ids, es_url, require_es, wait_for_count};
use common::reliability::Reliability;
use common::wait::wait_until;
use common::webhook::{post_json, WebhookSetup};
use kube_log_gateway::sample;

/// Accepts every connection and reads from it forever, never answering.
/// Counts the connections accepted.
async fn black_hole() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    (url, accepted, task)
}

#[tokio::test]
async fn sigterm_with_elasticsearch_never_answering_exits_within_the_grace_period() {
    require_es().await;
    // The request never answered is the templates' (at start), then a bulk request's.
    for templates in [true, false] {
        sigterm_while_a_request_hangs(templates).await;
    }
}

async fn sigterm_while_a_request_hangs(templates: bool) {
    let (hole, accepted, _hole_task) = black_hole().await;
    let mut setup = WebhookSetup::new(if templates { "grace-tpl" } else { "grace-bulk" });
    setup.config.elasticsearch.install_templates = (!templates).then_some(false);
    setup.config.shutdown_grace_period = Some("3s".into());
    setup.config.elasticsearch.urls = vec![hole];
    let mut gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let (events, requests) = (30, 4);
    for i in 0..requests {
        let body = sample::event_list(&format!("grace-b{i}"), events, 0, 0);
        let (status, _, resp) = post_json(&client, &setup.url("/audit"), body).await;
        assert_eq!(status, 200, "{resp}");
    }
    // A request to "Elasticsearch" is on its way and will never be answered.
    wait_until("a connection to Elasticsearch", Duration::from_secs(30), || accepted.load(Ordering::SeqCst) >= 1).await;
    if !templates {
        setup.wait_for_metric("klg_elasticsearch_in_flight_requests", "", Duration::from_secs(30), |n| n >= 1.0).await;
    }
    let started = Instant::now();
    assert!(gw.terminate().success(), "{}", setup.log());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "exited {took:?} after SIGTERM with a 3 s grace period: {}", setup.log());
    assert!(took >= Duration::from_millis(2_900), "exited after {took:?}, before the grace period was over");
    let log = setup.log();
    assert!(log.contains("grace period over"), "{log}");
    // Every connection was closed (the client's were idle): no warning about them.
    assert!(!log.contains("connections still open"), "{log}");

    // Nothing was acknowledged to Elasticsearch, so it is all still spooled.
    setup.config.elasticsearch.urls = vec![es_url()];
    setup.config.elasticsearch.install_templates = None;
    let _gw = setup.start();
    let acknowledged = (events * requests) as u64;
    assert_eq!(wait_for_count(&setup.audit_indices(), acknowledged, Duration::from_secs(60)).await, acknowledged);
    setup.wait_spool_empty(Duration::from_secs(30)).await;
    assert_eq!(count(&setup.audit_indices()).await, acknowledged);
    assert_eq!(duplicated_ids(&setup.audit_indices()).await, Vec::<serde_json::Value>::new());
    Reliability {
        fault: "webhook: SIGTERM while Elasticsearch accepts and never answers (exit within the grace), restart",
        sent: acknowledged,
        acknowledged,
        stored: count(&setup.audit_indices()).await,
        duplicated: 0,
        set_aside: 0,
    }
    .report();
    setup.delete_indices().await;
}

#[tokio::test]
async fn an_orderly_shutdown_says_nothing_about_a_grace_period() {
    require_es().await;
    let mut setup = WebhookSetup::new("orderly");
    setup.config.shutdown_grace_period = Some("20s".into());
    let mut gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let (status, _, resp) = post_json(&client, &setup.url("/audit"), sample::event_list("orderly", 5, 0, 0)).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(wait_for_count(&setup.audit_indices(), 5, Duration::from_secs(60)).await, 5);
    // An admin connection left open, as a Prometheus scrape keeps one.
    let _scrape = std::net::TcpStream::connect(&setup.admin).unwrap();
    let started = Instant::now();
    assert!(gw.terminate().success(), "{}", setup.log());
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let log = setup.log();
    assert!(!log.contains("grace period over"), "{log}");
    assert!(!log.lines().any(|l| l.contains("WARN") && l.contains("connections")), "{log}");
    setup.delete_indices().await;
}
