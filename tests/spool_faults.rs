//! Spool faults done for real, against the real Elasticsearch and the real
//! gateway binary: a corrupt entry in the spool file, a full disk (a 64 MiB
//! tmpfs as `data_dir`), clients that hang up right after their body, and
//! large batches waiting out an outage in flight, bounded by bytes.
//! Each test counts documents in Elasticsearch against what was acknowledged.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::certs::{rustls_client_config, tls_client, tls_connect, write_post};
use common::closed_port_url;
use common::es::{count, duplicated_ids, es_json, es_url, require_es, search, wait_for_count};
use common::metrics::metric;
use common::proxy::GatedProxy;
use common::reliability::Reliability;
use common::wait::poll;
use common::webhook::{post_json, WebhookSetup};
use kube_log_gateway::sample;

const ENTRIES: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("entries");

#[tokio::test]
async fn a_corrupt_spool_entry_is_quarantined_and_everything_else_delivered_once() {
    require_es().await;
    let mut setup = WebhookSetup::new("quarantine");
    setup.config.shutdown_grace_period = Some("2s".into());
    let events = 50;
    let requests = 6;
    let corrupt_request = 2;

    // First run: Elasticsearch unreachable, so every request stays spooled.
    setup.config.elasticsearch.urls = vec![closed_port_url()];
    let mut gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    for i in 0..requests {
        let body = sample::event_list(&format!("quarantine-b{i}"), events, 0, 0);
        let (status, _, resp) = post_json(&client, &setup.url("/audit"), body).await;
        assert_eq!(status, 200, "{resp}");
    }
    assert_eq!(setup.metric("klg_spool_entries", "").await, requests as f64);
    assert!(gw.terminate().success(), "{}", setup.log());

    // Corrupt one entry in the spool file, as a bad disk or a bug would.
    let spool_file = setup.data_dir().join("spool.redb");
    let garbage: Vec<u8> = b"\x02not an LZ4 block: ".iter().copied().chain((0u8..=255).cycle().take(600)).collect();
    let bad_id = {
        use redb::ReadableTable;
        let db = redb::Database::create(&spool_file).unwrap();
        let tx = db.begin_write().unwrap();
        let id = {
            let mut table = tx.open_table(ENTRIES).unwrap();
            let ids: Vec<u64> = table.iter().unwrap().map(|item| item.unwrap().0.value()).collect();
            assert_eq!(ids.len(), requests, "one entry per request");
            // Requests were sent one after the other: entries are in request order.
            let id = ids[corrupt_request];
            table.insert(id, garbage.as_slice()).unwrap();
            id
        };
        tx.commit().unwrap();
        id
    };

    // Second run, Elasticsearch reachable.
    setup.config.elasticsearch.urls = vec![es_url()];
    let _gw = setup.start();
    let want = ((requests - 1) * events) as u64;
    let got = wait_for_count(&setup.audit_indices(), want, Duration::from_secs(60)).await;
    assert_eq!(got, want, "{}", setup.log());
    // Nothing more arrives: the spool has nothing left to deliver.
    setup.wait_spool_empty(Duration::from_secs(30)).await;
    assert_eq!(count(&setup.audit_indices()).await, want);
    assert_eq!(duplicated_ids(&setup.audit_indices()).await, Vec::<serde_json::Value>::new());
    let lost = search(
        &setup.audit_indices(),
        serde_json::json!({"prefix": {"kubernetes.audit.auditID": format!("quarantine-b{corrupt_request}-")}}),
    )
    .await;
    assert!(lost.is_empty(), "the corrupt entry's events cannot have been delivered");

    let quarantined = setup.data_dir().join("quarantine").join(format!("{bad_id}.bin"));
    assert_eq!(std::fs::read(&quarantined).unwrap(), garbage, "the quarantine file holds the entry's bytes");
    assert_eq!(setup.metric("klg_spool_entries_quarantined_total", "").await, 1.0);
    let log = setup.log();
    assert!(
        log.lines().any(|l| l.contains("ERROR") && l.contains("corrupt") && l.contains(&format!("id={bad_id}"))),
        "{log}"
    );
    assert!(log.contains(&quarantined.display().to_string()), "{log}");
    Reliability {
        fault: "webhook: one spool entry corrupted on disk, restart",
        sent: (requests * events) as u64,
        acknowledged: (requests * events) as u64,
        stored: got,
        duplicated: 0,
        // The corrupt entry's events: quarantined to a file, counted and logged.
        set_aside: events as u64,
    }
    .report();
    eprintln!("quarantined entry {bad_id}; {got} of {} events delivered, none twice", requests * events);
    setup.delete_indices().await;
}

/// Unmounts on drop, so a failed assertion does not leave a tmpfs behind.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(dir: &std::path::Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("mount -t tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim());
            return None;
        }
        Some(Mount(dir.to_path_buf()))
    }

    fn available(&self) -> u64 {
        let out = std::process::Command::new("df").args(["--output=avail", "-B1"]).arg(&self.0).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[tokio::test]
async fn a_full_disk_refuses_with_503_and_the_spool_recovers_without_a_restart() {
    require_es().await;
    let mut setup = WebhookSetup::new("diskfull");
    let Some(mount) = Mount::tmpfs(&setup.data_dir(), "64m") else {
        eprintln!("SKIPPED a_full_disk_refuses_with_503...: cannot mount a tmpfs here (needs root)");
        return;
    };
    let proxy = GatedProxy::to_url(&es_url()).await;
    setup.config.elasticsearch.urls = vec![proxy.url.clone()];
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let url = setup.url("/audit");
    let batch = |i: usize| sample::event_list(&format!("diskfull-b{i}"), 200, 5, 4096);

    // Leave about 6 MiB free, then send until the disk is full.
    let filler = setup.data_dir().join("filler");
    let room = 6 * 1024 * 1024;
    std::fs::write(&filler, vec![0x5a_u8; (mount.available() - room) as usize]).unwrap();
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for i in 0..500 {
        let (status, headers, body) = post_json(&client, &url, batch(i)).await;
        if status == 200 {
            acked.push(i);
            continue;
        }
        assert_eq!(status, 503, "batch {i}: {body}");
        let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
        let reason = body["error"].as_str().unwrap();
        assert!(reason.contains("No space left on device"), "{reason}");
        eprintln!("first refusal: 503, Retry-After {retry_after}: {reason}");
        refused.push(i);
        break;
    }
    assert_eq!(refused.len(), 1, "the disk never filled ({} batches acknowledged)", acked.len());
    let (status, reason) = setup.readyz().await;
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("cannot take writes") && reason.contains("No space left on device"), "{reason}");
    eprintln!("/readyz: {status} {}", reason.trim());

    // Still full: still a 503 with a reason and Retry-After, never a 500.
    for i in refused[0] + 1..refused[0] + 3 {
        let (status, headers, body) = post_json(&client, &url, batch(i)).await;
        if status == 200 {
            acked.push(i);
            continue;
        }
        assert_eq!(status, 503, "batch {i}: {body}");
        assert!(headers.contains_key("retry-after"));
        assert!(body["error"].as_str().unwrap().starts_with("cannot spool the batch"), "{body}");
        eprintln!("refusal while still full: 503: {}", body["error"]);
        refused.push(i);
    }
    assert_eq!(setup.readyz().await.0, 503);
    eprintln!("disk full after {} batches; refused {refused:?}", acked.len());

    // Free the space: without a restart, /readyz turns 200 and requests are
    // accepted again; the refused batches are resent, as kube-apiserver would.
    std::fs::remove_file(&filler).unwrap();
    let (last, ready) =
        poll(Duration::from_secs(20), Duration::from_millis(200), || setup.readyz(), |r| r.0 == 200).await;
    assert!(ready, "/readyz still {} {}: {}", last.0, last.1, setup.log());
    let next = *refused.last().unwrap() + 1;
    for i in refused.iter().copied().chain(next..next + 3) {
        let (status, _, body) = post_json(&client, &url, batch(i)).await;
        assert_eq!(status, 200, "batch {i} after freeing space: {body}: {}", setup.log());
        acked.push(i);
    }
    assert_eq!(setup.readyz().await.0, 200);

    // Elasticsearch back: every acknowledged event arrives once, and the
    // spool's accounting comes back to exactly zero.
    proxy.open();
    let want = (acked.len() * 200) as u64;
    let got = wait_for_count(&setup.audit_indices(), want, Duration::from_secs(180)).await;
    assert_eq!(got, want, "{}", setup.log());
    setup.wait_spool_empty(Duration::from_secs(60)).await;
    assert_eq!(count(&setup.audit_indices()).await, want);
    assert_eq!(duplicated_ids(&setup.audit_indices()).await, Vec::<serde_json::Value>::new());
    Reliability {
        fault: "webhook: data_dir on a full tmpfs (503 + Retry-After), space freed, no restart",
        sent: want + (refused.len() as u64 * 200),
        acknowledged: want,
        stored: got,
        duplicated: 0,
        set_aside: 0,
    }
    .report();
    eprintln!(
        "{} batches acknowledged, {got} events in Elasticsearch; spool reopened {} times",
        acked.len(),
        setup.metric("klg_spool_reopens_total", "").await
    );
    setup.delete_indices().await;
}

/// Large webhook batches while Elasticsearch is away: the drain hands the sink
/// only as many as `spool.max_in_flight_bytes` holds (entries in flight are
/// held in memory until delivered), the rest wait in the spool; once
/// Elasticsearch is back, every event arrives once.
#[tokio::test]
async fn large_batches_in_flight_during_an_outage_are_bounded_by_bytes() {
    require_es().await;
    let mut setup = WebhookSetup::new("inflightbytes");
    let limit: u64 = 4 * 1024 * 1024;
    setup.config.spool_max_in_flight_bytes = Some(limit);
    let proxy = GatedProxy::to_url(&es_url()).await;
    setup.config.elasticsearch.urls = vec![proxy.url.clone()];
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let url = setup.url("/audit");
    // Ten batches of about 1.3 MiB of documents each (20 events with 32 KiB objects).
    let (batches, events) = (10usize, 20usize);
    for i in 0..batches {
        let body = sample::event_list(&format!("big-b{i}"), events, 1, 32 * 1024);
        let (status, _, answer) = post_json(&client, &url, body).await;
        assert_eq!(status, 200, "batch {i}: {answer}");
    }
    setup.wait_for_metric("klg_spool_entries", "", Duration::from_secs(30), |n| n == batches as f64).await;
    // The drain fills up to the limit, then waits for a delivery that cannot come:
    // full when one more entry would not fit.
    let in_flight = || async {
        (setup.metric("klg_spool_in_flight_bytes", "").await, setup.metric("klg_spool_in_flight_entries", "").await)
    };
    let ((bytes, entries), full) = poll(Duration::from_secs(30), Duration::from_millis(100), in_flight, |(b, e)| {
        *e > 0.0 && b + b / e > limit as f64
    })
    .await;
    eprintln!("in flight while Elasticsearch is away: {entries} entries, {bytes} bytes (limit {limit})");
    assert!(full, "the drain never filled up to the limit: {entries} entries, {bytes} bytes");
    assert!(bytes <= limit as f64, "{bytes} bytes in flight over the {limit} limit");
    assert!(entries < batches as f64 && entries >= 2.0, "{entries} entries in flight");

    proxy.open();
    let want = (batches * events) as u64;
    let got = wait_for_count(&setup.audit_indices(), want, Duration::from_secs(120)).await;
    assert_eq!(got, want, "{}", setup.log());
    setup.wait_spool_empty(Duration::from_secs(60)).await;
    assert_eq!(setup.metric("klg_spool_in_flight_bytes", "").await, 0.0);
    assert_eq!(duplicated_ids(&setup.audit_indices()).await, Vec::<serde_json::Value>::new());
    setup.delete_indices().await;
}

/// POSTs `body` to /audit over a fresh TLS connection and hangs up `after`
/// the body is written, without reading the answer.
async fn post_and_hang_up(config: Arc<rustls::ClientConfig>, port: u16, body: &str, after: Duration) {
    use tokio::io::AsyncWriteExt;
    let mut tls = tls_connect(port, config).await.unwrap();
    write_post(&mut tls, "/audit", body.as_bytes()).await;
    tokio::time::sleep(after).await;
    let _ = tls.shutdown().await;
}

#[tokio::test]
async fn clients_hanging_up_after_the_body_never_drive_the_spool_gauges_negative() {
    require_es().await;
    let setup = WebhookSetup::new("hangup");
    let _gw = setup.start();
    let tls_config = rustls_client_config(&setup.certs(), true, &[]);
    let requests = 120;
    let events = 100;
    let bodies: Arc<Vec<String>> =
        Arc::new((0..requests).map(|i| sample::event_list(&format!("hangup-b{i}"), events, 10, 2048)).collect());

    // Sample the gauges the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let lowest = Arc::new(Mutex::new((0.0f64, 0.0f64, 0usize)));
    let sampler = {
        let (admin, stop, lowest) = (setup.admin.clone(), stop.clone(), lowest.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let entries = metric(&admin, "klg_spool_entries", "").await;
                let bytes = metric(&admin, "klg_spool_bytes", "").await;
                {
                    let mut l = lowest.lock().unwrap();
                    l.0 = l.0.min(entries);
                    l.1 = l.1.min(bytes);
                    l.2 += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Eight clients at a time, each hanging up 0–39 ms after its body: at 0 the
    // server often drops the request before reading it; later ones land while
    // the handler waits for the spool commit, which is the case that matters.
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (tls_config, bodies, next, port) = (tls_config.clone(), bodies.clone(), next.clone(), setup.port);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= bodies.len() {
                    return;
                }
                let after = Duration::from_millis((i as u64 * 7) % 40);
                post_and_hang_up(tls_config.clone(), port, &bodies[i], after).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // What the hung-up requests spooled is delivered; nothing more arrives:
    // the gateway is done with every connection and its spool is empty.
    setup.wait_for_metric("klg_connections_open", "listener=\"webhook\"", Duration::from_secs(60), |n| n == 0.0).await;
    setup.wait_spool_empty(Duration::from_secs(120)).await;
    let delivered_from_hangups = count(&setup.audit_indices()).await;

    // Like kube-apiserver after a reset: send each request again, and get a 200.
    let client = tls_client(&setup.certs(), true);
    for (i, body) in bodies.iter().enumerate() {
        let (status, _, resp) = post_json(&client, &setup.url("/audit"), body.clone()).await;
        assert_eq!(status, 200, "resend {i}: {resp}");
    }
    let want = (requests * events) as u64;
    assert_eq!(wait_for_count(&setup.audit_indices(), want, Duration::from_secs(180)).await, want);
    // Spool gauges after draining: both 0.
    setup.wait_spool_empty(Duration::from_secs(60)).await;
    assert_eq!(count(&setup.audit_indices()).await, want);
    assert_eq!(duplicated_ids(&setup.audit_indices()).await, Vec::<serde_json::Value>::new());
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    let (min_entries, min_bytes, samples) = *lowest.lock().unwrap();
    eprintln!(
        "{delivered_from_hangups} events delivered from {requests} hung-up requests; {want} after resending; \
         {samples} samples, lowest klg_spool_entries {min_entries}, klg_spool_bytes {min_bytes}"
    );
    assert!(delivered_from_hangups > 0, "no hung-up request reached the spool: the test did not test anything");
    assert!(min_entries >= 0.0 && min_bytes >= 0.0, "a spool gauge went negative: {min_entries}, {min_bytes}");
    setup.delete_indices().await;
}

/// Entries spooled before a restart that changes the audit index pattern and
/// `cluster_name` are delivered as they were made: to their own index, which
/// gets the audit mappings although no template covers it any more, with the
/// old cluster name; exactly once. The change is logged; new events follow
/// the new settings.
#[tokio::test]
async fn a_changed_index_pattern_and_cluster_name_leave_spooled_entries_as_made_and_mapped() {
    require_es().await;
    let mut setup = WebhookSetup::new("cfgchange");
    setup.config.shutdown_grace_period = Some("2s".into());
    setup.config.cluster_name = Some("before".into());
    let (events, requests) = (50, 3);

    // First run: Elasticsearch unreachable, so every request stays spooled
    // (and no template was ever installed for the first pattern).
    setup.config.elasticsearch.urls = vec![closed_port_url()];
    let mut gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    for i in 0..requests {
        let body = sample::event_list(&format!("cfgchange-b{i}"), events, 0, 0);
        let (status, _, resp) = post_json(&client, &setup.url("/audit"), body).await;
        assert_eq!(status, 200, "{resp}");
    }
    assert_eq!(setup.metric("klg_spool_entries", "").await, requests as f64);
    assert!(gw.terminate().success(), "{}", setup.log());

    // Second run: another pattern, another cluster name, Elasticsearch reachable.
    let moved = setup.home.index("moved");
    setup.config.elasticsearch.indices.iter_mut().find(|(kind, _)| kind == "audit").unwrap().1 = moved;
    setup.config.cluster_name = Some("after".into());
    setup.config.elasticsearch.urls = vec![es_url()];
    let _gw = setup.start();
    let spooled = (requests * events) as u64;
    let got = wait_for_count(&setup.audit_indices(), spooled, Duration::from_secs(60)).await;
    assert_eq!(got, spooled, "{}", setup.log());
    setup.wait_spool_empty(Duration::from_secs(30)).await;
    assert_eq!(count(&setup.audit_indices()).await, spooled);
    assert_eq!(duplicated_ids(&setup.audit_indices()).await, Vec::<serde_json::Value>::new());
    let before = serde_json::json!({"term": {"orchestrator.cluster.name": "before"}});
    assert_eq!(search(&setup.audit_indices(), before).await.len() as u64, spooled, "as they were made");

    // The old pattern's index has the audit mappings, not guessed ones.
    let (status, mapping) = es_json(reqwest::Method::GET, &format!("/{}/_mapping", setup.audit_indices()), None).await;
    assert_eq!(status, 200, "{mapping}");
    let index = mapping.as_object().unwrap().values().next().unwrap();
    assert_eq!(index["mappings"]["properties"]["@timestamp"]["type"], "date_nanos", "{mapping}");
    let verb = &index["mappings"]["properties"]["kubernetes"]["properties"]["audit"]["properties"]["verb"];
    assert_eq!(verb["type"], "keyword", "{mapping}");
    let log = setup.log();
    assert!(log.contains(r#"cluster_name changed from "before" to "after" while the spool holds 3 entries"#), "{log}");
    assert!(log.contains("elasticsearch.indices.audit changed from"), "{log}");
    assert!(log.contains("which no current index pattern covers"), "{log}");

    // New events follow the new settings.
    let body = sample::event_list("cfgchange-new", events, 0, 0);
    let (status, _, resp) = post_json(&client, &setup.url("/audit"), body).await;
    assert_eq!(status, 200, "{resp}");
    let moved = setup.home.indices("moved");
    assert_eq!(wait_for_count(&moved, events as u64, Duration::from_secs(60)).await, events as u64);
    let after = serde_json::json!({"term": {"orchestrator.cluster.name": "after"}});
    assert_eq!(search(&moved, after).await.len(), events);
    assert_eq!(count(&setup.audit_indices()).await, spooled, "nothing new in the old pattern");
    Reliability {
        fault: "webhook: restart with another index pattern and cluster_name, spool full",
        sent: spooled + events as u64,
        acknowledged: spooled + events as u64,
        stored: spooled + count(&moved).await,
        duplicated: 0,
        set_aside: 0,
    }
    .report();
    setup.delete_indices().await;
}
