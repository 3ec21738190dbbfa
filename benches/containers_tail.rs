//! Throughput of the container tailer: read + parse + reassemble + normalize,
//! Elasticsearch out of the loop (documents are built, then dropped).
//!
//! ```text
//! cargo bench --bench containers_tail -- [--dir DIR] [--mb 500] [--files 8]
//! ```
//!
//! Generates `--mb` MB of CRI logs in `--dir` (kept for the next run; ~5% of the
//! messages are split into P/F pieces, stdout and stderr interleaved, ~140 bytes per
//! line like Fluent Bit's benchmark), tails them to the end once, and prints
//! MB/s, lines/s and the process's peak RSS (VmHWM).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube_log_gateway::document::index_pattern::IndexPattern;
use kube_log_gateway::sources::containers::config::ContainersConfig;
use kube_log_gateway::sources::containers::document::ContainerNormalizer;
use kube_log_gateway::sources::containers::pipeline::Batch;
use kube_log_gateway::sources::containers::tailer::Tailer;

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// Writes `bytes` of CRI lines to `path`; returns the number of physical lines.
fn generate(path: &Path, bytes: u64, seed: u64) -> u64 {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let words = [
        "GET",
        "/api/v1/namespaces",
        "200",
        "user=alice",
        "latency_ms=12",
        "component=web",
        "level=info",
        "msg=\"request served\"",
        "trace_id=4bf92f3577b34da6",
        "bytes=5120",
        "POST",
        "/healthz",
        "retry=0",
    ];
    let (mut written, mut lines, mut x) = (0u64, 0u64, seed.wrapping_mul(6364136223846793005).wrapping_add(1));
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut line = String::with_capacity(512);
    while written < bytes {
        let r = next();
        let nanos = lines % 1_000_000_000;
        let ts = format!("2026-01-02T03:{:02}:{:02}.{nanos:09}Z", (lines / 60_000) % 60, (lines / 1000) % 60);
        let mut msg = String::new();
        let n = 6 + (r % 10) as usize;
        for i in 0..n {
            msg.push_str(words[((r >> (i * 4)) as usize + i) % words.len()]);
            msg.push(' ');
        }
        let stream = if r % 7 == 0 { "stderr" } else { "stdout" };
        line.clear();
        if r % 20 == 1 {
            let cut = msg.len() / 2;
            line.push_str(&format!("{ts} {stream} P {}\n{ts} {stream} F {}\n", &msg[..cut], &msg[cut..]));
            lines += 2;
        } else {
            line.push_str(&format!("{ts} {stream} F {msg}\n"));
            lines += 1;
        }
        out.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
    }
    out.flush().unwrap();
    lines
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        })
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary
    // without it: then only a 2 MB smoke run in a temporary directory.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let tmp = tempfile::tempdir().unwrap();
    let dir = match (smoke, arg("--dir")) {
        (true, _) => tmp.path().to_path_buf(),
        (false, Some(d)) => PathBuf::from(d),
        (false, None) => PathBuf::from("/tmp/klg-bench-containers"),
    };
    let mb: u64 = if smoke { 2 } else { arg("--mb").and_then(|v| v.parse().ok()).unwrap_or(500) };
    let files: u64 = arg("--files").and_then(|v| v.parse().ok()).unwrap_or(8);
    std::fs::create_dir_all(&dir).unwrap();
    let per_file = mb * 1_000_000 / files;
    let mut total_bytes = 0;
    for i in 0..files {
        let path = dir.join(format!("bench-{i}_default_app-{ID}.log"));
        let ok = std::fs::metadata(&path).is_ok_and(|m| m.len() >= per_file && m.len() < per_file + 4096);
        if !ok {
            eprintln!("generating {}", path.display());
            generate(&path, per_file, i + 1);
        }
        total_bytes += std::fs::metadata(&path).unwrap().len();
    }
    let cfg = ContainersConfig {
        paths: vec![format!("{}/*.log", dir.display())],
        poll_interval: Duration::from_secs(3600),
        ..ContainersConfig::default()
    };
    let normalizer = ContainerNormalizer::new(
        "bench".into(),
        "bench-host".into(),
        "bench-node".into(),
        IndexPattern::parse("containers-%Y.%m.%d").unwrap(),
    );
    let mut tailer = Tailer::new(cfg, normalizer, None);
    let start = Instant::now();
    let (mut docs, mut body_bytes, mut batches) = (0u64, 0u64, 0u64);
    loop {
        let mut batch = Batch::default();
        let busy = tailer.step(&mut batch, Instant::now(), false);
        docs += batch.docs.len() as u64;
        body_bytes += batch.docs.iter().map(|d| d.body.len() as u64).sum::<u64>();
        batches += 1;
        drop(batch);
        if !busy {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let m = kube_log_gateway::sources::containers::metrics::metrics();
    let lines = m.lines_read.get();
    assert_eq!(m.bytes_read.get(), total_bytes, "read everything");
    println!(
        "containers tail: {:.0} MB in {secs:.2} s = {:.1} MB/s, {lines} lines = {:.0} lines/s, {docs} documents = {:.0} docs/s \
         ({:.0} MB of JSON, {batches} steps), peak RSS {} MiB",
        total_bytes as f64 / 1e6,
        total_bytes as f64 / 1e6 / secs,
        lines as f64 / secs,
        docs as f64 / secs,
        body_bytes as f64 / 1e6,
        peak_rss_kib() / 1024,
    );
}
