//! The tailer on real files in a temporary directory, without Elasticsearch:
//! exact messages, offsets, flags and checkpoint updates.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::checkpoint::{Entry, Update};
use super::config::ContainersConfig;
use super::document::ContainerNormalizer;
use super::file_id::FileKey;
use super::pipeline::Batch;
use super::tailer::Tailer;
use crate::document::index_pattern::IndexPattern;

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Harness {
    dir: tempfile::TempDir,
    tailer: Tailer,
    now: Instant,
    docs: Vec<Value>,
    updates: Vec<Update>,
}

fn config(dir: &Path) -> ContainersConfig {
    ContainersConfig {
        paths: vec![format!("{}/*.log", dir.display())],
        read_buffer_bytes: 4096,
        ..ContainersConfig::default()
    }
}

fn normalizer() -> ContainerNormalizer {
    ContainerNormalizer::new("c".into(), "h".into(), "n".into(), IndexPattern::parse("containers-%Y.%m.%d").unwrap())
}

impl Harness {
    fn new(edit: impl FnOnce(&mut ContainersConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness::in_dir(dir, edit, None)
    }

    fn in_dir(
        dir: tempfile::TempDir,
        edit: impl FnOnce(&mut ContainersConfig),
        resume: Option<BTreeMap<FileKey, Entry>>,
    ) -> Harness {
        let mut cfg = config(dir.path());
        edit(&mut cfg);
        let tailer = Tailer::new(cfg, normalizer(), resume);
        Harness { dir, tailer, now: Instant::now(), docs: Vec::new(), updates: Vec::new() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Steps until nothing more happens; `advance` moves the clock first.
    fn run(&mut self, advance: Duration) -> Vec<Value> {
        self.now += advance;
        let mut out = Vec::new();
        for _ in 0..1000 {
            let mut batch = Batch::default();
            let busy = self.tailer.step(&mut batch, self.now, true);
            out.extend(batch.docs.iter().map(|d| {
                let mut v: Value = serde_json::from_slice(&d.body).unwrap();
                v["_id"] = d.id.clone().into();
                v["_index"] = d.index.clone().into();
                v
            }));
            self.updates.extend(batch.updates);
            if !busy {
                break;
            }
        }
        self.docs.extend(out.iter().cloned());
        out
    }

    fn checkpoint(&self) -> BTreeMap<FileKey, Entry> {
        let mut map = BTreeMap::new();
        for u in &self.updates {
            match u {
                Update::Position(e) => {
                    map.insert(e.key(), e.clone());
                }
                Update::Forget(k) => {
                    map.remove(k);
                }
            }
        }
        map
    }
}

fn append(path: &Path, text: &[u8]) {
    std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text).unwrap();
}

fn messages(docs: &[Value]) -> Vec<String> {
    docs.iter().map(|d| d["message"].as_str().unwrap().to_string()).collect()
}

fn flags(doc: &Value) -> Vec<String> {
    doc["kube_log_gateway"]["flags"]
        .as_array()
        .map(|a| a.iter().map(|f| f.as_str().unwrap().into()).collect())
        .unwrap_or_default()
}

#[test]
fn cri_pieces_join_per_stream_with_first_piece_offset_and_time() {
    let mut h = Harness::new(|_| {});
    let name = format!("web_shop_app-{ID}.log");
    let l1 = "2026-01-02T03:04:05.000000001Z stdout P hello \n";
    let l2 = "2026-01-02T03:04:05.000000002Z stderr F an error\n";
    let l3 = "2026-01-02T03:04:05.000000003Z stdout F world\n";
    append(&h.path(&name), format!("{l1}{l2}{l3}").as_bytes());
    let docs = h.run(Duration::ZERO);
    assert_eq!(messages(&docs), vec!["an error", "hello world"]);
    assert_eq!(docs[0]["log"]["offset"], l1.len());
    assert_eq!(docs[0]["stream"], "stderr");
    assert_eq!(docs[1]["log"]["offset"], 0);
    assert_eq!(docs[1]["@timestamp"], "2026-01-02T03:04:05.000000001Z");
    assert_eq!(docs[1]["kubernetes"]["namespace"], "shop");
    assert_eq!(docs[1]["kubernetes"]["pod"]["name"], "web");
    assert_eq!(docs[1]["kubernetes"]["container"]["name"], "app");
    assert_eq!(docs[1]["container"]["id"], ID);
    assert_eq!(docs[1]["_index"], "containers-2026.01.02");
    assert_eq!(h.checkpoint().values().next().unwrap().offset, (l1.len() + l2.len() + l3.len()) as u64);
}

#[test]
fn docker_lines_split_at_16k_are_joined() {
    let mut h = Harness::new(|_| {});
    let big = "x".repeat(16 * 1024);
    let mut text = String::new();
    text.push_str(&format!("{{\"log\":\"{big}\",\"stream\":\"stdout\",\"time\":\"2026-01-02T03:04:05.1Z\"}}\n"));
    text.push_str("{\"log\":\"err \\\"q\\\"\\n\",\"stream\":\"stderr\",\"time\":\"2026-01-02T03:04:05.2Z\"}\n");
    text.push_str("{\"log\":\"tail\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-02T03:04:05.3Z\"}\n");
    append(&h.path("d.log"), text.as_bytes());
    let docs = h.run(Duration::ZERO);
    assert_eq!(messages(&docs), vec!["err \"q\"".to_string(), format!("{big}tail")]);
    assert_eq!(docs[1]["@timestamp"], "2026-01-02T03:04:05.1Z");
}

#[test]
fn lines_split_across_reads_and_writes_come_out_whole() {
    let mut h = Harness::new(|_| {});
    let path = h.path("a.log");
    let mut want = Vec::new();
    let mut text = String::new();
    for i in 0..500 {
        let msg = format!("line {i} {}", "y".repeat(i * 7 % 300));
        text.push_str(&format!("2026-01-02T03:04:05.{i:09}Z stdout F {msg}\n"));
        want.push(msg);
    }
    // Written in odd-sized pieces, read with a 4 KiB buffer: lines straddle both.
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + 1777).min(bytes.len());
        append(&path, &bytes[at..end]);
        h.run(Duration::ZERO);
        at = end;
    }
    assert_eq!(messages(&h.docs), want);
    let offsets: Vec<u64> = h.docs.iter().map(|d| d["log"]["offset"].as_u64().unwrap()).collect();
    let mut expect = 0u64;
    for (o, line) in offsets.iter().zip(text.lines()) {
        assert_eq!(*o, expect);
        expect += line.len() as u64 + 1;
    }
}

#[test]
fn exclude_filters_skip_files() {
    let mut h = Harness::new(|c| {
        c.exclude_namespaces = vec!["kube-*".into()];
        c.exclude_pods = vec!["kube-log-gateway-*".into()];
    });
    for name in ["web_shop_app", "coredns-1_kube-system_coredns", "kube-log-gateway-x1_logging_gateway", "db_shop_pg"] {
        append(&h.path(&format!("{name}-{ID}.log")), format!("2026-01-02T03:04:05Z stdout F from {name}\n").as_bytes());
    }
    let mut got = messages(&h.run(Duration::ZERO));
    got.sort();
    assert_eq!(got, vec!["from db_shop_pg", "from web_shop_app"]);
}

#[test]
fn bad_lines_are_kept_raw_and_flagged() {
    let mut h = Harness::new(|_| {});
    append(
        &h.path("cri.log"),
        b"2026-01-02T03:04:05Z stdout F good\nnot a log line\nyesterday stdout F bad time\n2026-01-02T03:04:05Z stdin F bad stream\n",
    );
    append(
        &h.path("docker.log"),
        b"{\"log\":\"ok\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-02T03:04:05Z\"}\n{\"log\": broken\n{\"log\":\"x\\n\",\"time\":\"2026-01-02T03:04:05Z\"}\n",
    );
    let before = super::metrics::metrics().invalid_lines.get();
    let docs = h.run(Duration::ZERO);
    let bad: Vec<&Value> = docs.iter().filter(|d| flags(d) == vec!["invalid_line"]).collect();
    let mut raw: Vec<&str> = bad.iter().map(|d| d["message"].as_str().unwrap()).collect();
    raw.sort();
    assert_eq!(
        raw,
        vec![
            "2026-01-02T03:04:05Z stdin F bad stream",
            "not a log line",
            "yesterday stdout F bad time",
            r#"{"log": broken"#,
            r#"{"log":"x\n","time":"2026-01-02T03:04:05Z"}"#,
        ]
    );
    assert!(bad.iter().all(|d| d["error"]["message"].is_string() && d.get("stream").is_none()));
    assert_eq!(docs.len(), 7);
    assert!(super::metrics::metrics().invalid_lines.get() >= before + 5);
}

#[test]
fn oversized_messages_are_cut_and_flagged() {
    let mut h = Harness::new(|c| c.max_message_bytes = 1024);
    let mut text = String::new();
    for _ in 0..3 {
        text.push_str(&format!("2026-01-02T03:04:05Z stdout P {}\n", "a".repeat(1000)));
    }
    text.push_str("2026-01-02T03:04:05Z stdout F end\n2026-01-02T03:04:05Z stdout F next\n");
    append(&h.path("a.log"), text.as_bytes());
    let docs = h.run(Duration::ZERO);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["message"].as_str().unwrap().len(), 1024);
    assert_eq!(flags(&docs[0]), vec!["cut"]);
    assert_eq!(docs[1]["message"], "next");
}

#[test]
fn dangling_partial_is_flushed_after_the_timeout() {
    let mut h = Harness::new(|c| c.partial_flush_timeout = Duration::from_secs(5));
    append(&h.path("a.log"), b"2026-01-02T03:04:05Z stdout P waiting for more\n");
    assert!(h.run(Duration::ZERO).is_empty());
    assert_eq!(h.checkpoint().values().next().unwrap().offset, 0, "never past a pending piece");
    assert!(h.run(Duration::from_secs(3)).is_empty());
    let docs = h.run(Duration::from_secs(3));
    assert_eq!(messages(&docs), vec!["waiting for more"]);
    assert_eq!(flags(&docs[0]), vec!["partial"]);
}

#[test]
fn resume_rereads_a_pending_message_whole_with_the_same_ids() {
    let mut h = Harness::new(|_| {});
    let path = h.path("a.log");
    append(
        &path,
        b"2026-01-02T03:04:05Z stdout F one\n2026-01-02T03:04:05Z stdout P two-a \n2026-01-02T03:04:05Z stderr F err\n",
    );
    let first = h.run(Duration::ZERO);
    assert_eq!(messages(&first), vec!["one", "err"]);
    let saved = h.checkpoint();
    let Harness { dir, .. } = h;
    append(&path, b"2026-01-02T03:04:06Z stdout F two-b\n");
    let mut h2 = Harness::in_dir(dir, |_| {}, Some(saved));
    let docs = h2.run(Duration::ZERO);
    assert_eq!(messages(&docs), vec!["err", "two-a two-b"]);
    assert_eq!(docs[0]["_id"], first[1]["_id"], "a re-read line keeps its id (a 409, not a duplicate)");
}

#[test]
fn first_run_can_start_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), b"2026-01-02T03:04:05Z stdout F old\n");
    let mut h = Harness::in_dir(dir, |c| c.start_at_first_run = super::config::StartAt::End, None);
    assert!(h.run(Duration::ZERO).is_empty());
    append(&h.path("a.log"), b"2026-01-02T03:04:06Z stdout F new\n");
    append(&h.path("b.log"), b"2026-01-02T03:04:06Z stdout F later file\n");
    let mut got = messages(&h.run(Duration::ZERO));
    got.sort();
    assert_eq!(got, vec!["later file", "new"]);
}

fn line(n: usize) -> String {
    format!("2026-01-02T03:04:05.{n:09}Z stdout F m{n}\n")
}

#[test]
fn a_line_far_longer_than_any_message_is_one_cut_document() {
    let mut h = Harness::new(|c| c.max_message_bytes = 1024);
    let path = h.path("a.log");
    let prefix = "2026-01-02T03:04:05Z stdout F ";
    append(&path, prefix.as_bytes());
    // 1 MiB in 4 KiB reads: far past max_message_bytes + 64 KiB, no newline yet.
    for _ in 0..256 {
        append(&path, &[b'x'; 4096]);
        h.run(Duration::ZERO);
    }
    assert_eq!(h.docs.len(), 1, "one document, not one per buffer-full");
    assert_eq!(h.docs[0]["message"].as_str().unwrap().len(), 1024);
    assert_eq!(flags(&h.docs[0]), vec!["cut"]);
    // While inside the line, a restart would send its head again (same _id).
    assert_eq!(h.checkpoint().values().next().map_or(0, |e| e.offset), 0);
    append(&path, b"\n2026-01-02T03:04:06Z stdout F after\n");
    h.run(Duration::ZERO);
    assert_eq!(messages(&h.docs)[1..], ["after"]);
    let end = std::fs::metadata(&path).unwrap().len();
    assert_eq!(h.checkpoint().values().next().unwrap().offset, end);
}

#[test]
fn a_full_batch_ends_the_pass_and_the_next_pass_starts_at_the_next_file() {
    // read_buffer_bytes 4096 and ~40-byte lines: one read is ~100 lines.
    let mut h = Harness::new(|c| c.batch_max_documents = 50);
    let names: Vec<String> = (0..6).map(|i| format!("p{i}_shop_app-{ID}.log")).collect();
    for name in &names {
        let text: String = (0..1000).map(|n| format!("2026-01-02T03:04:05Z stdout F {n:06}\n")).collect();
        append(&h.path(name), text.as_bytes());
    }
    let mut order = Vec::new();
    for _ in 0..12 {
        let mut batch = Batch::default();
        h.tailer.step(&mut batch, h.now, true);
        let pods: std::collections::BTreeSet<String> = batch
            .docs
            .iter()
            .map(|d| {
                serde_json::from_slice::<Value>(&d.body).unwrap()["kubernetes"]["pod"]["name"].as_str().unwrap().into()
            })
            .collect();
        // Without the stop, one pass gave each of the 6 files a turn: ~6 reads in one batch.
        assert_eq!(pods.len(), 1, "one file's turn filled the batch: {pods:?}");
        assert!(batch.docs.len() <= 50 + 110, "at most the limit plus one read: {}", batch.docs.len());
        order.extend(pods);
    }
    let first_six: std::collections::BTreeSet<_> = order[..6].iter().cloned().collect();
    assert_eq!(first_six.len(), 6, "every file had a turn before any had two: {order:?}");
}

mod rotation;
