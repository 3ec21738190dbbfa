//! Damaged state on disk never stops the gateway, done for real with the
//! gateway binary and the real Elasticsearch: a damaged spool file is moved
//! aside and the webhook serves on a fresh spool, `spool salvage` delivers
//! what the old file still holds exactly once, and a corrupt container
//! checkpoint makes the node read its files again without storing a line twice.

mod common;

use std::process::Command;
use std::time::Duration;

use common::certs::tls_client;
use common::closed_port_url;
use common::container_node::Node;
use common::es::{count, duplicated_ids, es_url, refresh, require_es, wait_for_count};
use common::files::append;
use common::reliability::Reliability;
use common::webhook::{post_json, WebhookSetup};
use kube_log_gateway::sample;

/// `kube-log-gateway spool salvage FILE --config CONFIG`: exit code and output.
fn salvage(file: &std::path::Path, config: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kube-log-gateway"))
        .args(["spool", "salvage"])
        .arg(file)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// The one `spool.redb.damaged-*` file in `dir`.
fn set_aside_file(dir: &std::path::Path) -> std::path::PathBuf {
    let found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("spool.redb.damaged-"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[tokio::test]
async fn a_damaged_spool_file_is_set_aside_the_webhook_serves_and_salvage_delivers_it_once() {
    require_es().await;
    let mut setup = WebhookSetup::new("spooldamage");
    setup.config.shutdown_grace_period = Some("2s".into());
    let (events, requests) = (40, 5);

    // Acknowledged while Elasticsearch is unreachable: all of it in the spool.
    setup.config.elasticsearch.urls = vec![closed_port_url()];
    let mut gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    for i in 0..requests {
        let body = sample::event_list(&format!("damaged-b{i}"), events, 0, 0);
        let (status, _, resp) = post_json(&client, &setup.url("/audit"), body).await;
        assert_eq!(status, 200, "{resp}");
    }
    assert_eq!(setup.metric("klg_spool_entries", "").await, requests as f64);
    assert!(gw.terminate().success(), "{}", setup.log());

    // The spool file is cut in half, as a failing disk or a full one during a
    // copy leaves it (this made the storage library panic at every start).
    let spool_file = setup.data_dir().join("spool.redb");
    let intact = std::fs::read(&spool_file).unwrap();
    std::fs::write(&spool_file, &intact[..intact.len() / 2]).unwrap();

    // The gateway starts anyway, on a fresh spool, and serves.
    setup.config.elasticsearch.urls = vec![es_url()];
    let mut gw = setup.start();
    let aside = set_aside_file(&setup.data_dir());
    assert_eq!(std::fs::read(&aside).unwrap(), &intact[..intact.len() / 2], "moved aside as it was");
    assert_eq!(setup.metric("klg_spool_files_set_aside_total", "").await, 1.0);
    let line = setup
        .wait_for_log_line("about the damaged spool", Duration::from_secs(5), |l| {
            l.contains("ERROR") && l.contains("THE SPOOL FILE IS DAMAGED")
        })
        .await;
    assert!(line.contains(&aside.display().to_string()), "{line}");
    let body = sample::event_list("damaged-after", events, 0, 0);
    let (status, _, resp) = post_json(&client, &setup.url("/audit"), body).await;
    assert_eq!(status, 200, "{resp}");
    let after = events as u64;
    assert_eq!(wait_for_count(&setup.audit_indices(), after, Duration::from_secs(60)).await, after);
    assert!(gw.terminate().success(), "{}", setup.log());

    // Salvage reads the half file (extended with zeros to the length its
    // header says): every acknowledged event arrives, once.
    let (code, out) = salvage(&aside, &setup.config_path());
    assert_eq!(code, 0, "{out}");
    let n = events * requests;
    assert!(out.contains(&format!("{requests} entries read, {n} documents: {n} created, 0 already")), "{out}");
    let acknowledged = n as u64 + after;
    assert_eq!(wait_for_count(&setup.audit_indices(), acknowledged, Duration::from_secs(60)).await, acknowledged);

    // Again: nothing new, every document already there.
    let (code, out) = salvage(&aside, &setup.config_path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("0 created, {n} already in Elasticsearch")), "{out}");
    refresh(&setup.audit_indices()).await;
    assert_eq!(count(&setup.audit_indices()).await, acknowledged);
    assert_eq!(duplicated_ids(&setup.audit_indices()).await, Vec::<serde_json::Value>::new());
    assert_eq!(std::fs::read(&aside).unwrap(), &intact[..intact.len() / 2], "salvage never changes the file");
    Reliability {
        fault: "spool file cut in half: set aside, fresh spool serves, salvaged twice",
        sent: acknowledged,
        acknowledged,
        stored: count(&setup.audit_indices()).await,
        duplicated: 0,
        set_aside: 0,
    }
    .report();
    setup.delete_indices().await;
}

fn cri(seq: usize) -> String {
    format!("2026-01-02T03:04:05.{:09}Z stdout F line {seq:07}\n", seq)
}

#[tokio::test]
async fn a_corrupt_container_checkpoint_is_moved_aside_and_no_line_is_stored_twice() {
    require_es().await;
    let node = Node::new("ckdamaged");
    let a = node.container("default", "web", "uid-a", "nginx");
    let b = node.container("default", "db", "uid-b", "pg");
    for i in 0..300 {
        append(&a, cri(i).as_bytes());
        append(&b, cri(10_000 + i).as_bytes());
    }
    let mut gw = node.start();
    assert_eq!(wait_for_count(&node.indices(), 600, Duration::from_secs(60)).await, 600);
    assert!(gw.terminate().success(), "{}", node.log());
    assert!(std::fs::read_to_string(node.checkpoints()).unwrap().contains("\"offset\""));

    for (round, damage) in [(1usize, &b"{\"version\": 1, \"files\": [ {"[..]), (2, b"")] {
        std::fs::write(node.checkpoints(), damage).unwrap();
        for i in 200 + 100 * round..300 + 100 * round {
            append(&a, cri(i).as_bytes());
            append(&b, cri(10_000 + i).as_bytes());
        }
        let want = 600 + 200 * round as u64;
        let mut gw = node.start();
        assert_eq!(wait_for_count(&node.indices(), want, Duration::from_secs(60)).await, want, "{}", node.log());
        // Every line delivered before was read again and came back as "already there".
        let already = (want - 200) as f64;
        node.wait_for_metric("klg_documents_total", "outcome=\"duplicate\"", Duration::from_secs(60), |d| d >= already)
            .await;
        assert!(gw.terminate().success(), "{}", node.log());
        let said =
            node.log().lines().filter(|l| l.contains("ERROR") && l.contains("checkpoint file is corrupt")).count();
        assert_eq!(said, round, "{}", node.log());
        refresh(&node.indices()).await;
        assert_eq!(count(&node.indices()).await, want);
        assert_eq!(duplicated_ids(&node.indices()).await, Vec::<serde_json::Value>::new());
    }
    let aside = std::fs::read_dir(node.checkpoints().parent().unwrap())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("checkpoints.json.corrupt-"))
        .count();
    assert_eq!(aside, 2);
    Reliability {
        fault: "container checkpoint corrupt, then empty: moved aside, files read again from the start",
        // 300 lines in each of two files, then 100 more in each per round, two rounds.
        sent: 1_000,
        acknowledged: 1_000,
        stored: count(&node.indices()).await,
        duplicated: 0,
        set_aside: 0,
    }
    .report();
    node.delete_indices().await;
}
