//! A node's container log layout for the container tests: the kubelet's
//! symlinks in `containers/` pointing into `pods/`, and a gateway config that
//! tails them into this test's own indices.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::config::{Admin, Containers, GatewayConfig};
use super::es::{count, es_json_ready, es_url, refresh};
use super::gateway::{Gateway, Home};
use super::metrics::documents_finished;
use super::reliability::Reliability;
use super::wait::wait_for;

/// The container id in every test file name (64 hex digits, as the runtime writes it).
pub const CONTAINER_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A node's log layout in a temporary directory:
/// `containers/<pod>_<ns>_<container>-<id>.log` → `pods/<ns>_<pod>_<uid>/<container>/0.log`.
/// Change `config` before [`Node::start`] to run it differently.
pub struct Node {
    pub home: Home,
    pub config: GatewayConfig,
}

impl Deref for Node {
    type Target = Home;
    fn deref(&self) -> &Home {
        &self.home
    }
}

impl Node {
    pub fn new(name: &str) -> Node {
        let home = Home::new(name);
        let logs = home.path().join("containers");
        std::fs::create_dir_all(&logs).unwrap();
        let mut config = GatewayConfig::for_test(&home.data_dir(), &es_url())
            .index("containers", &home.index("containers"))
            .index("dead_letter", &home.index("deadletter"));
        config.node_name = Some("node-1".into());
        config.admin = Admin::Listen(home.admin.clone());
        config.containers = Some(Containers {
            paths: vec![format!("{}/*.log", logs.display())],
            poll_interval: "100ms".into(),
            rotated_grace: "1s".into(),
            ..Containers::default()
        });
        Node { home, config }
    }

    pub fn start(&self) -> Gateway {
        self.home.start(&self.config)
    }

    pub fn indices(&self) -> String {
        self.home.indices("containers")
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.data_dir().join("containers/checkpoints.json")
    }

    /// Creates the pod directory and the kubelet-style symlink; returns the real file's path.
    pub fn container(&self, ns: &str, pod: &str, uid: &str, container: &str) -> PathBuf {
        let real_dir = self.path().join("pods").join(format!("{ns}_{pod}_{uid}")).join(container);
        std::fs::create_dir_all(&real_dir).unwrap();
        let real = real_dir.join("0.log");
        let link = self.path().join("containers").join(format!("{pod}_{ns}_{container}-{CONTAINER_ID}.log"));
        std::os::unix::fs::symlink(&real, link).unwrap();
        real
    }

    /// Waits until the running gateway has read `bytes` bytes of container
    /// logs and the sink has finished every message it made of them: then
    /// nothing more is on its way to Elasticsearch.
    pub async fn wait_read_and_delivered(&self, bytes: u64, timeout: Duration) {
        self.wait_for_metric("klg_containers_bytes_read_total", "", timeout, |n| n >= bytes as f64).await;
        let messages = self.metric("klg_containers_messages_total", "").await;
        wait_for(&format!("{messages} messages delivered: {}", self.log()), timeout, || async {
            documents_finished(&self.admin, "containers").await >= messages
        })
        .await;
    }

    /// Waits until the saved checkpoints cover every file on disk under
    /// `pods/` to its end: then every byte on disk is delivered (checkpoints
    /// are saved only behind delivery) and nothing more will be read, so no
    /// late duplicate can come. Unlike the process's counters, this holds
    /// across a restart of the gateway.
    pub async fn wait_all_delivered(&self, timeout: Duration) {
        let pods = self.path().join("pods");
        let checkpoints = self.checkpoints();
        wait_for(&format!("checkpoints covering every file under {}: {}", pods.display(), self.log()), timeout, || {
            let (pods, checkpoints) = (&pods, &checkpoints);
            async move { uncovered(pods, checkpoints).is_empty() }
        })
        .await;
    }
}

/// The files under `pods` that the checkpoint file does not cover to their
/// end (by inode: finished, or an offset at the file's length).
pub fn uncovered(pods: &Path, checkpoints: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let saved: Value =
        std::fs::read(checkpoints).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let entries = saved["files"].as_array().cloned().unwrap_or_default();
    files_under(pods)
        .into_iter()
        .filter(|(_, meta)| {
            !entries.iter().any(|e| {
                e["ino"].as_u64() == Some(meta.ino())
                    && (e["finished"].as_bool() == Some(true) || e["offset"].as_u64() >= Some(meta.len()))
            })
        })
        .map(|(path, _)| path)
        .collect()
}

/// The files under `dir` (a node's `pods/`, where the real files are), recursively.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.extend(files_under(&entry.path()));
        } else {
            out.push((entry.path(), meta));
        }
    }
    out
}

/// Bytes in the files under `dir`.
pub fn bytes_under(dir: &Path) -> u64 {
    files_under(dir).iter().map(|(_, m)| m.len()).sum()
}

/// A CRI line `line <seq>` of varying length.
/// Rotates like the kubelet: rename to `0.log.<stamp>`, the runtime writes
/// the lines `after` to its open descriptor, then reopens the path.
pub fn rotate(f: &mut std::fs::File, real: &Path, stamp: &str, after: std::ops::Range<usize>) {
    use std::io::Write;
    std::fs::rename(real, real.with_file_name(format!("0.log.{stamp}"))).unwrap();
    f.write_all(after.map(cri).collect::<String>().as_bytes()).unwrap();
    *f = std::fs::OpenOptions::new().create(true).append(true).open(real).unwrap();
}

/// Writes `lines` CRI lines to `real` on a thread, 1,000 at a time with a
/// pause between, rotating it five times on the way ([`rotate`]); the thread
/// returns the number of rotations.
pub fn write_rotating_five_times(real: PathBuf, lines: usize) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&real).unwrap();
        let (mut seq, mut rotations) = (0, 0);
        while seq < lines {
            f.write_all(cri(seq).as_bytes()).unwrap();
            seq += 1;
            if seq % 1000 == 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
            if seq % (lines / 6) == 0 && rotations < 5 {
                rotations += 1;
                rotate(&mut f, &real, &format!("2026010{rotations}-000000"), seq..seq + 3);
                seq += 3;
            }
        }
        rotations
    })
}

pub fn cri(seq: usize) -> String {
    format!("2026-01-02T03:04:05.{:09}Z stdout F line {seq:07} {}\n", seq % 1_000_000_000, "z".repeat(seq % 97))
}

/// Every document's `message`, paging through the index (exact: one shard).
pub async fn all_messages(index: &str) -> Vec<String> {
    refresh(index).await;
    let mut out = Vec::new();
    let mut after: Option<Value> = None;
    loop {
        let mut body = json!({ "size": 10000, "_source": ["message"], "sort": [{"event.id": "asc"}] });
        if let Some(a) = &after {
            body["search_after"] = a.clone();
        }
        let (status, v) = es_json_ready(reqwest::Method::POST, &format!("/{index}/_search"), Some(body)).await;
        assert_eq!(status, 200, "{v}");
        let hits = v["hits"]["hits"].as_array().unwrap();
        if hits.is_empty() {
            return out;
        }
        for h in hits {
            out.push(h["_source"]["message"].as_str().unwrap_or_default().to_string());
        }
        after = Some(hits.last().unwrap()["sort"].clone());
    }
}

/// How often each `line <seq>` ([`cri`]) is in `index`; panics on any other message.
pub async fn line_counts(index: &str) -> BTreeMap<usize, usize> {
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for m in all_messages(index).await {
        let seq: usize = m
            .strip_prefix("line ")
            .and_then(|r| r.get(..7))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a message that is no test line: {m:?}"));
        *seen.entry(seq).or_default() += 1;
    }
    seen
}

/// `line 0` … `line <n-1>` each in `index` exactly once, and nothing else. With
/// `fault`, the counts are reported to the reliability table first.
pub async fn assert_each_line_once(index: &str, n: usize, fault: Option<&str>) {
    let seen = line_counts(index).await;
    if let Some(fault) = fault {
        Reliability {
            fault,
            sent: n as u64,
            acknowledged: n as u64,
            stored: seen.len() as u64,
            duplicated: seen.values().map(|c| *c as u64 - 1).sum(),
            set_aside: 0,
        }
        .report();
    }
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).take(10).collect();
    assert!(twice.is_empty(), "lines present more than once: {twice:?}");
    let missing: Vec<usize> = (0..n).filter(|s| !seen.contains_key(s)).take(10).collect();
    assert!(missing.is_empty(), "lines missing: {missing:?} ({} of {n} there)", seen.len());
    assert_eq!(seen.len(), n);
    assert_eq!(count(index).await, n as u64);
}
