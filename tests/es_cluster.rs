//! The gateway against a real three-node Elasticsearch cluster: one node is
//! killed with SIGKILL under load, the gateway fails over to the next URL of
//! `elasticsearch.urls`, and every acknowledged event is stored exactly once.
//!
//! Ignored by a plain `cargo test` (reported as ignored, never as passed): it
//! needs a cluster. `scripts/test.sh` starts one and runs it in its es-cluster
//! step with `--ignored` and `KLG_TEST_ES_CLUSTER_URLS` (the nodes of
//! `scripts/elasticsearch.sh cluster-start`, node 1 first); run with
//! `--ignored` but without the variable, it fails saying so. The load is
//! `KLG_CLUSTER_EVENTS` events (default 40,000).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use common::certs::tls_client;
use common::es_cluster::EsCluster;
use common::reliability::Reliability;
use common::webhook::{send_all, WebhookSetup};
use kube_log_gateway::sample;

const BATCH: usize = 400;

#[tokio::test]
#[ignore = "needs a three-node cluster: scripts/test.sh runs it in its es-cluster step (--ignored)"]
async fn one_of_three_nodes_killed_under_load_the_gateway_fails_over_and_loses_nothing() {
    let cluster = EsCluster::from_env();
    cluster.wait_for_health(1, "green", Duration::from_secs(120)).await;
    let events: usize = std::env::var("KLG_CLUSTER_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(40_000);
    let n_batches = events.div_ceil(BATCH);

    let mut setup = WebhookSetup::new("cluster");
    // Every node, node 1 first: the gateway writes to node 1 until it fails. One
    // primary and one replica, so a dead node's shards have a copy elsewhere.
    setup.config.elasticsearch.urls = cluster.urls.clone();
    setup.config.elasticsearch.replicas = Some(1);
    let _gw = setup.start();
    // Counts go to node 2, which stays up.
    let es = cluster.node(2);
    let index = setup.audit_indices();

    let client = tls_client(&setup.certs(), true);
    let url = setup.url("/audit");
    let batches = |range: std::ops::Range<usize>| {
        Arc::new(range.map(|b| sample::event_list(&format!("cluster-b{b}"), BATCH, 10, 4096)).collect::<Vec<_>>())
    };
    let send = |all: Arc<Vec<String>>| {
        send_all(&client, &url, all, 4, Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)))
    };

    // The first half, then node 1 (the one the gateway writes to) is killed while
    // the gateway is still delivering it: bulk requests in flight, a backlog in
    // the spool. Not before the index is green: a shard whose only in-sync copy
    // is on the dead node is unavailable until it returns (red), whatever the client does.
    let half = n_batches / 2;
    let mut statuses = send(batches(0..half)).await;
    cluster.wait_for_index_green(2, &index, Duration::from_secs(120)).await;
    es.wait_for_count(&index, 1, Duration::from_secs(120)).await;
    let failovers_before = setup.metric("klg_elasticsearch_failovers_total", "").await;
    let stored_at_kill = es.count(&index).await;
    let backlog_at_kill = setup.metric("klg_spool_entries", "").await;
    cluster.kill_node(1);
    eprintln!(
        "killed node 1 with {stored_at_kill} of {} events stored, {backlog_at_kill} batches in the spool",
        half * BATCH
    );

    // The second half with node 1 dead: the webhook does not wait on Elasticsearch.
    statuses.extend(send(batches(half..n_batches)).await);
    let refused: Vec<(usize, u16)> = statuses.iter().copied().enumerate().filter(|(_, s)| *s != 200).collect();
    assert_eq!(refused, vec![], "batches not acknowledged while a node was down: {}", setup.log_tail(40));
    let want = (n_batches * BATCH) as u64;

    // Everything arrives while node 1 is still down: through the other URLs.
    let got = es.wait_for_count(&index, want, Duration::from_secs(300)).await;
    assert_eq!(got, want, "acknowledged events stored with node 1 down: {}", setup.log_tail(40));
    setup.wait_spool_empty(Duration::from_secs(60)).await;
    let stored = es.count(&index).await;
    // One primary shard: the terms aggregation is exact.
    let duplicated = es.terms(&index, "kubernetes.audit.auditID", 2, 10).await;
    let failovers = setup.metric("klg_elasticsearch_failovers_total", "").await - failovers_before;
    let created = setup.metric("klg_documents_total", "source=\"audit\",outcome=\"created\"").await;
    let duplicate = setup.metric("klg_documents_total", "source=\"audit\",outcome=\"duplicate\"").await;
    eprintln!(
        "stored {stored} of {want} ({} after the kill); failovers {failovers}; created {created}, \
         already there (409) {duplicate}",
        stored - stored_at_kill
    );
    Reliability {
        fault: "webhook: 1 of 3 Elasticsearch nodes kill -9 under load (failover to the next URL)",
        sent: want,
        acknowledged: want,
        stored,
        duplicated: duplicated.len() as u64,
        set_aside: 0,
    }
    .report();
    assert_eq!(stored, want, "every acknowledged event, none twice");
    assert_eq!(duplicated, Vec::<serde_json::Value>::new());
    assert!(stored > stored_at_kill, "documents indexed after the kill ({stored_at_kill} before it)");
    assert!(failovers >= 1.0, "klg_elasticsearch_failovers_total did not move: {}", setup.log_tail(40));
    assert_eq!(created + duplicate, want as f64, "every document finished once by the sink");
    assert_eq!(es.count(&setup.dead_letter_indices()).await, 0);

    // Node 1 back: the cluster is whole and green again, with the same documents.
    cluster.start_node(1);
    cluster.wait_for_health(2, "green", Duration::from_secs(180)).await;
    assert_eq!(cluster.node(1).count(&index).await, want);
    es.delete_indices(&setup.all_indices()).await;
}
