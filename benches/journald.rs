//! journald read benchmark (docs/benchmarks.md, "journald"): entries read from
//! real journal files, filtered by unit and normalized to the final JSON
//! document bytes, Elasticsearch out of the loop; beside `journalctl -o json`
//! with the same filter on the same directory, in the same run.
//!
//! ```text
//! cargo bench --bench journald -- generate DIR 1000000   # once: journal files via systemd-journal-remote
//! /usr/bin/time -v target/release/deps/journald-<hash> run DIR
//! target/release/deps/journald-<hash> ours DIR 3           # only the gateway's reader, 3 times
//! REOPEN_EVERY=5000 target/release/deps/journald-<hash> ours DIR 1   # with that `reopen_every`
//! ```
//!
//! `ours` prints, per pass, entries/s and the CPU seconds per million entries of
//! this process (utime + stime from /proc/self/stat): on a shared machine the
//! CPU per entry is the figure that compares, the rate depends on the load.
//!
//! Without arguments and without `--bench` (that is, under `cargo test
//! --benches`), a smoke run: the same `generate` and `run` on a few thousand
//! entries in a temporary directory, checking that both readers read every
//! kubelet entry.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use kube_log_gateway::document::index_pattern::IndexPattern;
use kube_log_gateway::sources::journald::config::StartAt;
use kube_log_gateway::sources::journald::document::JournaldNormalizer;
use kube_log_gateway::sources::journald::export_format::{journal_remote, ExportEntry};
use kube_log_gateway::sources::journald::reader::JournalReader;

const KUBELET_LINES: &[&str] = &[
    "I1109 06:14:42.535854    2345 kubelet.go:2409] \"SyncLoop (PLEG): event for pod\" pod=\"kube-system/coredns-5d78c9869d-x7x2k\" event={\"ID\":\"5b1c0e4e-7c1a-4a8e-9a43-2f0c9d1e6b11\",\"Type\":\"ContainerStarted\"}",
    "I1109 06:14:42.601233    2345 prober.go:107] \"Probe failed\" probeType=\"Readiness\" pod=\"default/web-7d4b9c8f6d-abcde\" podUID=\"0b7a1f6e-1c2d-4e5f-8a9b-0c1d2e3f4a5b\" containerName=\"web\" probeResult=\"failure\" output=\"Get \\\"http://10.244.1.17:8080/ready\\\": dial tcp 10.244.1.17:8080: connect: connection refused\"",
    "W1109 06:14:43.000101    2345 reflector.go:535] k8s.io/client-go/informers/factory.go:150: failed to list *v1.Service: Get \"https://10.96.0.1:443/api/v1/services?limit=500\": dial tcp 10.96.0.1:443: i/o timeout",
    "E1109 06:14:43.100200    2345 pod_workers.go:1300] \"Error syncing pod, skipping\" err=\"failed to \\\"StartContainer\\\" for \\\"app\\\" with CrashLoopBackOff: \\\"back-off 5m0s restarting failed container=app\\\"\" pod=\"shop/api-6c9f7d8b5-q2w3e\"",
];
const OTHER_UNITS: &[&str] = &["containerd.service", "systemd-networkd.service", "sshd.service", "cron.service"];

/// Entries of the smoke run: a few thousand (one file), so that it takes
/// seconds, not the minutes of a real run.
const SMOKE_ENTRIES: u64 = 5_000;

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this binary without it.
    let bench = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["generate", dir, n] => generate(Path::new(dir), n.parse().expect("entry count")),
        ["run", dir] => {
            run(Path::new(dir));
        }
        ["ours", dir, rounds] => {
            for _ in 0..rounds.parse::<u32>().expect("rounds") {
                let cpu0 = cpu_secs();
                let (entries, bytes, secs) = ours(Path::new(dir));
                let cpu = cpu_secs() - cpu0;
                println!(
                    "ours: {entries} entries, {:.1} MB of documents, {secs:.2} s → {:.0} entries/s, {:.2} CPU-s per million entries, {}, load {}",
                    bytes as f64 / 1e6,
                    entries as f64 / secs,
                    cpu / entries as f64 * 1e6,
                    vm_hwm(),
                    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
                );
            }
        }
        [] if !bench => smoke(),
        _ => eprintln!("usage: journald generate DIR COUNT | journald run DIR | journald ours DIR ROUNDS"),
    }
}

/// The benchmark path on a small journal: generate, then run, and check that
/// every kubelet entry (80 % of them) was read, by us and by journalctl.
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), SMOKE_ENTRIES);
    let kubelet = (0..SMOKE_ENTRIES).filter(|i| i % 5 != 4).count() as u64;
    let entries = run(dir.path());
    assert_eq!(entries, kubelet, "the smoke run read every kubelet entry");
    println!("smoke run: {entries} of {SMOKE_ENTRIES} entries were kubelet.service's, all read");
}

/// COUNT entries, 80 % kubelet.service (klog lines), 20 % other units, in
/// files of 100,000 entries each, as journald's rotation would leave them.
fn generate(dir: &Path, count: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let boot = "0123456789abcdef0123456789abcdef";
    let t0 = 1_762_668_882_000_000u64;
    let per_file = 100_000;
    let started = Instant::now();
    for file in 0..count.div_ceil(per_file) {
        let range = file * per_file..((file + 1) * per_file).min(count);
        let entries = range.map(|i| {
            let e = ExportEntry::new(t0 + i * 1000, 5_000_000 + i * 1000, boot)
                .field("_MACHINE_ID", "fedcba9876543210fedcba9876543210")
                .field("_HOSTNAME", "node-1.example.internal")
                .field("_TRANSPORT", "stdout")
                .field("_UID", "0")
                .field("_GID", "0")
                .field("_CAP_EFFECTIVE", "1ffffffffff")
                .field("_SELINUX_CONTEXT", "unconfined\n")
                .field("SYSLOG_FACILITY", "3");
            if i % 5 == 4 {
                let unit = OTHER_UNITS[(i / 5) as usize % OTHER_UNITS.len()];
                e.field("_SYSTEMD_UNIT", unit)
                    .field("_SYSTEMD_CGROUP", format!("/system.slice/{unit}"))
                    .field("SYSLOG_IDENTIFIER", unit.trim_end_matches(".service"))
                    .field("_PID", "812")
                    .field("_COMM", unit.trim_end_matches(".service"))
                    .field("PRIORITY", "6")
                    .field("MESSAGE", format!("{unit}: routine message number {i}"))
            } else {
                e.field("_SYSTEMD_UNIT", "kubelet.service")
                    .field("_SYSTEMD_CGROUP", "/system.slice/kubelet.service")
                    .field("_SYSTEMD_SLICE", "system.slice")
                    .field("SYSLOG_IDENTIFIER", "kubelet")
                    .field("_PID", "2345")
                    .field("_COMM", "kubelet")
                    .field("_EXE", "/usr/bin/kubelet")
                    .field("_CMDLINE", "/usr/bin/kubelet --config=/var/lib/kubelet/config.yaml --kubeconfig=/etc/kubernetes/kubelet.conf")
                    .field("PRIORITY", "6")
                    .field("MESSAGE", format!("{} n={i}", KUBELET_LINES[i as usize % KUBELET_LINES.len()]))
            }
        });
        journal_remote(&dir.join(format!("bench-{file:03}.journal")), entries).unwrap();
    }
    println!("generated {count} entries in {:.1} s into {}", started.elapsed().as_secs_f64(), dir.display());
}

/// Reads `dir` twice with journalctl and twice with the gateway's reader,
/// prints the figures, and returns the number of entries read.
fn run(dir: &Path) -> u64 {
    // journalctl first, so that both read from a warm page cache.
    let (jc_entries, jc_secs) = journalctl(dir);
    let (jc2_entries, jc2_secs) = journalctl(dir);
    let (entries, bytes, secs) = ours(dir);
    let (entries2, _, secs2) = ours(dir);
    assert_eq!(entries, jc_entries, "both must read the same entries");
    assert_eq!((entries2, jc2_entries), (entries, jc_entries));
    let jc_best = jc_secs.min(jc2_secs);
    let best = secs.min(secs2);
    println!(
        "journalctl -o json: {jc_entries} entries, {:.2} s / {:.2} s → {:.0} entries/s (best)",
        jc_secs,
        jc2_secs,
        jc_entries as f64 / jc_best
    );
    println!(
        "kube-log-gateway:   {entries} entries, {:.1} MB of documents, {:.2} s / {:.2} s → {:.0} entries/s (best)",
        bytes as f64 / 1e6,
        secs,
        secs2,
        entries as f64 / best
    );
    println!("ratio: {:.2}x journalctl", jc_best / best);
    println!("memory of this process (peak, and current after the runs): {}", vm_hwm());
    entries
}

fn journalctl(dir: &Path) -> (u64, f64) {
    let started = Instant::now();
    let mut child = Command::new("journalctl")
        .arg("-D")
        .arg(dir)
        .args(["-o", "json", "--no-pager", "_SYSTEMD_UNIT=kubelet.service"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Count lines on the fly instead of buffering: like `> /dev/null`, but checked.
    use std::io::Read;
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    assert!(child.wait().unwrap().success(), "journalctl failed");
    (lines, started.elapsed().as_secs_f64())
}

fn ours(dir: &Path) -> (u64, u64, f64) {
    let started = Instant::now();
    let mut reader = JournalReader::open(dir, &["kubelet.service".to_string()], &[]).unwrap();
    // REOPEN_EVERY=N: the `reopen_every` key's value for this pass (default: the key's default).
    if let Some(n) = std::env::var("REOPEN_EVERY").ok().and_then(|v| v.parse().ok()) {
        reader.set_reopen_every(n);
    }
    reader.position(None, StartAt::Head).unwrap();
    let mut normalizer =
        JournaldNormalizer::new("bench".into(), "node-1".into(), IndexPattern::parse("kubelet-%Y.%m.%d").unwrap());
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut docs = Vec::with_capacity(1000);
    // The same batch size and loop as the source; the batch is dropped where
    // the source would hand it to the sink.
    while reader.read_into(1000, &mut normalizer, &mut docs).unwrap().is_some() {
        entries += docs.len() as u64;
        bytes += docs.iter().map(|d| (d.body.len() + d.id.len() + d.index.len()) as u64).sum::<u64>();
        docs.clear();
    }
    (entries, bytes, started.elapsed().as_secs_f64())
}

/// CPU seconds (user + system) this process used so far.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces): state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("VmHWM") || l.starts_with("RssAnon") || l.starts_with("RssFile"))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
