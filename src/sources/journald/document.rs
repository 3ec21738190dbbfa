//! Journal entries → documents (docs/fields.md, "journald"), and their index mapping.
//!
//! The reader thread fills a reusable [`RawEntry`] with the few fields the
//! document needs (as bytes, exactly as libsystemd returns them), and
//! [`JournaldNormalizer::normalize`] turns it into the final JSON `_source`.
//! This is the hot path of the node role: borrowed strings, no
//! `serde_json::Value`, the index name formatted once a day, and the body
//! written by hand like the container source's: constant keys as bytes, the
//! strings through the shared writer's SIMD escaping. Through serde, sonic-rs
//! escaped each of the ~40 keys of every document anew (docs/decisions.md §14).
//! A unit test pins the bytes the serde structs wrote.

use std::borrow::Cow;

use serde_json::{json, Value};

use super::entry::RawEntry;
use super::klog::{parse_klog, syslog_severity};
use crate::document::arena::BodyArena;
use crate::document::ecs::Orchestrator;
use crate::document::id::document_id;
use crate::document::index_pattern::IndexPattern;
use crate::document::json::{self as json_writer, write_str as json_string, Object};
use crate::document::mapping::IndexMapping;
use crate::document::time::{self, DayIndex};
use crate::document::{Document, SourceKind};

/// The unit whose entries get `event.dataset: kubelet`; every other unit or
/// identifier gets `journald`, so a Kibana filter on the dataset still means
/// "the kubelet" when `units` lists more services.
pub const KUBELET_UNIT: &[u8] = b"kubelet.service";

/// Cluster and node names exist only as the two JSON members below, formatted
/// once: nothing can change one without the other.
pub struct JournaldNormalizer {
    /// `,"orchestrator":{…}`, the same for every document.
    orchestrator_json: Vec<u8>,
    /// `,"kubernetes":{"node":{"name":…}}`, the same for every document.
    kubernetes_json: Vec<u8>,
    /// The body is written here, then copied into `arena`.
    scratch: Vec<u8>,
    /// Bodies are copied out of `scratch` into this chunk and split off.
    arena: BodyArena,
    index: DayIndex,
    /// `@timestamp` of the last entry: consecutive entries mostly share their
    /// second, so only the microseconds are written anew (see [`Timestamp`]).
    timestamp: Timestamp,
}

/// RFC 3339 UTC with microseconds (`2025-11-09T06:14:42.535854Z`, as
/// [`time::rfc3339_micros`]), the part up to the second formatted once per second.
#[derive(Default)]
struct Timestamp {
    second: Option<i64>,
    text: String,
}

impl Timestamp {
    fn format(&mut self, when: chrono::DateTime<chrono::Utc>) -> &str {
        let second = when.timestamp();
        if self.second != Some(second) {
            self.text = time::rfc3339_micros(when);
            self.second = Some(second);
        }
        // ".ffffffZ": the last 8 bytes, rewritten in place.
        let micros = when.timestamp_subsec_micros().min(999_999);
        let len = self.text.len();
        let mut tail = *b".000000Z";
        let mut m = micros;
        for d in tail[1..7].iter_mut().rev() {
            *d = b'0' + (m % 10) as u8;
            m /= 10;
        }
        self.text.truncate(len - 8);
        self.text.push_str(std::str::from_utf8(&tail).expect("ASCII"));
        &self.text
    }
}

/// The parts of a cursor (`s=…;i=…;b=…;m=…;t=…;x=…`) that identify the entry
/// itself rather than its place in one file: boot id, monotonic and realtime
/// stamps and the xor hash of its fields. journald copies entries from
/// /run/log/journal to /var/log/journal with new sequence numbers, and
/// libsystemd treats two entries equal on these parts as one; so does `_id`.
fn cursor_identity(cursor: &str) -> [&str; 4] {
    let mut out = [""; 4];
    // `cursor.split(';')` in one pass over the bytes: the splitting iterator
    // was ~2 % of the reading CPU. Every prefix is ASCII, so the slices below
    // fall on character boundaries.
    let b = cursor.as_bytes();
    let mut start = 0;
    while start <= b.len() {
        let end = memchr::memchr(b';', &b[start..]).map_or(b.len(), |i| start + i);
        if end - start >= 2 && b[start + 1] == b'=' {
            let slot = match b[start] {
                b'b' => Some(0),
                b'm' => Some(1),
                b't' => Some(2),
                b'x' => Some(3),
                _ => None,
            };
            if let Some(slot) = slot {
                out[slot] = &cursor[start + 2..end];
            }
        }
        start = end + 1;
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

/// `b` as text (`None` if empty). Valid UTF-8 — nearly always — is checked with
/// simdutf8 (SIMD for the message, `str::from_utf8` below 64 bytes, as in the
/// container source); `from_utf8_lossy` walks it in chunks and was 6 % of the
/// reading CPU (docs/decisions.md).
fn lossy(b: &[u8]) -> Option<Cow<'_, str>> {
    if b.is_empty() {
        return None;
    }
    Some(match simdutf8::basic::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    })
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

/// A scratch buffer larger than this (a huge message) is not kept for the next entry.
const SCRATCH_KEPT_BYTES: usize = 1 << 20;

impl JournaldNormalizer {
    pub fn new(cluster: String, node: String, index: IndexPattern) -> Self {
        let mut orchestrator_json = b",\"orchestrator\":".to_vec();
        json_writer::write(&mut orchestrator_json, &Orchestrator::kubernetes(&cluster)).expect("serializes");
        let mut kubernetes_json = b",\"kubernetes\":{\"node\":{\"name\":".to_vec();
        json_string(&mut kubernetes_json, &node);
        kubernetes_json.extend_from_slice(b"}}");
        JournaldNormalizer {
            orchestrator_json,
            kubernetes_json,
            scratch: Vec::new(),
            arena: BodyArena::new(),
            index: DayIndex::new(index),
            timestamp: Timestamp::default(),
        }
    }

    /// One entry → one document. `event.ingested` is not written here: the
    /// sink stamps it when the document is sent to Elasticsearch.
    pub fn normalize(&mut self, e: &RawEntry) -> Document {
        let id = entry_id(&e.machine_id, &e.cursor);
        let when = time::from_usec(e.realtime_usec);
        let timestamp = self.timestamp.format(when);

        // Binary-safe message: the bytes libsystemd returned, decoded lossily;
        // a NUL or invalid UTF-8 is flagged so that nobody trusts it blindly.
        let message = lossy(&e.message);
        let binary = matches!(message, Some(Cow::Owned(_))) || memchr::memchr(0, &e.message).is_some();
        let klog = message.as_deref().and_then(parse_klog);
        let priority = std::str::from_utf8(&e.priority).ok().and_then(|p| p.trim().parse::<u8>().ok());
        let severity = priority.and_then(syslog_severity);
        let level = match (&klog, severity) {
            (Some(k), _) => Some(k.level),
            (None, s) => s,
        };
        let appname = lossy(&e.identifier);
        let pid = parse_u64(&e.pid);
        let comm = lossy(&e.comm);
        let hostname = lossy(&e.hostname);

        // Members in the order, and with the omissions, of the serde structs
        // this replaced (pinned by `documents_are_pinned_byte_for_byte`).
        let mut b = std::mem::take(&mut self.scratch);
        b.clear();
        b.extend_from_slice(b"{\"@timestamp\":\"");
        b.extend_from_slice(timestamp.as_bytes());
        b.push(b'"');
        if let Some(message) = &message {
            b.extend_from_slice(b",\"message\":");
            json_string(&mut b, message);
        }
        b.extend_from_slice(if e.unit == KUBELET_UNIT {
            b",\"event\":{\"dataset\":\"kubelet\",\"kind\":\"event\",\"id\":\""
        } else {
            b",\"event\":{\"dataset\":\"journald\",\"kind\":\"event\",\"id\":\""
        });
        b.extend_from_slice(id.as_bytes());
        b.extend_from_slice(b"\"}");
        b.extend_from_slice(&self.orchestrator_json);
        if let Some(hostname) = &hostname {
            b.extend_from_slice(b",\"host\":{\"name\":");
            json_string(&mut b, hostname);
            b.push(b'}');
        }
        b.extend_from_slice(&self.kubernetes_json);

        b.extend_from_slice(b",\"log\":");
        let mut log = Object::open(&mut b);
        if let Some(level) = level {
            let out = log.key(b"\"level\":\"");
            out.extend_from_slice(level.as_bytes());
            out.push(b'"');
        }
        if priority.is_some() || appname.is_some() {
            let mut syslog = Object::open(log.key(b"\"syslog\":"));
            if let Some(p) = priority {
                syslog.key(b"\"priority\":").extend_from_slice(itoa::Buffer::new().format(p).as_bytes());
            }
            if let Some(name) = severity {
                let out = syslog.key(b"\"severity\":{\"name\":\"");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\"}");
            }
            if let Some(appname) = &appname {
                json_string(syslog.key(b"\"appname\":"), appname);
            }
            syslog.close();
        }
        if let Some(k) = &klog {
            let out = log.key(b"\"origin\":{\"file\":{\"name\":");
            json_string(out, k.file);
            out.extend_from_slice(b",\"line\":");
            out.extend_from_slice(itoa::Buffer::new().format(k.line).as_bytes());
            out.extend_from_slice(b"}}");
        }
        log.close();

        if pid.is_some() || comm.is_some() || klog.is_some() {
            b.extend_from_slice(b",\"process\":");
            let mut process = Object::open(&mut b);
            if let Some(pid) = pid {
                process.key(b"\"pid\":").extend_from_slice(itoa::Buffer::new().format(pid).as_bytes());
            }
            if let Some(comm) = &comm {
                json_string(process.key(b"\"name\":"), comm);
            }
            if let Some(k) = &klog {
                let out = process.key(b"\"thread\":{\"id\":");
                out.extend_from_slice(itoa::Buffer::new().format(k.thread_id).as_bytes());
                out.push(b'}');
            }
            process.close();
        }
        if let Some(unit) = lossy(&e.unit) {
            b.extend_from_slice(b",\"systemd\":{\"unit\":");
            json_string(&mut b, &unit);
            b.push(b'}');
        }
        b.extend_from_slice(b",\"journald\":{");
        if let Some(boot_id) = lossy(&e.boot_id) {
            b.extend_from_slice(b"\"boot_id\":");
            json_string(&mut b, &boot_id);
            b.push(b',');
        }
        if let Some(machine_id) = lossy(&e.machine_id) {
            b.extend_from_slice(b"\"machine_id\":");
            json_string(&mut b, &machine_id);
            b.push(b',');
        }
        b.extend_from_slice(b"\"cursor\":");
        json_string(&mut b, &e.cursor);
        b.push(b'}');
        if binary {
            b.extend_from_slice(b",\"kube_log_gateway\":{\"flags\":[\"message_binary\"]}");
        }
        b.push(b'}');
        let body = self.arena.carve(&b);
        if b.capacity() > SCRATCH_KEPT_BYTES {
            b = Vec::new();
        }
        self.scratch = b;
        Document { index: self.index.index_for(when), id, body, source: SourceKind::Journald }
    }
}

/// The journald index mapping: the journald document's own fields (docs/journald.md).
pub fn mapping(pattern: &IndexPattern) -> IndexMapping {
    IndexMapping::new(pattern.clone(), mapping_properties(), Value::Array(Vec::new()))
}

fn mapping_properties() -> Value {
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
#[path = "document_tests.rs"]
mod tests;
