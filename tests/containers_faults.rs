//! The container source under faults, end to end: real files, the real binary,
//! the real Elasticsearch. Lines are counted in Elasticsearch: each exactly once,
//! or what is missing is counted by the gateway as lost.

mod common;

use std::io::Write;
use std::time::Duration;

use common::container_node::*;
use common::es::*;
use common::files::append;
use common::pressure::Pressure;
use common::wait::*;
use serde_json::json;

const ID: &str = CONTAINER_ID;

/// Fixed length (100 bytes): lost bytes convert to lines exactly.
fn cri_fixed(seq: usize) -> String {
    let l = format!("2026-01-02T03:04:05.{:09}Z stdout F line {seq:07} ", seq % 1_000_000_000);
    format!("{l}{}\n", "f".repeat(99 - l.len()))
}

fn lines(range: std::ops::Range<usize>, f: fn(usize) -> String) -> String {
    range.map(f).collect()
}

/// (a) The tail under pressure: 100,000 lines, 5 rotations during the tail, on a
/// machine with every core busy (the tailer's listing starves, two rotations
/// fall between two listings).
#[tokio::test]
async fn under_pressure_100k_lines_rotated_five_times_each_once() {
    require_es().await;
    const LINES: usize = 100_000;
    let node = Node::new("flt-pressure");
    let real = node.container("shop", "busy-1", "uid-9", "app");
    let _pressure = Pressure::start();
    let _gw = node.start();
    let writer = write_rotating_five_times(real, LINES);
    let rotations = tokio::task::spawn_blocking(move || writer.join().unwrap()).await.unwrap();
    assert_eq!(rotations, 5);
    let got = wait_for_count(&node.indices(), LINES as u64, Duration::from_secs(300)).await;
    assert_eq!(got, LINES as u64, "{}", node.log());
    node.wait_all_delivered(Duration::from_secs(120)).await;
    assert_each_line_once(&node.indices(), LINES, None).await;
    assert_eq!(node.metric("klg_containers_bytes_lost_total", "").await, 0.0);
    node.delete_indices().await;
}

/// (b) kubelet layout, 5 rotations, a kill -9 mid-way, and the gateway down
/// across two rotations: one file is created and rotated away while it is down.
#[tokio::test]
async fn kill_9_with_rotations_while_down_then_every_line_once() {
    require_es().await;
    const PER_FILE: usize = 12_000;
    let node = Node::new("flt-kill9");
    let real = node.container("shop", "busy-1", "uid-9", "app");
    let mut gw = Some(node.start());
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&real).unwrap();
    let mut seq = 0;
    for file in 1..=6 {
        f.write_all(lines(seq..seq + PER_FILE, cri).as_bytes()).unwrap();
        seq += PER_FILE;
        if file == 6 {
            break;
        }
        if file == 3 {
            // Mid-way: some of it delivered and checkpointed, then SIGKILL.
            wait_for_count(&node.indices(), 20_000, Duration::from_secs(120)).await;
            let checkpoints = node.checkpoints();
            wait_until("a checkpoint", Duration::from_secs(60), || checkpoints.exists()).await;
            gw.take().unwrap().kill9();
        }
        rotate(&mut f, &real, &format!("2026010{file}-000000"), seq..seq + 3);
        seq += 3;
        if file == 4 {
            gw = Some(node.start());
        }
    }
    let want = 6 * PER_FILE + 5 * 3;
    assert_eq!(seq, want);
    let got = wait_for_count(&node.indices(), want as u64, Duration::from_secs(240)).await;
    assert_eq!(got, want as u64, "{}", node.log());
    node.wait_all_delivered(Duration::from_secs(120)).await;
    assert_each_line_once(&node.indices(), want, None).await;
    assert!(node.log().contains("reading a rotated file that was never read"), "{}", node.log());
    drop(gw);
    node.delete_indices().await;
}

/// (c) Two rotations within one poll interval, inotify off: the middle file
/// was never at the listed path; it is found beside the live one.
#[tokio::test]
async fn two_rotations_within_one_poll_interval_lose_nothing() {
    require_es().await;
    let mut node = Node::new("flt-twice");
    node.config.containers_mut().poll_interval = "5s".into();
    node.config.containers_mut().inotify = Some(false);
    let real = node.container("shop", "a-1", "uid-a", "app");
    append(&real, lines(0..1000, cri).as_bytes());
    let _gw = node.start();
    assert_eq!(wait_for_count(&node.indices(), 1000, Duration::from_secs(60)).await, 1000, "{}", node.log());
    let mut f = std::fs::OpenOptions::new().append(true).open(&real).unwrap();
    f.write_all(lines(1000..2000, cri).as_bytes()).unwrap();
    rotate(&mut f, &real, "20260101-000000", 2000..2000);
    f.write_all(lines(2000..3000, cri).as_bytes()).unwrap();
    rotate(&mut f, &real, "20260102-000000", 3000..3000);
    f.write_all(lines(3000..4000, cri).as_bytes()).unwrap();
    let got = wait_for_count(&node.indices(), 4000, Duration::from_secs(60)).await;
    assert_eq!(got, 4000, "{}", node.log());
    node.wait_all_delivered(Duration::from_secs(60)).await;
    assert_each_line_once(&node.indices(), 4000, None).await;
    assert!(node.metric("klg_containers_siblings_opened_total", "").await >= 1.0, "{}", node.log());
    node.delete_indices().await;
}

/// (d) A rotated file deleted before it was read to its end, closed at
/// `rotated_max_open`: the rest is counted in bytes_lost and warned about,
/// exactly — what arrived plus what is counted lost is the whole file.
#[tokio::test]
async fn a_rotated_file_deleted_before_it_was_read_is_counted_lost() {
    require_es().await;
    const LINES: usize = 30_000;
    let mut node = Node::new("flt-lost");
    node.config.elasticsearch.documents_per_second = Some(1000);
    node.config.containers_mut().rotated_max_open = Some("2s".into());
    let real = node.container("shop", "a-1", "uid-a", "app");
    append(&real, lines(0..LINES, cri_fixed).as_bytes());
    let _gw = node.start();
    node.wait_for_metric("klg_containers_bytes_read_total", "", Duration::from_secs(60), |n| n > 0.0).await;
    let rotated = real.with_file_name("0.log.20260101-000000");
    std::fs::rename(&real, &rotated).unwrap();
    std::fs::remove_file(&rotated).unwrap();
    append(&real, lines(LINES..LINES + 10, cri_fixed).as_bytes());
    let lost = node.wait_for_metric("klg_containers_bytes_lost_total", "", Duration::from_secs(60), |n| n > 0.0).await;
    node.wait_all_delivered(Duration::from_secs(180)).await;
    assert!(node.log().contains("container log lines LOST"), "{}", node.log());
    let seen = line_counts(&node.indices()).await;
    assert!(seen.values().all(|c| *c == 1), "a line twice");
    assert!((LINES..LINES + 10).all(|s| seen.contains_key(&s)), "the new file arrived whole");
    // Documents of the deleted file (a cut last line is one, flagged partial) plus whole lines lost.
    let from_first = count(&node.indices()).await - 10;
    assert_eq!(from_first + lost as u64 / 100, LINES as u64, "lost {lost} bytes: {}", node.log());
    node.delete_indices().await;
}

/// (e) Files that live shorter than the poll interval: renamed away and
/// recreated 100 times in about 10 s, 10 lines each. inotify on the pod
/// directory wakes the tailer; the rotated siblings are found anyway.
#[tokio::test]
async fn a_hundred_short_lived_files_every_line_arrives() {
    require_es().await;
    let mut node = Node::new("flt-short");
    node.config.containers_mut().poll_interval = "1s".into();
    let real = node.container("shop", "a-1", "uid-a", "app");
    append(&real, lines(0..10, cri).as_bytes());
    let _gw = node.start();
    assert_eq!(wait_for_count(&node.indices(), 10, Duration::from_secs(60)).await, 10);
    for i in 1..=100 {
        std::fs::rename(&real, real.with_file_name(format!("0.log.{i:04}"))).unwrap();
        append(&real, lines(i * 10..i * 10 + 10, cri).as_bytes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let want = 1010;
    let got = wait_for_count(&node.indices(), want, Duration::from_secs(120)).await;
    assert_eq!(got, want, "{}", node.log());
    node.wait_all_delivered(Duration::from_secs(60)).await;
    assert_each_line_once(&node.indices(), want as usize, None).await;
    assert_eq!(node.metric("klg_containers_bytes_lost_total", "").await, 0.0);
    node.delete_indices().await;
}

/// (f) A 200 MB line without a newline: one document, cut at
/// max_message_bytes, the rest counted in cut_bytes; the next line is fine.
#[tokio::test]
async fn a_200_mb_line_is_one_cut_document() {
    require_es().await;
    const MB: usize = 1 << 20;
    let node = Node::new("flt-huge");
    let real = node.container("shop", "a-1", "uid-a", "app");
    {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&real).unwrap();
        f.write_all(b"2026-01-02T03:04:05.000000001Z stdout F ").unwrap();
        let chunk = vec![b'x'; MB];
        for _ in 0..200 {
            f.write_all(&chunk).unwrap();
        }
    }
    let _gw = node.start();
    let cut = (200 * MB - MB) as f64;
    node.wait_for_metric("klg_containers_cut_bytes_total", "", Duration::from_secs(300), |n| n >= cut).await;
    assert_eq!(wait_for_count(&node.indices(), 1, Duration::from_secs(60)).await, 1);
    append(&real, format!("\n{}", cri(1)).as_bytes());
    assert_eq!(wait_for_count(&node.indices(), 2, Duration::from_secs(60)).await, 2, "{}", node.log());
    node.wait_all_delivered(Duration::from_secs(60)).await;
    assert_eq!(count(&node.indices()).await, 2);
    assert_eq!(node.metric("klg_containers_cut_bytes_total", "").await, cut);
    assert_eq!(node.metric("klg_containers_invalid_lines_total", "").await, 0.0);
    let docs = search(&node.indices(), json!({ "term": { "kube_log_gateway.flags": "cut" } })).await;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["message"].as_str().unwrap().len(), MB);
    node.delete_indices().await;
}

/// (g) copytruncate while the file is being read: the copy beside it is read
/// from where the original was read to, the new lines arrive, nothing twice.
#[tokio::test]
async fn copytruncate_mid_read_nothing_twice() {
    require_es().await;
    const LINES: usize = 30_000;
    let mut node = Node::new("flt-copytrunc");
    node.config.elasticsearch.documents_per_second = Some(2000);
    let real = node.container("shop", "a-1", "uid-a", "app");
    append(&real, lines(0..LINES, cri).as_bytes());
    let _gw = node.start();
    wait_for_count(&node.indices(), 1, Duration::from_secs(60)).await;
    // logrotate's copytruncate: copy beside, then truncate in place.
    std::fs::copy(&real, real.with_file_name("0.log.1")).unwrap();
    std::fs::OpenOptions::new().write(true).open(&real).unwrap().set_len(0).unwrap();
    append(&real, lines(LINES..LINES + 1000, cri).as_bytes());
    let want = (LINES + 1000) as u64;
    let got = wait_for_count(&node.indices(), want, Duration::from_secs(180)).await;
    assert_eq!(got, want, "{}", node.log());
    node.wait_all_delivered(Duration::from_secs(60)).await;
    assert_each_line_once(&node.indices(), LINES + 1000, None).await;
    node.delete_indices().await;
}

/// (h) A symlink loop in the containers directory: no hang, a warning, and
/// the other files are shipped.
#[tokio::test]
async fn a_symlink_loop_is_warned_about_and_the_rest_is_shipped() {
    require_es().await;
    let node = Node::new("flt-loop");
    let logs = node.path().join("containers");
    std::os::unix::fs::symlink(
        logs.join(format!("loop-b_shop_app-{ID}.log")),
        logs.join(format!("loop-a_shop_app-{ID}.log")),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        logs.join(format!("loop-a_shop_app-{ID}.log")),
        logs.join(format!("loop-b_shop_app-{ID}.log")),
    )
    .unwrap();
    let real = node.container("shop", "a-1", "uid-a", "app");
    append(&real, lines(0..100, cri).as_bytes());
    let _gw = node.start();
    assert_eq!(wait_for_count(&node.indices(), 100, Duration::from_secs(60)).await, 100, "{}", node.log());
    node.wait_for_metric("klg_containers_file_errors_total", "", Duration::from_secs(30), |n| n >= 2.0).await;
    append(&real, lines(100..200, cri).as_bytes());
    assert_eq!(wait_for_count(&node.indices(), 200, Duration::from_secs(60)).await, 200);
    assert!(node.log().contains("cannot read container log path"), "{}", node.log());
    assert!(node.log().contains("symbolic links"), "{}", node.log());
    node.delete_indices().await;
}

/// (i) A container log file the gateway may not read: a throttled warning and a
/// metric, and the other files are shipped. The tests run as root, who may read
/// anything, so this gateway runs as `nobody` (65534).
#[tokio::test]
async fn a_file_without_read_permission_is_warned_about_and_the_rest_is_shipped() {
    use std::os::unix::fs::PermissionsExt;
    require_es().await;
    let node = Node::new("flt-noperm");
    let secret = node.container("shop", "secret-1", "uid-s", "app");
    append(&secret, lines(0..50, cri).as_bytes());
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let open = node.container("shop", "open-1", "uid-o", "app");
    append(&open, lines(0..100, cri).as_bytes());
    let _gw = node.home.start_as(&node.config, 65534);
    assert_eq!(wait_for_count(&node.indices(), 100, Duration::from_secs(60)).await, 100, "{}", node.log());
    node.wait_for_metric("klg_containers_file_errors_total", "", Duration::from_secs(30), |n| n >= 1.0).await;
    append(&open, lines(100..200, cri).as_bytes());
    assert_eq!(wait_for_count(&node.indices(), 200, Duration::from_secs(60)).await, 200);
    let log = node.log();
    assert!(log.contains("cannot read container log path") && log.contains("ermission denied"), "{log}");
    assert!(log.contains("secret-1"), "the warning names the file: {log}");
    node.delete_indices().await;
}

/// (j) Rotations racing the listing: the path renamed away between its listing
/// and its opening, again and again with no pause, is no error — every line
/// arrives once, nothing is lost and `klg_containers_file_errors_total` stays 0.
#[tokio::test]
async fn renames_racing_the_listing_are_no_errors_and_every_line_arrives_once() {
    require_es().await;
    let mut node = Node::new("flt-race");
    node.config.containers_mut().poll_interval = "10ms".into();
    let real = node.container("shop", "race-1", "uid-r", "app");
    let _gw = node.start();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&real).unwrap();
    let mut seq = 0;
    for r in 0..200 {
        f.write_all(lines(seq..seq + 10, cri).as_bytes()).unwrap();
        seq += 10;
        std::fs::rename(&real, real.with_file_name(format!("0.log.{r:06}"))).unwrap();
        f = std::fs::OpenOptions::new().create(true).append(true).open(&real).unwrap();
    }
    f.write_all(lines(seq..seq + 10, cri).as_bytes()).unwrap();
    seq += 10;
    let got = wait_for_count(&node.indices(), seq as u64, Duration::from_secs(120)).await;
    assert_eq!(got, seq as u64, "{}", node.log());
    node.wait_all_delivered(Duration::from_secs(60)).await;
    assert_each_line_once(&node.indices(), seq, None).await;
    assert_eq!(node.metric("klg_containers_file_errors_total", "").await, 0.0, "{}", node.log());
    assert_eq!(node.metric("klg_containers_bytes_lost_total", "").await, 0.0);
    assert!(!node.log().contains("cannot read container log path"), "{}", node.log());
    node.delete_indices().await;
}
