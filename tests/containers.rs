//! The container log source end to end: real files on disk, the real binary,
//! the real Elasticsearch. Counts are exact, and every line is checked to be
//! there exactly once.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::container_node::*;
use common::es::*;
use common::files::append;
use common::metrics::*;
use common::reliability::Reliability;
use common::wait::*;
use serde_json::{json, Value};

const ID: &str = CONTAINER_ID;

#[tokio::test]
async fn both_formats_filters_and_bad_lines_land_with_exact_fields() {
    require_es().await;
    let mut node = Node::new("ctr-fields");
    node.config.containers_mut().exclude_namespaces = vec!["kube-*".into()];
    let web = node.container("shop", "web-1", "uid-1", "app");
    let dock = node.container("shop", "web-1", "uid-1", "legacy");
    let excluded = node.container("kube-system", "coredns-1", "uid-2", "coredns");
    append(&web, b"2026-01-02T03:04:05.123456789Z stdout P first half, \n");
    append(&web, b"2026-01-02T03:04:05.200000000Z stderr F an error\n");
    append(&web, b"2026-01-02T03:04:05.300000000Z stdout F second half\n");
    append(&web, b"this line is not CRI\n");
    append(
        &dock,
        b"{\"log\":\"docker \\\"json\\\" line\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-02T03:04:06.5Z\"}\n",
    );
    append(&dock, b"{\"log\": not json\n");
    append(&excluded, b"2026-01-02T03:04:05Z stdout F must not be shipped\n");
    let _gw = node.start();
    let n = wait_for_count(&node.indices(), 5, Duration::from_secs(60)).await;
    assert_eq!(n, 5, "{}", node.log());
    let included = [&web, &dock].iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    node.wait_read_and_delivered(included, Duration::from_secs(30)).await;
    assert_eq!(count(&node.indices()).await, 5);
    let docs = search(&node.indices(), json!({ "term": { "kubernetes.container.name": "app" } })).await;
    let by_msg: BTreeMap<&str, &Value> = docs.iter().map(|d| (d["message"].as_str().unwrap(), d)).collect();
    let joined = by_msg["first half, second half"];
    assert_eq!(joined["@timestamp"], "2026-01-02T03:04:05.123456789Z");
    assert_eq!(joined["stream"], "stdout");
    assert_eq!(joined["log"]["offset"], 0);
    assert_eq!(joined["kubernetes"]["namespace"], "shop");
    assert_eq!(joined["kubernetes"]["pod"], json!({ "name": "web-1", "uid": "uid-1" }));
    assert_eq!(joined["kubernetes"]["node"]["name"], "node-1");
    assert_eq!(joined["container"]["id"], ID);
    assert_eq!(joined["event"]["dataset"], "kubernetes.container_logs");
    assert!(joined["log"]["file"]["path"].as_str().unwrap().ends_with(&format!("web-1_shop_app-{ID}.log")));
    assert!(joined.get("kube_log_gateway").is_none());
    assert_eq!(by_msg["an error"]["stream"], "stderr");
    let bad = by_msg["this line is not CRI"];
    assert_eq!(bad["kube_log_gateway"]["flags"], json!(["invalid_line"]));
    assert!(bad["error"]["message"].as_str().unwrap().contains("\"this\" is not an RFC 3339"));
    // The index comes from the line's own date; the bad line's from the ingest time.
    let (_, indices) =
        es_json(reqwest::Method::GET, &format!("/_cat/indices/{}?format=json", node.indices()), None).await;
    let names: Vec<&str> = indices.as_array().unwrap().iter().map(|i| i["index"].as_str().unwrap()).collect();
    assert!(names.contains(&format!("{}-containers-2026.01.02", node.prefix).as_str()), "{names:?}");
    let docker = search(&node.indices(), json!({ "term": { "kubernetes.container.name": "legacy" } })).await;
    let msgs: Vec<&str> = docker.iter().map(|d| d["message"].as_str().unwrap()).collect();
    assert!(msgs.contains(&"docker \"json\" line"), "{msgs:?}");
    assert!(msgs.contains(&"{\"log\": not json"), "{msgs:?}");
    assert_eq!(count(&format!("{}-deadletter-*", node.prefix)).await, 0);
    node.delete_indices().await;
}

#[tokio::test]
async fn hundred_thousand_lines_rotated_five_times_during_the_tail_each_once() {
    require_es().await;
    const LINES: usize = 100_000;
    let node = Node::new("ctr-rotate");
    let real = node.container("shop", "busy-1", "uid-9", "app");
    let _gw = node.start();
    let writer = write_rotating_five_times(real, LINES);
    let rotations = tokio::task::spawn_blocking(move || writer.join().unwrap()).await.unwrap();
    assert_eq!(rotations, 5);
    let got = wait_for_count(&node.indices(), LINES as u64, Duration::from_secs(180)).await;
    assert_eq!(got, LINES as u64, "{}", node.log());
    node.wait_read_and_delivered(bytes_under(&node.path().join("pods")), Duration::from_secs(60)).await;
    assert_eq!(count(&node.indices()).await, LINES as u64);
    assert_each_line_once(&node.indices(), LINES, Some("containers: 100,000 lines, 5 rotations during the tail")).await;
    node.delete_indices().await;
}

/// Every 10th line is written as a `P` piece plus an `F` piece.
fn cri_split(seq: usize) -> String {
    if seq % 10 != 3 {
        return cri(seq);
    }
    let t = format!("2026-01-02T03:04:05.{:09}Z", seq % 1_000_000_000);
    format!("{t} stdout P line {seq:07} first piece, \n{t} stderr F interleaved {seq}\n{t} stdout F second piece\n")
}

fn docker(seq: usize) -> String {
    format!("{{\"log\":\"line {seq:07} from docker\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-03T00:00:00.{seq:09}Z\"}}\n")
}

/// Bytes a restarted gateway has to read: every file under `pods/` from the
/// offset its checkpoint (matched by inode) saved, or from the start.
fn bytes_after_checkpoint(node: &Node) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let saved: Value = serde_json::from_slice(&std::fs::read(node.checkpoints()).unwrap()).unwrap();
    let saved = saved["files"].as_array().unwrap();
    let offset = |ino: u64| saved.iter().find(|f| f["ino"] == ino).map_or(0, |f| f["offset"].as_u64().unwrap());
    files_under(&node.path().join("pods")).iter().map(|(_, m)| m.len() - offset(m.ino())).sum()
}

#[tokio::test]
async fn kill_9_mid_tail_then_resume_loses_nothing_and_duplicates_nothing() {
    require_es().await;
    let node = Node::new("ctr-kill9");
    let a = node.container("shop", "a-1", "uid-a", "app");
    let b = node.container("shop", "b-1", "uid-b", "app");
    let text: String = (0..40_000).map(cri_split).collect();
    append(&a, text.as_bytes());
    let text: String = (40_000..60_000).map(docker).collect();
    append(&b, text.as_bytes());
    let interleaved = 4_000; // the stderr lines between P and F pieces
    let mut gw = node.start();
    let seen = wait_for_count(&node.indices(), 15_000, Duration::from_secs(60)).await;
    // At least one checkpoint behind us (they are written at most once a second).
    let checkpoints = node.checkpoints();
    wait_until("a checkpoint", Duration::from_secs(60), || checkpoints.exists()).await;
    gw.kill9();
    let at_kill = count(&node.indices()).await;
    eprintln!("killed at {seen}..{at_kill} documents");
    assert!(at_kill < 64_000, "killed too late to prove anything");
    // While the gateway is down: more lines, and the file is rotated.
    let text: String = (60_000..70_000).map(cri_split).collect();
    append(&a, text.as_bytes());
    std::fs::rename(&a, a.with_file_name("0.log.20260102-000000")).unwrap();
    let text: String = (70_000..80_000).map(cri_split).collect();
    append(&a, text.as_bytes());
    // What the restarted gateway has to read: every file from its checkpoint on.
    let to_read = bytes_after_checkpoint(&node);
    let _gw = node.start();
    let want = 80_000 + interleaved + 2_000;
    let got = wait_for_count(&node.indices(), want, Duration::from_secs(120)).await;
    assert_eq!(got, want, "{}", node.log());
    node.wait_read_and_delivered(to_read, Duration::from_secs(60)).await;
    assert_eq!(count(&node.indices()).await, want);
    assert!(node.log().contains("reading a file rotated while the gateway was down"), "{}", node.log());
    // The interleaved stderr lines are messages of their own; check the rest line by line.
    let messages = all_messages(&node.indices()).await;
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for m in messages.iter().filter(|m| !m.starts_with("interleaved")) {
        let seq: usize =
            m.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("odd message {m:?}"));
        if seq % 10 == 3 && (seq < 40_000 || (60_000..80_000).contains(&seq)) {
            assert_eq!(m, &format!("line {seq:07} first piece, second piece"));
        }
        *seen.entry(seq).or_default() += 1;
    }
    Reliability {
        fault: "containers: kill -9 mid-tail, a rotation while down, restart",
        sent: 80_000,
        acknowledged: 80_000,
        stored: seen.len() as u64,
        duplicated: seen.values().map(|c| *c as u64 - 1).sum(),
        set_aside: 0,
    }
    .report();
    assert!(seen.values().all(|c| *c == 1), "some line twice");
    assert_eq!(seen.len(), 80_000, "lines missing");
    assert_eq!(messages.iter().filter(|m| m.starts_with("interleaved")).count() as u64, interleaved + 2_000);
    node.delete_indices().await;
}

#[tokio::test]
async fn elasticsearch_down_while_files_rotate_then_everything_arrives_once() {
    require_es().await;
    let es = EsInstance::start();
    let mut node = Node::new("ctr-esdown");
    node.config.elasticsearch.urls = vec![es.url()];
    let a = node.container("shop", "a-1", "uid-a", "app");
    append(&a, (0..5_000).map(cri_split).collect::<String>().as_bytes());
    let _gw = node.start();
    let index = node.indices();
    let interleaved = |n: usize| (n / 10) as u64; // stderr lines of the P/F pairs
    let first = 5_000 + interleaved(5_000);
    assert!(wait_for_count_at(&es.url(), &index, first, Duration::from_secs(60)).await >= first, "{}", node.log());
    es.stop();
    // While Elasticsearch is down: more lines, a rotation, more lines.
    append(&a, (5_000..20_000).map(cri_split).collect::<String>().as_bytes());
    std::fs::rename(&a, a.with_file_name("0.log.20260102-000000")).unwrap();
    append(&a, (20_000..30_000).map(cri_split).collect::<String>().as_bytes());
    // Down long enough for the gateway to have failed several times.
    let failed = "result=\"transport_error\"";
    node.wait_for_metric("klg_bulk_requests_total", failed, Duration::from_secs(60), |n| n >= 3.0).await;
    es.resume();
    let written = bytes_under(&node.path().join("pods"));
    let want = 30_000 + interleaved(30_000);
    wait_for_count_at(&es.url(), &index, want, Duration::from_secs(120)).await;
    node.wait_read_and_delivered(written, Duration::from_secs(60)).await;
    assert_eq!(count_at(&es.url(), &index).await, want, "{}", node.log());
}

#[tokio::test]
async fn sigterm_saves_an_exact_checkpoint_and_a_restart_resends_nothing() {
    require_es().await;
    let node = Node::new("ctr-term");
    let a = node.container("shop", "a-1", "uid-a", "app");
    append(&a, (0..20_000).map(cri).collect::<String>().as_bytes());
    let mut gw = node.start();
    assert_eq!(wait_for_count(&node.indices(), 20_000, Duration::from_secs(60)).await, 20_000, "{}", node.log());
    assert!(gw.terminate().success(), "{}", node.log());
    let saved: Value = serde_json::from_slice(&std::fs::read(node.checkpoints()).unwrap()).unwrap();
    assert_eq!(saved["files"][0]["offset"], std::fs::metadata(&a).unwrap().len(), "{saved}");
    append(&a, (20_000..20_010).map(cri).collect::<String>().as_bytes());
    let gw = node.start();
    assert_eq!(wait_for_count(&node.indices(), 20_010, Duration::from_secs(60)).await, 20_010);
    // The sink has finished at least the 10 new lines (all of them, if the restart re-read everything).
    wait_for("10 documents finished", Duration::from_secs(30), || async {
        documents_finished(&gw.admin, "containers").await >= 10.0
    })
    .await;
    let created = gw.metric("klg_documents_total", "source=\"containers\",outcome=\"created\"").await;
    let duplicates = gw.metric("klg_documents_total", "outcome=\"duplicate\"").await;
    assert_eq!((created, duplicates), (10.0, 0.0), "the restart read only the 10 new lines");
    assert_each_line_once(&node.indices(), 20_010, None).await;
    node.delete_indices().await;
}

#[tokio::test]
async fn inotify_notices_a_new_file_long_before_the_next_poll() {
    require_es().await;
    let mut node = Node::new("ctr-inotify");
    node.config.containers_mut().poll_interval = "60s".into();
    let first = node.container("shop", "a-1", "uid-a", "app");
    append(&first, cri(0).as_bytes());
    let _gw = node.start();
    assert_eq!(wait_for_count(&node.indices(), 1, Duration::from_secs(30)).await, 1, "{}", node.log());
    // A new pod's log: the real file first, then the kubelet's symlink (the inotify event).
    let real_dir = node.path().join("pods/shop_b-1_uid-b/app");
    std::fs::create_dir_all(&real_dir).unwrap();
    append(&real_dir.join("0.log"), cri(1).as_bytes());
    let started = std::time::Instant::now();
    std::os::unix::fs::symlink(real_dir.join("0.log"), node.path().join(format!("containers/b-1_shop_app-{ID}.log")))
        .unwrap();
    assert_eq!(wait_for_count(&node.indices(), 2, Duration::from_secs(20)).await, 2, "{}", node.log());
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?} with a 60 s poll", started.elapsed());
    node.delete_indices().await;
}
