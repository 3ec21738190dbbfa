//! The journald source against REAL journal files (written by
//! `systemd-journal-remote` from Journal Export Format made here) and the real
//! Elasticsearch: field mapping, unit filter, follow, start positions, saved
//! and vacuumed cursors, Elasticsearch down, kill -9 of the binary, and files
//! vacuumed before they were read (counted as lost, exactly).

mod common;

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::config::{Admin, GatewayConfig, Journald};
use common::es::{
    all_docs, count, count_at, es_url, require_es, search, wait_for_count, wait_for_count_at, EsInstance,
};
use common::gateway::{Gateway, Home};
use common::metrics::{metric, metric_in};
use common::proxy::GatedProxy;
use common::reliability::Reliability;
use common::wait::wait_until;
use kube_log_gateway::config::Config;
use kube_log_gateway::document::index_pattern::IndexPattern;
use kube_log_gateway::serve::start_sink;
use kube_log_gateway::shutdown::Shutdown;
use kube_log_gateway::sources::journald;
use kube_log_gateway::sources::journald::config::{JournaldConfig, StartAt};
use kube_log_gateway::sources::journald::cursor::CursorFile;
use kube_log_gateway::sources::journald::document::JournaldNormalizer;
use kube_log_gateway::sources::journald::export_format::{journal_remote, ExportEntry};
use kube_log_gateway::sources::journald::reader::{current_boot_id, Gap, JournalReader, StartedFrom};
use kube_log_gateway::sources::journald::spawn as spawn_journald;
use kube_log_gateway::telemetry;
use serde_json::{json, Value};

const MACHINE: &str = "fedcba9876543210fedcba9876543210";
const OLD_BOOT: &str = "0123456789abcdef0123456789abcdef";
/// 2025-11-09T06:14:42.535854Z: fixed, so every entry lands in one known index.
const T0: u64 = 1_762_668_882_535_854;

/// A journal directory, a data_dir and unique indices for one test.
struct Fixture {
    home: Home,
}

impl Deref for Fixture {
    type Target = Home;
    fn deref(&self) -> &Home {
        &self.home
    }
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let home = Home::new(name);
        std::fs::create_dir_all(home.path().join("journal")).unwrap();
        Fixture { home }
    }

    fn journal_dir(&self) -> PathBuf {
        self.path().join("journal")
    }

    /// Writes `entries` into `<journal dir>/<file>.journal` with journal-remote.
    fn write(&self, file: &str, entries: Vec<ExportEntry>) {
        journal_remote(&self.journal_dir().join(format!("{file}.journal")), entries).unwrap();
    }

    fn indices(&self) -> String {
        self.home.indices("kubelet")
    }

    /// Writes `entries` into `<file>.journal` after archiving the entries it
    /// holds, as journald rotates: the old ones go to `<file>@….journal~` and
    /// the new file continues the same sequence-number id. journal-remote
    /// archives a file it finds not closed cleanly and continues its sequence,
    /// so the header's state byte (offset 16) is set to "online" first.
    /// Returns the archived file.
    fn write_rotated(&self, file: &str, entries: Vec<ExportEntry>) -> PathBuf {
        let active = self.journal_dir().join(format!("{file}.journal"));
        let archived = |dir: &Path| -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(".journal~"))
                .collect();
            v.sort();
            v
        };
        let before = archived(&self.journal_dir());
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(&active).unwrap();
            f.seek(SeekFrom::Start(16)).unwrap();
            f.write_all(&[1]).unwrap();
        }
        self.write(file, entries);
        let new: Vec<PathBuf> = archived(&self.journal_dir()).into_iter().filter(|p| !before.contains(p)).collect();
        assert_eq!(new.len(), 1, "journal-remote archived {new:?}");
        new.into_iter().next().unwrap()
    }

    fn cursor(&self) -> Option<String> {
        CursorFile::for_directory(&self.data_dir(), &self.journal_dir()).load().unwrap()
    }

    /// The gateway config, node role only, on the Elasticsearch at `es`.
    /// In-process runs have no admin listener: set `admin` to run the binary.
    fn config(&self, es: &str) -> GatewayConfig {
        let mut config = GatewayConfig::for_test(&self.data_dir(), es)
            .index("kubelet", &self.index("kubelet"))
            .index("dead_letter", &self.index("deadletter"))
            .index("audit", &self.index("audit"));
        config.node_name = Some("node-a".into());
        config.admin = Admin::Off;
        config.journald = Some(Journald {
            directories: vec![self.journal_dir(), "/nonexistent/run/log/journal".into()],
            start_at: "head".into(),
            ..Journald::default()
        });
        config
    }

    /// Writes `config` and loads it as the gateway would.
    fn load(&self, config: &GatewayConfig) -> Config {
        Config::load_with_env(&self.write_config(config), []).unwrap()
    }
}

/// A kubelet entry number `i` of a run: klog header, PID, host.
fn kubelet(i: u64, boot: &str, t: u64) -> ExportEntry {
    ExportEntry::new(t, 1_000 + i, boot)
        .field("_MACHINE_ID", MACHINE)
        .field("_HOSTNAME", "node-1")
        .field("_SYSTEMD_UNIT", "kubelet.service")
        .field("SYSLOG_IDENTIFIER", "kubelet")
        .field("_COMM", "kubelet")
        .field("_PID", "4242")
        .field("PRIORITY", "6")
        .field("MESSAGE", format!("I1109 06:14:42.535854    1234 kubelet.go:{i}] entry {i}"))
}

fn unit_entry(i: u64, unit: &str, t: u64) -> ExportEntry {
    ExportEntry::new(t, 1_000 + i, OLD_BOOT)
        .field("_MACHINE_ID", MACHINE)
        .field("_HOSTNAME", "node-1")
        .field("_SYSTEMD_UNIT", unit)
        .field("PRIORITY", "6")
        .field("MESSAGE", format!("{unit} says {i}"))
}

/// Runs the source in-process; returns a stopper.
struct InProcess {
    shutdown: Shutdown,
    source: tokio::task::JoinHandle<()>,
    sink: tokio::task::JoinHandle<()>,
}

impl InProcess {
    fn start(cfg: &Config) -> InProcess {
        let shutdown = Shutdown::new();
        let (sink, sink_task) = start_sink(cfg, shutdown.clone()).unwrap();
        let ctx = cfg.source_context(&journald::REGISTRATION, sink, shutdown.clone());
        let jcfg: JournaldConfig = cfg.sources.section("journald").unwrap().unwrap();
        let source = spawn_journald(&jcfg, &ctx).unwrap();
        InProcess { shutdown, source, sink: sink_task }
    }

    /// Graceful stop: in-flight batches finish, the cursor is saved.
    async fn stop(self) {
        self.shutdown.begin();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.source).await.expect("source stops");
        let _ = tokio::time::timeout(Duration::from_secs(30), self.sink).await.expect("sink stops");
    }
}

/// Every cursor in the directory, in journal order, of the matching entries.
fn cursors(dir: &Path, units: &[&str]) -> Vec<String> {
    let units: Vec<String> = units.iter().map(|s| s.to_string()).collect();
    let mut r = JournalReader::open(dir, &units, &[]).unwrap();
    r.position(None, StartAt::Head).unwrap();
    let mut n = normalizer();
    let mut docs = Vec::new();
    r.read_into(usize::MAX, &mut n, &mut docs).unwrap();
    docs.iter()
        .map(|d| serde_json::from_slice::<Value>(&d.body).unwrap()["journald"]["cursor"].as_str().unwrap().to_string())
        .collect()
}

fn normalizer() -> JournaldNormalizer {
    JournaldNormalizer::new("c".into(), "n".into(), IndexPattern::parse("k-%Y.%m.%d").unwrap())
}

/// Messages of what a reader positioned at `start` returns.
fn read_messages(dir: &Path, saved: Option<&str>, start: StartAt) -> (StartedFrom, Vec<String>) {
    let mut r = JournalReader::open(dir, &["kubelet.service".to_string()], &[]).unwrap();
    let from = r.position(saved, start).unwrap();
    let mut n = normalizer();
    let mut docs = Vec::new();
    r.read_into(usize::MAX, &mut n, &mut docs).unwrap();
    let messages = docs
        .iter()
        .map(|d| serde_json::from_slice::<Value>(&d.body).unwrap()["message"].as_str().unwrap().to_string())
        .collect();
    (from, messages)
}

fn entry_numbers(messages: &[String]) -> Vec<u64> {
    messages.iter().map(|m| m.rsplit(' ').next().unwrap().parse().unwrap()).collect()
}

#[tokio::test]
async fn kubelet_entries_are_shipped_with_their_fields_and_appended_entries_follow() {
    require_es().await;
    let f = Fixture::new("jfields");
    let binary = b"E1109 06:14:43.000001 99 server.go:7] bad \xff bytes and a NUL \0 here".to_vec();
    f.write(
        "a",
        vec![
            kubelet(1, OLD_BOOT, T0),
            unit_entry(2, "containerd.service", T0 + 1),
            ExportEntry::new(T0 + 2, 1_002, OLD_BOOT)
                .field("_MACHINE_ID", MACHINE)
                .field("_HOSTNAME", "node-1")
                .field("_SYSTEMD_UNIT", "kubelet.service")
                .field("PRIORITY", "4")
                .field("MESSAGE", "first line\n  second line\n\tthird"),
            ExportEntry::new(T0 + 3, 1_003, OLD_BOOT)
                .field("_MACHINE_ID", MACHINE)
                .field("_SYSTEMD_UNIT", "kubelet.service")
                .field("PRIORITY", "3")
                .field("MESSAGE", &binary),
            // Not a listed unit, but a listed identifier: shipped.
            unit_entry(4, "session-1.scope", T0 + 4).field("SYSLOG_IDENTIFIER", "node-problem-detector"),
            unit_entry(5, "sshd.service", T0 + 5),
        ],
    );
    let mut config = f.config(&es_url());
    config.journald_mut().identifiers = vec!["node-problem-detector".into()];
    let cfg = f.load(&config);
    let run = InProcess::start(&cfg);
    assert_eq!(wait_for_count(&f.indices(), 4, Duration::from_secs(60)).await, 4);

    // Appended while running, into a new file in the same directory.
    f.write(
        "b",
        (10..15)
            .map(|i| kubelet(i, OLD_BOOT, T0 + 10 + i))
            .chain([unit_entry(20, "containerd.service", T0 + 40)])
            .collect(),
    );
    assert_eq!(wait_for_count(&f.indices(), 9, Duration::from_secs(60)).await, 9);
    // And appended to an existing file.
    f.write("a", vec![kubelet(30, OLD_BOOT, T0 + 50)]);
    assert_eq!(wait_for_count(&f.indices(), 10, Duration::from_secs(60)).await, 10);
    // Stopped gracefully: everything read was delivered; nothing more can arrive.
    run.stop().await;
    assert_eq!(count(&f.indices()).await, 10);

    let docs = search(&f.indices(), json!({"match_all": {}})).await;
    let first = &docs[0];
    assert_eq!(first["@timestamp"], "2025-11-09T06:14:42.535854Z");
    assert_eq!(first["message"], "I1109 06:14:42.535854    1234 kubelet.go:1] entry 1");
    assert_eq!(first["event"]["dataset"], "kubelet");
    assert_eq!(first["event"]["kind"], "event");
    assert_eq!(first["log"]["level"], "info");
    assert_eq!(first["log"]["syslog"]["priority"], 6);
    assert_eq!(first["log"]["syslog"]["appname"], "kubelet");
    assert_eq!(first["log"]["origin"]["file"]["name"], "kubelet.go");
    assert_eq!(first["log"]["origin"]["file"]["line"], 1);
    assert_eq!(first["process"]["pid"], 4242);
    assert_eq!(first["process"]["name"], "kubelet");
    assert_eq!(first["process"]["thread"]["id"], 1234);
    assert_eq!(first["systemd"]["unit"], "kubelet.service");
    assert_eq!(first["host"]["name"], "node-1");
    assert_eq!(first["kubernetes"]["node"]["name"], "node-a");
    assert_eq!(first["orchestrator"]["cluster"]["name"], "test");
    assert_eq!(first["journald"]["boot_id"], OLD_BOOT);
    assert_eq!(first["journald"]["machine_id"], MACHINE);
    let all_cursors = cursors(&f.journal_dir(), &["kubelet.service"]);
    assert_eq!(first["journald"]["cursor"], all_cursors[0].as_str());

    let multi = &docs[1];
    assert_eq!(multi["message"], "first line\n  second line\n\tthird");
    assert_eq!(multi["log"]["level"], "warning", "PRIORITY 4 without a klog header");
    assert!(multi["log"].get("origin").is_none());

    let bin = &docs[2];
    assert_eq!(bin["message"], String::from_utf8_lossy(&binary).as_ref());
    assert_eq!(bin["kube_log_gateway"]["flags"], json!(["message_binary"]));
    assert_eq!(bin["log"]["level"], "error");
    assert_eq!(bin["log"]["origin"]["file"]["name"], "server.go");

    let npd = &docs[3];
    assert_eq!(npd["systemd"]["unit"], "session-1.scope");
    assert_eq!(npd["event"]["dataset"], "journald");
    assert_eq!(npd["log"]["syslog"]["appname"], "node-problem-detector");

    // The excluded units never arrive.
    let units: Vec<&str> = docs.iter().map(|d| d["systemd"]["unit"].as_str().unwrap()).collect();
    assert!(!units.contains(&"containerd.service") && !units.contains(&"sshd.service"), "{units:?}");
    // Searchable by the mapped fields.
    assert_eq!(search(&f.indices(), json!({"term": {"log.origin.file.name": "kubelet.go"}})).await.len(), 7);
    assert_eq!(search(&f.indices(), json!({"term": {"kube_log_gateway.flags": "message_binary"}})).await.len(), 1);

    // Stopped gracefully: the cursor is the last shipped kubelet entry.
    assert_eq!(f.cursor().as_deref(), Some(all_cursors.last().unwrap().as_str()));
    f.delete_indices().await;
}

#[test]
fn start_positions_saved_cursor_and_boot_fallback() {
    let f = Fixture::new("jstart");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64;
    let hour = 3_600_000_000;
    let boot = current_boot_id();
    assert_eq!(boot.len(), 32);
    // Three entries of an earlier boot three hours ago, three of this boot ten minutes ago.
    let mut entries: Vec<ExportEntry> = (0..3).map(|i| kubelet(i, OLD_BOOT, now - 3 * hour + i)).collect();
    entries.extend((3..6).map(|i| kubelet(i, &boot, now - hour / 6 + i)));
    f.write("a", entries);
    let dir = f.journal_dir();

    let (from, m) = read_messages(&dir, None, StartAt::Head);
    assert_eq!((from, entry_numbers(&m)), (StartedFrom::Head, vec![0, 1, 2, 3, 4, 5]));
    let (from, m) = read_messages(&dir, None, StartAt::Boot);
    assert_eq!((from, entry_numbers(&m)), (StartedFrom::Boot, vec![3, 4, 5]));
    let (from, m) = read_messages(&dir, None, StartAt::Since(Duration::from_secs(3600)));
    assert_eq!((from, entry_numbers(&m)), (StartedFrom::Since, vec![3, 4, 5]));
    let (from, m) = read_messages(&dir, None, StartAt::Tail);
    assert_eq!((from, entry_numbers(&m)), (StartedFrom::Tail, vec![]));

    // A saved cursor: continue just after it (the entry AT the cursor was delivered).
    let all = cursors(&dir, &["kubelet.service"]);
    let (from, m) = read_messages(&dir, Some(&all[3]), StartAt::Head);
    assert_eq!((from, entry_numbers(&m)), (StartedFrom::Cursor, vec![4, 5]));
    let (from, m) = read_messages(&dir, Some(&all[5]), StartAt::Head);
    assert_eq!((from, entry_numbers(&m)), (StartedFrom::Cursor, vec![]));
    // An unparsable cursor: from the oldest entry.
    let (from, m) = read_messages(&dir, Some("not a cursor"), StartAt::Tail);
    assert_eq!((from, entry_numbers(&m)), (StartedFrom::CursorLost, vec![0, 1, 2, 3, 4, 5]));

    // Reopening the handle midway (bounded memory on long reads) neither
    // skips nor repeats an entry.
    let mut r = JournalReader::open(&dir, &["kubelet.service".to_string()], &[]).unwrap();
    r.set_reopen_every(2);
    r.position(None, StartAt::Head).unwrap();
    let mut docs = Vec::new();
    while r.read_into(1, &mut normalizer(), &mut docs).unwrap().is_some() {}
    let read: Vec<String> = docs
        .iter()
        .map(|d| serde_json::from_slice::<Value>(&d.body).unwrap()["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(entry_numbers(&read), vec![0, 1, 2, 3, 4, 5]);

    // Tail follows: entries written after positioning arrive after a wait.
    let mut r = JournalReader::open(&dir, &["kubelet.service".to_string()], &[]).unwrap();
    r.position(None, StartAt::Tail).unwrap();
    f.write("b", vec![kubelet(6, &boot, now + 1), kubelet(7, &boot, now + 2)]);
    let mut docs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while docs.len() < 2 && Instant::now() < deadline {
        r.wait(Duration::from_millis(200)).unwrap();
        r.read_into(100, &mut normalizer(), &mut docs).unwrap();
    }
    assert_eq!(docs.len(), 2);

    // Journal files with no entry of the current boot (copied from elsewhere):
    // `boot` falls back to the oldest entry.
    let g = Fixture::new("jstart2");
    g.write("a", (0..3).map(|i| kubelet(i, OLD_BOOT, T0 + i)).collect());
    let (from, m) = read_messages(&g.journal_dir(), None, StartAt::Boot);
    assert_eq!((from, entry_numbers(&m)), (StartedFrom::BootNotFoundHead, vec![0, 1, 2]));
}

#[tokio::test]
async fn a_vacuumed_cursor_restarts_at_the_oldest_entry_and_is_counted() {
    require_es().await;
    let f = Fixture::new("jvacuum");
    f.write("a", (0..5).map(|i| kubelet(i, OLD_BOOT, T0 + i)).collect());
    f.write("b", (5..10).map(|i| kubelet(i, OLD_BOOT, T0 + i)).collect());
    let cfg = f.load(&f.config(&es_url()));
    let run = InProcess::start(&cfg);
    assert_eq!(wait_for_count(&f.indices(), 10, Duration::from_secs(60)).await, 10);
    run.stop().await;
    let saved = f.cursor().expect("cursor saved");
    assert_eq!(saved, cursors(&f.journal_dir(), &["kubelet.service"])[9]);

    // journald vacuums both files; newer entries are in a new one.
    std::fs::remove_file(f.journal_dir().join("a.journal")).unwrap();
    std::fs::remove_file(f.journal_dir().join("b.journal")).unwrap();
    f.write("c", (10..14).map(|i| kubelet(i, OLD_BOOT, T0 + i)).collect());
    let lost_before = lost_cursors();
    let run = InProcess::start(&cfg);
    assert_eq!(wait_for_count(&f.indices(), 14, Duration::from_secs(60)).await, 14);
    run.stop().await;
    assert_eq!(count(&f.indices()).await, 14);
    assert_eq!(lost_cursors() - lost_before, 1.0);
    assert_eq!(f.cursor().unwrap(), *cursors(&f.journal_dir(), &["kubelet.service"]).last().unwrap());
    f.delete_indices().await;
}

/// Every entry of the directory (any unit): message → sequence number.
fn seqnums(dir: &Path) -> std::collections::HashMap<String, u64> {
    let mut r = JournalReader::open(dir, &[], &[]).unwrap();
    r.position(None, StartAt::Head).unwrap();
    let mut docs = Vec::new();
    r.read_into(usize::MAX, &mut normalizer(), &mut docs).unwrap();
    docs.iter()
        .map(|d| {
            let v: Value = serde_json::from_slice(&d.body).unwrap();
            let cursor = v["journald"]["cursor"].as_str().unwrap();
            let i = cursor.split(';').find_map(|p| p.strip_prefix("i=")).unwrap();
            (v["message"].as_str().unwrap().to_string(), u64::from_str_radix(i, 16).unwrap())
        })
        .collect()
}

/// The messages of `docs`, as entry numbers.
fn doc_numbers(docs: &[kube_log_gateway::document::Document]) -> Vec<u64> {
    let m: Vec<String> = docs
        .iter()
        .map(|d| serde_json::from_slice::<Value>(&d.body).unwrap()["message"].as_str().unwrap().to_string())
        .collect();
    entry_numbers(&m)
}

/// A kubelet entry `i`, with a containerd entry after every third: the
/// journal's numbers then skip entries of other units, as on a node.
fn mixed(range: std::ops::Range<u64>) -> Vec<ExportEntry> {
    range
        .flat_map(|i| {
            let k = kubelet(i, OLD_BOOT, T0 + 2 * i);
            if i % 3 == 0 {
                vec![k, unit_entry(10_000 + i, "containerd.service", T0 + 2 * i + 1)]
            } else {
                vec![k]
            }
        })
        .collect()
}

/// Captures what the reader logs on this thread while `f` runs.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).to_string();
    (out, text)
}

#[test]
fn entries_vacuumed_before_they_were_read_are_counted_exactly_and_reading_goes_on() {
    let f = Fixture::new("jgap");
    let dir = f.journal_dir();
    f.write("system", mixed(0..10));
    let oldest = f.write_rotated("system", mixed(10..20));
    let older = f.write_rotated("system", mixed(20..30));
    let seq = seqnums(&dir);
    let kubelet_seq = |i: u64| seq[&format!("I1109 06:14:42.535854    1234 kubelet.go:{i}] entry {i}")];
    let units = ["kubelet.service".to_string()];

    // Whole, read across the rotations with the handle reopened after every
    // entry: numbers skipped by the unit filter are not losses.
    let counted = prometheus_client::metrics::counter::Counter::<u64>::default();
    let mut r = JournalReader::open(&dir, &units, &[]).unwrap();
    r.set_lost_counter(counted.clone());
    r.set_reopen_every(1);
    r.position(None, StartAt::Head).unwrap();
    let mut docs = Vec::new();
    while r.read_into(1, &mut normalizer(), &mut docs).unwrap().is_some() {}
    assert_eq!(doc_numbers(&docs), (0..30).collect::<Vec<_>>());
    assert_eq!((counted.get(), r.last_gap()), (0, None));

    // Read up to entry 3, then journald vacuums the two oldest files (the one
    // being read among them).
    let mut r = JournalReader::open(&dir, &units, &[]).unwrap();
    r.set_lost_counter(counted.clone());
    r.position(None, StartAt::Head).unwrap();
    let mut docs = Vec::new();
    let cursor3 = r.read_into(4, &mut normalizer(), &mut docs).unwrap().unwrap();
    // Caught up for a moment, as the source is when it follows: the handle
    // watches the directory from its first wait on.
    r.wait(Duration::from_millis(10)).unwrap();
    std::fs::remove_file(&oldest).unwrap();
    std::fs::remove_file(&older).unwrap();
    let ((), log) = logged(|| {
        r.wait(Duration::from_millis(200)).unwrap();
        while r.read_into(100, &mut normalizer(), &mut docs).unwrap().is_some() {}
    });
    // Reading went on with what the journal still holds.
    assert_eq!(doc_numbers(&docs), [0, 1, 2, 3].into_iter().chain(20..30).collect::<Vec<_>>());
    // Every number between entry 3 and entry 20 is gone: kubelet 4-19 and the
    // containerd entries among them.
    let (first, last) = (kubelet_seq(3) + 1, kubelet_seq(20) - 1);
    assert_eq!(last - first + 1, 16 + 6, "16 kubelet and 6 containerd entries");
    let gap = r.last_gap().expect("a gap").clone();
    assert_eq!((gap.first, gap.last, gap.lost), (first, last, last - first + 1));
    assert_eq!(gap.after, cursor3);
    assert_eq!(counted.get(), gap.lost);
    assert!(log.contains(&format!("first_seqnum_lost={first}")), "{log}");
    assert!(log.contains(&format!("last_seqnum_lost={last}")), "{log}");
    assert!(log.contains(&format!("entries_lost={}", gap.lost)), "{log}");
    assert!(log.contains(r#"units=["kubelet.service"]"#), "{log}");
    assert!(log.contains("WARN"), "{log}");

    // The same loss seen at start: the saved cursor's entry no longer exists.
    let counted2 = prometheus_client::metrics::counter::Counter::<u64>::default();
    let mut r = JournalReader::open(&dir, &units, &[]).unwrap();
    r.set_lost_counter(counted2.clone());
    assert_eq!(r.position(Some(&cursor3), StartAt::Tail).unwrap(), StartedFrom::CursorLost);
    let mut docs = Vec::new();
    while r.read_into(100, &mut normalizer(), &mut docs).unwrap().is_some() {}
    assert_eq!(doc_numbers(&docs), (20..30).collect::<Vec<_>>());
    let Gap { first: f2, last: l2, lost, .. } = r.last_gap().expect("a gap at start").clone();
    assert_eq!((f2, l2, lost, counted2.get()), (first, last, gap.lost, gap.lost));

    // A saved cursor that still exists: nothing is lost, nothing is counted.
    let counted3 = prometheus_client::metrics::counter::Counter::<u64>::default();
    let mut r = JournalReader::open(&dir, &units, &[]).unwrap();
    r.set_lost_counter(counted3.clone());
    let all = cursors(&dir, &["kubelet.service"]);
    assert_eq!(r.position(Some(&all[2]), StartAt::Tail).unwrap(), StartedFrom::Cursor);
    let mut docs = Vec::new();
    while r.read_into(100, &mut normalizer(), &mut docs).unwrap().is_some() {}
    assert_eq!(doc_numbers(&docs), (23..30).collect::<Vec<_>>());
    assert_eq!((counted3.get(), r.last_gap()), (0, None));
}

/// `config` written to the home's `gateway.yaml` with `keys` added to
/// `sources.journald`: keys the typed config does not carry, set here as the
/// in-process tests set them in the loaded section.
fn write_config_with_journald_keys(f: &Fixture, config: &GatewayConfig, keys: &[(&str, &str)]) -> PathBuf {
    let path = f.write_config(config);
    let extra: String = keys.iter().map(|(k, v)| format!("    {k}: {v}\n")).collect();
    let yaml = std::fs::read_to_string(&path).unwrap();
    assert_eq!(yaml.matches("\n  journald:\n").count(), 1, "{yaml}");
    std::fs::write(&path, yaml.replacen("\n  journald:\n", &format!("\n  journald:\n{extra}"), 1)).unwrap();
    path
}

/// The message of kubelet entry `i` (see [`kubelet`]).
fn kubelet_message(i: u64) -> String {
    format!("I1109 06:14:42.535854    1234 kubelet.go:{i}] entry {i}")
}

/// Elasticsearch unreachable while the reader, held back by backpressure, is
/// in the middle of a journal file; journald vacuums that file and the one
/// before it; once Elasticsearch is back, every entry still in the journal is
/// delivered once, and the entries removed unread are exactly the ones counted
/// lost and named in the warning.
///
/// Why the reader is where it is, whatever the timing: every entry before the
/// outage is delivered (the cursor says so) before the later files exist, and
/// while Elasticsearch is down backpressure lets the reader hold at most four
/// batches past them (one in flight, two in the channel, the one it is
/// sending: at most 40 entries, fewer when it read journal-remote's file while
/// it was being written). The test waits until it has read into the middle
/// file, so the vacuum always takes entries read and entries not yet read.
/// The binary runs in a process of its own: its counters are this test's alone.
#[tokio::test]
async fn journal_vacuumed_while_elasticsearch_is_down_loss_is_counted_exactly() {
    require_es().await;
    let f = Fixture::new("jgapes");
    let dir = f.journal_dir();
    f.write("system", (0..100).map(|i| kubelet(i, OLD_BOOT, T0 + i)).collect());
    let proxy = GatedProxy::to_url(&es_url()).await;
    proxy.open();
    let mut config = f.config(&proxy.url);
    config.admin = Admin::Listen(f.admin.clone());
    config.journald_mut().batch_size = Some(10);
    config.journald_mut().checkpoint_interval = Some("100ms".into());
    let path = write_config_with_journald_keys(
        &f,
        &config,
        &[
            ("max_in_flight_batches", "1"),
            // A deleted file stays readable while the handle has it open. The
            // handle is reopened every 25 entries (every 5,000 in a long
            // catch-up), so soon after reading resumes the vacuumed files are
            // out of its view and what it had not read of them is lost.
            ("reopen_every", "25"),
        ],
    );
    let mut gw = Gateway::start(&path, &f.admin, &f.log_path());
    let first = cursors(&dir, &["kubelet.service"]);
    let delivered = Duration::from_secs(120);
    wait_until("the cursor of entry 99", delivered, || f.cursor().as_deref() == Some(&first[99])).await;
    assert_eq!(count(&f.indices()).await, 100);

    // Elasticsearch unreachable; journald rotates twice: 0-99 and 100-199 are
    // archived, 200-299 are in the active file.
    proxy.cut();
    let failed_before = f.metric("klg_bulk_requests_total", "result=\"transport_error\"").await;
    let oldest = f.write_rotated("system", (100..200).map(|i| kubelet(i, OLD_BOOT, T0 + i)).collect());
    let older = f.write_rotated("system", (200..300).map(|i| kubelet(i, OLD_BOOT, T0 + i)).collect());
    let seq = seqnums(&dir);
    let kubelet_seq = |i: u64| seq[&kubelet_message(i)];
    f.wait_for_metric("klg_journald_entries_read_total", "", delivered, |n| n > 100.0).await;
    f.wait_for_metric("klg_bulk_requests_total", "result=\"transport_error\"", delivered, |n| n >= failed_before + 3.0)
        .await;
    assert_eq!(f.cursor().as_deref(), Some(first[99].as_str()), "the cursor moved while Elasticsearch was down");
    let read_before_vacuum = f.metric("klg_journald_entries_read_total", "").await;
    assert!(
        read_before_vacuum <= 140.0,
        "read {read_before_vacuum} entries with Elasticsearch down: more than 4 batches past entry 99"
    );

    // journald vacuums the two oldest files; the reader is inside the second.
    std::fs::remove_file(&oldest).unwrap();
    std::fs::remove_file(&older).unwrap();
    proxy.open();

    let last = cursors(&dir, &["kubelet.service"]).last().unwrap().clone();
    wait_until("the cursor of entry 299", Duration::from_secs(180), || f.cursor().as_deref() == Some(&last)).await;
    let warning = f
        .wait_for_log_line("warning of the lost entries", Duration::from_secs(10), |l| {
            l.contains("before the gateway read them")
        })
        .await;
    let lost = f.metric("klg_journald_entries_lost_total", "").await;
    let cursors_lost = f.metric("klg_journald_cursors_lost_total", "").await;
    assert!(gw.terminate().success(), "{}", f.log());

    let docs = all_docs(&f.indices()).await;
    let mut ids: Vec<&str> = docs.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), docs.len(), "a document stored twice under one _id");
    let mut stored: Vec<u64> = {
        let m: Vec<String> = docs.iter().map(|(_, d)| d["message"].as_str().unwrap().to_string()).collect();
        entry_numbers(&m)
    };
    stored.sort();
    stored.dedup();
    assert_eq!(stored.len(), docs.len(), "an entry stored twice under two _ids");
    assert_eq!(count(&f.indices()).await, docs.len() as u64);

    // What is missing is one run of entries, from past the last one the reader
    // had read before the vacuum to the end of the vacuumed file, and its
    // length is what was counted.
    let missing: Vec<u64> = (0..300).filter(|i| stored.binary_search(i).is_err()).collect();
    assert!(!missing.is_empty(), "nothing was lost: the reader had read every file before the vacuum");
    eprintln!("{read_before_vacuum} entries read before the vacuum; entries {}-199 lost", missing[0]);
    assert_eq!(missing, (missing[0]..200).collect::<Vec<_>>(), "stored {stored:?}");
    assert!(missing[0] as f64 >= read_before_vacuum, "entries read before the vacuum were lost: {missing:?}");
    assert_eq!(lost, missing.len() as f64, "missing {missing:?}");
    assert_eq!(cursors_lost, 0.0);

    // One warning, naming the first and last number lost.
    let (first_lost, last_lost) = (kubelet_seq(missing[0]), kubelet_seq(199));
    assert_eq!(last_lost - first_lost + 1, missing.len() as u64);
    assert!(warning.contains("WARN"), "{warning}");
    for field in [
        format!("first_seqnum_lost={first_lost} "),
        format!("last_seqnum_lost={last_lost} "),
        format!("entries_lost={} ", missing.len()),
    ] {
        assert!(warning.contains(&field), "no {field:?} in {warning}");
    }
    assert_eq!(f.log().matches("before the gateway read them").count(), 1, "{}", f.log());

    Reliability {
        fault: "journald: files vacuumed unread while Elasticsearch is down (loss counted by klg_journald_entries_lost_total)",
        sent: 300,
        acknowledged: 300,
        stored: stored.len() as u64,
        duplicated: 0,
        set_aside: 0,
    }
    .report();
    f.delete_indices().await;
}

/// This process's metrics (in-process runs have no admin listener).
fn own_metric(name: &str, labels: &str) -> f64 {
    metric_in(&telemetry::encode(), name, labels)
}

fn lost_cursors() -> f64 {
    own_metric("klg_journald_cursors_lost_total", "")
}

#[tokio::test]
async fn elasticsearch_down_nothing_lost_and_the_cursor_waits() {
    require_es().await;
    let es = EsInstance::start();
    let f = Fixture::new("jdown");
    f.write("a", (0..20).map(|i| kubelet(i, OLD_BOOT, T0 + i)).collect());
    let mut config = f.config(&es.url());
    config.journald_mut().checkpoint_interval = Some("100ms".into());
    let cfg = f.load(&config);
    let run = InProcess::start(&cfg);
    assert_eq!(wait_for_count_at(&es.url(), &f.indices(), 20, Duration::from_secs(120)).await, 20);
    let first = cursors(&f.journal_dir(), &["kubelet.service"]);
    wait_until("the cursor of entry 20", Duration::from_secs(10), || f.cursor().as_deref() == Some(&first[19])).await;

    es.stop();
    // Only this test's Elasticsearch goes down in this process: its failed
    // bulk requests are the attempts to deliver the new entries.
    let failed = || own_metric("klg_bulk_requests_total", "result=\"transport_error\"");
    let failed_before = failed();
    f.write("b", (20..50).map(|i| kubelet(i, OLD_BOOT, T0 + i)).collect());
    wait_until("several failed attempts to deliver the new entries", Duration::from_secs(60), || {
        failed() >= failed_before + 3.0
    })
    .await;
    assert_eq!(f.cursor().as_deref(), Some(first[19].as_str()), "the cursor moved while Elasticsearch was down");

    es.resume();
    assert_eq!(wait_for_count_at(&es.url(), &f.indices(), 50, Duration::from_secs(180)).await, 50);
    let all = cursors(&f.journal_dir(), &["kubelet.service"]);
    wait_until("the cursor of entry 50", Duration::from_secs(10), || f.cursor().as_deref() == Some(&all[49])).await;
    run.stop().await;
    assert_eq!(count_at(&es.url(), &f.indices()).await, 50);
}

#[tokio::test]
async fn kill_9_mid_stream_then_restart_ships_every_entry_exactly_once() {
    require_es().await;
    let f = Fixture::new("jkill");
    const N: u64 = 20_000;
    // Other units in between, as on a real node.
    f.write(
        "a",
        (0..N)
            .flat_map(|i| {
                let k = kubelet(i, OLD_BOOT, T0 + 2 * i);
                if i % 4 == 0 {
                    vec![k, unit_entry(N + i, "containerd.service", T0 + 2 * i + 1)]
                } else {
                    vec![k]
                }
            })
            .collect(),
    );
    let mut config = f.config(&es_url());
    config.admin = Admin::Listen(f.admin.clone());
    config.journald_mut().batch_size = Some(250);
    config.journald_mut().checkpoint_interval = Some("200ms".into());
    config.elasticsearch.documents_per_second = Some(2500);

    let mut gw = f.start(&config);
    let at_kill = wait_for_count(&f.indices(), 5_000, Duration::from_secs(120)).await;
    gw.kill9();
    let at_kill = at_kill.max(count(&f.indices()).await);
    assert!(at_kill < N, "killed too late: {at_kill}");
    let saved = f.cursor().expect("a cursor was saved before the kill");
    eprintln!("killed with {at_kill} entries in Elasticsearch; cursor {saved}");

    let gw = f.start(&config);
    let got = wait_for_count(&f.indices(), N, Duration::from_secs(120)).await;
    assert_eq!(got, N, "{}", f.log());
    // The cursor only moves past delivered entries: at the last one, nothing more is on its way.
    let all = cursors(&f.journal_dir(), &["kubelet.service"]);
    let index_of = |c: &str| all.iter().position(|x| x == c).expect("the saved cursor is a kubelet entry's");
    let last = all.last().unwrap().clone();
    wait_until("the final cursor", Duration::from_secs(60), || f.cursor().as_deref() == Some(last.as_str())).await;
    assert_eq!(count(&f.indices()).await, N);
    // Resumed from the saved cursor, not from the start: only entries after
    // it were read again (as 409 duplicates) — at most those Elasticsearch
    // held at the kill, plus the requests it was still indexing then (4 in
    // flight of 250). How far the cursor lagged depends on the machine's load,
    // so the bound comes from the cursor itself, not from a fixed number.
    let confirmed = index_of(&saved) + 1;
    assert!(confirmed > 0 && confirmed as u64 <= at_kill, "cursor at entry {confirmed}, {at_kill} stored at the kill");
    let duplicates = metric(&f.admin, "klg_documents_total", "outcome=\"duplicate\"").await;
    eprintln!("after restart: {duplicates} duplicates (409); the cursor had confirmed {confirmed}");
    assert!(
        duplicates <= (at_kill - confirmed as u64 + 1_000) as f64,
        "re-read {duplicates} entries, but only {} were stored after the saved cursor",
        at_kill - confirmed as u64
    );
    drop(gw);
    let stored = count(&f.indices()).await;
    // Every entry's _id comes from its cursor identity: more than N would be a duplicate.
    let duplicated = stored.saturating_sub(N);
    Reliability {
        fault: "journald: kill -9 mid-stream, restart from the saved cursor",
        sent: N,
        acknowledged: N,
        stored,
        duplicated,
        set_aside: 0,
    }
    .report();
    assert_eq!(stored, N);
    assert_eq!(duplicated, 0);
    assert_eq!(count(&format!("{}-deadletter-*", f.prefix)).await, 0);
    f.delete_indices().await;
}
