//! Journal entries → documents (DESIGN.md "The document shape", journald).
//!
//! The reader thread fills a reusable [`RawEntry`] with the few fields the
//! document needs (as bytes, exactly as libsystemd returns them), and
//! [`JournaldNormalizer::normalize`] turns it into the final JSON `_source`.
//! This is the hot path of the node role: typed structs, borrowed strings, no
//! `serde_json::Value`, and the index name and timestamp formatted without
//! per-entry allocations beyond the body itself.

use std::borrow::Cow;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::document::{document_id, Document, SourceKind};
use crate::index_pattern::IndexPattern;
use crate::normalize::ecs::{Named, Orchestrator};

/// The fields of one journal entry that the document uses. Buffers are reused
/// from entry to entry; an empty buffer means "field absent".
#[derive(Debug, Default, Clone)]
pub struct RawEntry {
    /// `__REALTIME_TIMESTAMP`: microseconds since the Unix epoch.
    pub realtime_usec: u64,
    /// `__CURSOR`, as libsystemd formats it.
    pub cursor: String,
    pub message: Vec<u8>,
    pub priority: Vec<u8>,
    pub unit: Vec<u8>,
    pub identifier: Vec<u8>,
    pub pid: Vec<u8>,
    pub comm: Vec<u8>,
    pub hostname: Vec<u8>,
    pub boot_id: Vec<u8>,
    pub machine_id: Vec<u8>,
}

impl RawEntry {
    pub fn clear(&mut self) {
        self.realtime_usec = 0;
        self.cursor.clear();
        for b in [
            &mut self.message,
            &mut self.priority,
            &mut self.unit,
            &mut self.identifier,
            &mut self.pid,
            &mut self.comm,
            &mut self.hostname,
            &mut self.boot_id,
            &mut self.machine_id,
        ] {
            b.clear();
        }
    }

    /// Takes one `NAME=value` datum as `sd_journal_enumerate_data` returns it.
    /// Only the first occurrence of a field counts (journald allows repeats).
    #[inline]
    pub fn set_field(&mut self, data: &[u8]) {
        let Some(eq) = data.iter().position(|&b| b == b'=') else { return };
        let (name, value) = (&data[..eq], &data[eq + 1..]);
        let slot = match name {
            b"MESSAGE" => &mut self.message,
            b"PRIORITY" => &mut self.priority,
            b"_SYSTEMD_UNIT" => &mut self.unit,
            b"SYSLOG_IDENTIFIER" => &mut self.identifier,
            b"_PID" => &mut self.pid,
            b"_COMM" => &mut self.comm,
            b"_HOSTNAME" => &mut self.hostname,
            b"_BOOT_ID" => &mut self.boot_id,
            b"_MACHINE_ID" => &mut self.machine_id,
            _ => return,
        };
        if slot.is_empty() {
            slot.extend_from_slice(value);
        }
    }
}

/// The unit whose entries get `event.dataset: kubelet`; every other unit or
/// identifier gets `journald`, so a Kibana filter on the dataset still means
/// "the kubelet" when `units` lists more services.
pub const KUBELET_UNIT: &[u8] = b"kubelet.service";

pub struct JournaldNormalizer {
    pub cluster: String,
    pub node: String,
    pub index: IndexPattern,
    /// (day number since the epoch, index name) of the last entry: one
    /// day's entries share one name, so it is formatted once.
    day_cache: Option<(u64, String)>,
}

#[derive(Serialize)]
struct JournaldDocument<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Cow<'a, str>>,
    event: EventFields<'a>,
    orchestrator: Orchestrator<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<Named<'a>>,
    kubernetes: Kubernetes<'a>,
    log: LogFields<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<Process<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    systemd: Option<Systemd<'a>>,
    journald: Journald<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kube_log_gateway: Option<GatewayFlags>,
}

#[derive(Serialize)]
struct EventFields<'a> {
    dataset: &'static str,
    kind: &'static str,
    id: &'a str,
    ingested: &'a str,
}

#[derive(Serialize)]
struct Kubernetes<'a> {
    node: Named<'a>,
}

#[derive(Serialize)]
struct LogFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    syslog: Option<Syslog<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<Origin<'a>>,
}

#[derive(Serialize)]
struct Syslog<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    appname: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Severity {
    name: &'static str,
}

#[derive(Serialize)]
struct Origin<'a> {
    file: OriginFile<'a>,
}

#[derive(Serialize)]
struct OriginFile<'a> {
    name: &'a str,
    line: u32,
}

#[derive(Serialize)]
struct Process<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread: Option<Thread>,
}

#[derive(Serialize)]
struct Thread {
    id: u64,
}

#[derive(Serialize)]
struct Systemd<'a> {
    unit: Cow<'a, str>,
}

#[derive(Serialize)]
struct Journald<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    boot_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    machine_id: Option<Cow<'a, str>>,
    cursor: &'a str,
}

#[derive(Serialize)]
struct GatewayFlags {
    flags: [&'static str; 1],
}

/// The klog header of a kubelet line:
/// `I1109 06:14:42.535854    1234 file.go:123] msg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KlogHeader<'a> {
    pub level: &'static str,
    pub thread_id: u64,
    pub file: &'a str,
    pub line: u32,
}

/// Parses the klog/glog header at the start of `line`; `None` if it is not
/// one (the whole line then stays as it is, and PRIORITY gives the level).
pub fn parse_klog(line: &str) -> Option<KlogHeader<'_>> {
    let b = line.as_bytes();
    let level = match *b.first()? {
        b'I' => "info",
        b'W' => "warning",
        b'E' => "error",
        b'F' => "fatal",
        _ => return None,
    };
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    // Lmmdd hh:mm:ss.
    if !(digits(1..5)
        && b.get(5) == Some(&b' ')
        && digits(6..8)
        && b.get(8) == Some(&b':')
        && digits(9..11)
        && b.get(11) == Some(&b':')
        && digits(12..14)
        && b.get(14) == Some(&b'.'))
    {
        return None;
    }
    let mut i = 15;
    let frac = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=9).contains(&frac) {
        return None;
    }
    i += frac;
    let spaces = b[i..].iter().take_while(|&&c| c == b' ').count();
    if spaces == 0 {
        return None;
    }
    i += spaces;
    let tid_len = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if tid_len == 0 || b.get(i + tid_len) != Some(&b' ') {
        return None;
    }
    let thread_id = line[i..i + tid_len].parse().ok()?;
    i += tid_len + 1;
    // file:line]
    let rest = &line[i..];
    let close = rest.find(']')?;
    let (file, num) = rest[..close].rsplit_once(':')?;
    if file.is_empty() || file.contains(' ') || num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(KlogHeader { level, thread_id, file, line: num.parse().ok()? })
}

/// syslog severity names for PRIORITY 0–7 (RFC 5424 keywords, ECS style).
pub fn syslog_severity(priority: u8) -> Option<&'static str> {
    const NAMES: [&str; 8] = ["emerg", "alert", "crit", "error", "warning", "notice", "info", "debug"];
    NAMES.get(priority as usize).copied()
}

/// The parts of a cursor (`s=…;i=…;b=…;m=…;t=…;x=…`) that identify the entry
/// itself rather than its place in one file: boot id, monotonic and realtime
/// stamps and the xor hash of its fields. journald copies entries from
/// /run/log/journal to /var/log/journal with new sequence numbers, and
/// libsystemd treats two entries equal on these parts as one; so does `_id`.
fn cursor_identity(cursor: &str) -> [&str; 4] {
    let mut out = [""; 4];
    for part in cursor.split(';') {
        let slot = match part.get(..2) {
            Some("b=") => 0,
            Some("m=") => 1,
            Some("t=") => 2,
            Some("x=") => 3,
            _ => continue,
        };
        out[slot] = &part[2..];
    }
    out
}

/// The `_id` of a journal entry: hash of (machine id, entry identity from
/// the cursor). Falls back to the whole cursor if it has none of those parts.
pub fn entry_id(machine_id: &[u8], cursor: &str) -> String {
    let [b, m, t, x] = cursor_identity(cursor);
    if b.is_empty() && m.is_empty() && t.is_empty() && x.is_empty() {
        return document_id(&[machine_id, cursor.as_bytes()]);
    }
    document_id(&[machine_id, b.as_bytes(), m.as_bytes(), t.as_bytes(), x.as_bytes()])
}

/// `2026-11-09T06:14:42.535854Z` from microseconds since the epoch.
pub fn format_usec(usec: u64, out: &mut String) {
    let secs = usec / 1_000_000;
    let micros = usec % 1_000_000;
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    use std::fmt::Write;
    let _ = write!(out, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", sod / 3600, (sod / 60) % 60, sod % 60);
}

/// Howard Hinnant's days → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn lossy(b: &[u8]) -> Option<Cow<'_, str>> {
    (!b.is_empty()).then(|| String::from_utf8_lossy(b))
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

impl JournaldNormalizer {
    pub fn new(cluster: String, node: String, index: IndexPattern) -> Self {
        JournaldNormalizer { cluster, node, index, day_cache: None }
    }

    fn index_for(&mut self, usec: u64) -> String {
        let day = usec / 86_400_000_000;
        match &self.day_cache {
            Some((d, name)) if *d == day => name.clone(),
            _ => {
                let time = DateTime::<Utc>::from_timestamp_micros(usec as i64).unwrap_or_default();
                let name = self.index.index_for(time);
                self.day_cache = Some((day, name.clone()));
                name
            }
        }
    }

    /// One entry → one document. `ingested` is the RFC 3339 time the entry was read.
    pub fn normalize(&mut self, e: &RawEntry, ingested: &str) -> Document {
        let id = entry_id(&e.machine_id, &e.cursor);
        let mut timestamp = String::with_capacity(27);
        format_usec(e.realtime_usec, &mut timestamp);

        // Binary-safe message: the bytes libsystemd returned, decoded lossily;
        // a NUL or invalid UTF-8 is flagged so that nobody trusts it blindly.
        let message = lossy(&e.message);
        let binary = matches!(message, Some(Cow::Owned(_))) || e.message.contains(&0);
        let klog = message.as_deref().and_then(parse_klog);
        let priority = std::str::from_utf8(&e.priority).ok().and_then(|p| p.trim().parse::<u8>().ok());
        let severity = priority.and_then(syslog_severity);
        let level = match (&klog, severity) {
            (Some(k), _) => Some(k.level),
            (None, s) => s,
        };
        let appname = lossy(&e.identifier);
        let syslog = (priority.is_some() || appname.is_some()).then(|| Syslog {
            priority,
            severity: severity.map(|name| Severity { name }),
            appname,
        });
        let pid = parse_u64(&e.pid);
        let comm = lossy(&e.comm);
        let process = (pid.is_some() || comm.is_some() || klog.is_some()).then(|| Process {
            pid,
            name: comm,
            thread: klog.map(|k| Thread { id: k.thread_id }),
        });
        let hostname = lossy(&e.hostname);
        let doc = JournaldDocument {
            timestamp: &timestamp,
            message: message.clone(),
            event: EventFields {
                dataset: if e.unit == KUBELET_UNIT { "kubelet" } else { "journald" },
                kind: "event",
                id: &id,
                ingested,
            },
            orchestrator: Orchestrator::kubernetes(&self.cluster),
            host: hostname.as_deref().map(|name| Named { name }),
            kubernetes: Kubernetes { node: Named { name: &self.node } },
            log: LogFields {
                level,
                syslog,
                origin: klog.map(|k| Origin { file: OriginFile { name: k.file, line: k.line } }),
            },
            process,
            systemd: lossy(&e.unit).map(|unit| Systemd { unit }),
            journald: Journald { boot_id: lossy(&e.boot_id), machine_id: lossy(&e.machine_id), cursor: &e.cursor },
            kube_log_gateway: binary.then_some(GatewayFlags { flags: ["message_binary"] }),
        };
        let body = serde_json::to_vec(&doc).expect("a journald document serializes");
        Document { index: self.index_for(e.realtime_usec), id, body: Bytes::from(body), source: SourceKind::Journald }
    }
}

/// Mapping of the journald document's own fields (docs/journald.md).
pub fn mapping_properties() -> Value {
    let kw = json!({ "type": "keyword", "ignore_above": 1024 });
    json!({
        "log": { "properties": {
            "syslog": { "properties": {
                "priority": { "type": "long" },
                "severity": { "properties": { "name": kw } },
                "appname": kw
            }},
            "origin": { "properties": { "file": { "properties": {
                "name": kw,
                "line": { "type": "long" }
            }}}}
        }},
        "process": { "properties": {
            "pid": { "type": "long" },
            "name": kw,
            "thread": { "properties": { "id": { "type": "long" } } }
        }},
        "systemd": { "properties": { "unit": kw } },
        "journald": { "properties": {
            "boot_id": kw,
            "machine_id": kw,
            "cursor": kw
        }}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(message: &[u8]) -> RawEntry {
        let mut e = RawEntry {
            realtime_usec: 1_762_668_882_535_854,
            cursor: "s=cc32;i=1;b=0123456789abcdef0123456789abcdef;m=3e8;t=643235499a5ae;x=dd9e383ca2c1c3fe".into(),
            ..Default::default()
        };
        for f in [
            &b"_SYSTEMD_UNIT=kubelet.service"[..],
            b"PRIORITY=6",
            b"_PID=42",
            b"_COMM=kubelet",
            b"SYSLOG_IDENTIFIER=kubelet",
            b"_HOSTNAME=node-1",
            b"_BOOT_ID=0123456789abcdef0123456789abcdef",
            b"_MACHINE_ID=fedcba9876543210fedcba9876543210",
        ] {
            e.set_field(f);
        }
        let mut m = b"MESSAGE=".to_vec();
        m.extend_from_slice(message);
        e.set_field(&m);
        e
    }

    fn normalize(e: &RawEntry) -> (Document, Value) {
        let mut n =
            JournaldNormalizer::new("prod".into(), "node-a".into(), IndexPattern::parse("kubelet-%Y.%m.%d").unwrap());
        let doc = n.normalize(e, "2026-11-09T06:15:00.000Z");
        let v = serde_json::from_slice(&doc.body).unwrap();
        (doc, v)
    }

    #[test]
    fn klog_lines_table() {
        // (line, level, file, line number, thread id)
        type Want = Option<(&'static str, &'static str, u32, u64)>;
        let table: &[(&str, Want)] = &[
            ("I1109 06:14:42.535854    1234 file.go:123] msg", Some(("info", "file.go", 123, 1234))),
            (
                "W0101 00:00:00.000001       1 kubelet.go:2409] Pod sandbox changed",
                Some(("warning", "kubelet.go", 2409, 1)),
            ),
            (
                "E1231 23:59:59.999999 4294967 pod_workers.go:1301] \"Error syncing pod\" err=\"x\"",
                Some(("error", "pod_workers.go", 1301, 4294967)),
            ),
            ("F0615 12:00:00.5 77 server.go:9] boom", Some(("fatal", "server.go", 9, 77))),
            (
                "I1109 06:14:42.535854 1234 pkg/kubelet/kubelet.go:1] nested path",
                Some(("info", "pkg/kubelet/kubelet.go", 1, 1234)),
            ),
            ("I1109 06:14:42.535854 1234 file.go:123]", Some(("info", "file.go", 123, 1234))),
            ("D1109 06:14:42.535854 1234 file.go:123] not a klog level", None),
            ("I1109 06:14:42 1234 file.go:123] no fraction", None),
            ("I1109 06:14:42.535854 file.go:123] no thread id", None),
            ("I1109 06:14:42.535854 1234 file.go] no line", None),
            ("I1109 06:14:42.535854 1234 file.go:12a] bad line", None),
            ("Info: starting kubelet", None),
            ("", None),
            ("I110", None),
        ];
        for (line, want) in table {
            let got = parse_klog(line).map(|k| (k.level, k.file, k.line, k.thread_id));
            assert_eq!(got, *want, "{line:?}");
        }
    }

    #[test]
    fn fields_of_a_kubelet_entry() {
        let (doc, v) = normalize(&entry(b"I1109 06:14:42.535854    1234 file.go:123] msg"));
        assert_eq!(doc.index, "kubelet-2025.11.09");
        assert_eq!(doc.source, SourceKind::Journald);
        assert_eq!(v["@timestamp"], "2025-11-09T06:14:42.535854Z");
        assert_eq!(v["message"], "I1109 06:14:42.535854    1234 file.go:123] msg");
        assert_eq!(v["event"]["dataset"], "kubelet");
        assert_eq!(v["event"]["kind"], "event");
        assert_eq!(v["event"]["id"], doc.id.as_str());
        assert_eq!(v["event"]["ingested"], "2026-11-09T06:15:00.000Z");
        assert_eq!(v["orchestrator"]["cluster"]["name"], "prod");
        assert_eq!(v["host"]["name"], "node-1");
        assert_eq!(v["kubernetes"]["node"]["name"], "node-a");
        assert_eq!(v["log"]["level"], "info");
        assert_eq!(v["log"]["syslog"]["priority"], 6);
        assert_eq!(v["log"]["syslog"]["severity"]["name"], "info");
        assert_eq!(v["log"]["syslog"]["appname"], "kubelet");
        assert_eq!(v["log"]["origin"]["file"]["name"], "file.go");
        assert_eq!(v["log"]["origin"]["file"]["line"], 123);
        assert_eq!(v["process"]["pid"], 42);
        assert_eq!(v["process"]["name"], "kubelet");
        assert_eq!(v["process"]["thread"]["id"], 1234);
        assert_eq!(v["systemd"]["unit"], "kubelet.service");
        assert_eq!(v["journald"]["boot_id"], "0123456789abcdef0123456789abcdef");
        assert_eq!(v["journald"]["machine_id"], "fedcba9876543210fedcba9876543210");
        assert!(v["journald"]["cursor"].as_str().unwrap().starts_with("s=cc32;i=1;"));
        assert!(v.get("kube_log_gateway").is_none());
    }

    #[test]
    fn klog_level_wins_over_priority_and_priority_is_the_fallback() {
        let mut e = entry(b"E1109 06:14:42.535854 1 a.go:1] failed");
        e.priority = b"6".to_vec();
        assert_eq!(normalize(&e).1["log"]["level"], "error");
        for (p, name) in
            [("0", "emerg"), ("2", "crit"), ("3", "error"), ("4", "warning"), ("5", "notice"), ("7", "debug")]
        {
            let mut e = entry(b"plain text");
            e.priority = p.as_bytes().to_vec();
            let (_, v) = normalize(&e);
            assert_eq!(v["log"]["level"], name);
            assert!(v["log"].get("origin").is_none());
            assert!(v["process"].get("thread").is_none());
        }
    }

    #[test]
    fn binary_and_multiline_messages() {
        let (_, v) = normalize(&entry(b"line one\nline two\n"));
        assert_eq!(v["message"], "line one\nline two\n");
        assert!(v.get("kube_log_gateway").is_none());
        let (_, v) = normalize(&entry(b"bad \xff\xfe byte"));
        assert_eq!(v["message"], "bad \u{fffd}\u{fffd} byte");
        assert_eq!(v["kube_log_gateway"]["flags"], json!(["message_binary"]));
        let (_, v) = normalize(&entry(b"nul\0inside"));
        assert_eq!(v["message"], "nul\u{0}inside");
        assert_eq!(v["kube_log_gateway"]["flags"], json!(["message_binary"]));
    }

    #[test]
    fn other_units_and_missing_fields() {
        let mut e = RawEntry { realtime_usec: 1, cursor: "s=a;i=2".into(), ..Default::default() };
        e.set_field(b"_SYSTEMD_UNIT=containerd.service");
        let (doc, v) = normalize(&e);
        assert_eq!(doc.index, "kubelet-1970.01.01");
        assert_eq!(v["@timestamp"], "1970-01-01T00:00:00.000001Z");
        assert_eq!(v["event"]["dataset"], "journald");
        assert!(v.get("message").is_none() && v.get("host").is_none() && v.get("process").is_none());
        assert!(v["log"].get("level").is_none());
    }

    #[test]
    fn id_depends_on_entry_identity_not_on_the_sequence_number() {
        let a = entry_id(b"m1", "s=aaa;i=1;b=b1;m=3e8;t=64;x=ff");
        assert_eq!(a, entry_id(b"m1", "s=bbb;i=99;b=b1;m=3e8;t=64;x=ff"));
        assert_ne!(a, entry_id(b"m2", "s=aaa;i=1;b=b1;m=3e8;t=64;x=ff"));
        assert_ne!(a, entry_id(b"m1", "s=aaa;i=1;b=b1;m=3e8;t=64;x=fe"));
    }

    #[test]
    fn timestamps_format_like_chrono() {
        for usec in [0u64, 951_782_400_000_000, 1_762_668_882_535_854, 4_102_444_799_999_999] {
            let mut s = String::new();
            format_usec(usec, &mut s);
            let want = DateTime::<Utc>::from_timestamp_micros(usec as i64)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            assert_eq!(s, want);
        }
    }
}
