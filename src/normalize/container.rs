//! Container log messages → documents (DESIGN.md "The document shape", container).
//!
//! Hot path. Everything that is the same for every line of a file (cluster,
//! host, node, pod, container, path) is serialized once per file from typed
//! structs into a JSON fragment, and the per-file parts of the `_id` hash are
//! hashed once per file. Per line only the time, message, stream, id, offset and
//! flags are written, with an escaper that copies runs of plain bytes whole:
//! serde_json's byte-at-a-time string escaping was a quarter of the CPU time in
//! the benchmark (docs/benchmarks.md, "containers").

use std::path::Path;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::document::{Document, SourceKind};
use crate::index_pattern::IndexPattern;
use crate::normalize::ecs::{Named, Orchestrator};
use crate::sources::containers::file_id::{FileKey, Fingerprint};
use crate::sources::containers::metadata::Metadata;
use crate::sources::containers::reassembly::Record;

pub const DATASET: &str = "kubernetes.container";

/// Everything about one file that every document from it repeats.
pub struct FileContext {
    /// BLAKE3 state after the length-prefixed (node, dev, inode, fingerprint)
    /// parts of [`crate::document::document_id`]; the offset is added per line.
    id_prefix: blake3::Hasher,
    /// `"orchestrator":{…},"host":{…},"kubernetes":{…},"container":{…}` (no braces around).
    fixed: Vec<u8>,
    /// The file path as a JSON string, quotes included.
    path_json: Vec<u8>,
    name_truncated: bool,
}

pub struct ContainerNormalizer {
    cluster: String,
    host: String,
    node: String,
    index: IndexPattern,
    /// (day number, index name) of the last document: index names change once a day.
    index_cache: Option<(i64, String)>,
}

/// The per-file part of every document.
#[derive(Serialize)]
struct FileFields<'a> {
    orchestrator: Orchestrator<'a>,
    host: Named<'a>,
    kubernetes: Kubernetes<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<Container<'a>>,
}

#[derive(Serialize)]
struct Kubernetes<'a> {
    node: Named<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<Pod<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<Named<'a>>,
}

#[derive(Serialize)]
struct Pod<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
}

#[derive(Serialize)]
struct Container<'a> {
    id: &'a str,
}

impl ContainerNormalizer {
    pub fn new(cluster: String, host: String, node: String, index: IndexPattern) -> Self {
        ContainerNormalizer { cluster, host, node, index, index_cache: None }
    }

    pub fn file_context(&self, key: FileKey, fingerprint: Fingerprint, path: &Path, meta: Metadata) -> FileContext {
        let mut id_prefix = blake3::Hasher::new();
        for part in [self.node.as_bytes(), &key.dev.to_le_bytes(), &key.ino.to_le_bytes(), &fingerprint.to_bytes()] {
            id_prefix.update(&(part.len() as u64).to_le_bytes());
            id_prefix.update(part);
        }
        let m = &meta;
        let fields = FileFields {
            orchestrator: Orchestrator::kubernetes(&self.cluster),
            host: Named { name: &self.host },
            kubernetes: Kubernetes {
                node: Named { name: &self.node },
                namespace: m.namespace.as_deref(),
                pod: (m.pod_name.is_some() || m.pod_uid.is_some())
                    .then_some(Pod { name: m.pod_name.as_deref(), uid: m.pod_uid.as_deref() }),
                container: m.container_name.as_deref().map(|name| Named { name }),
            },
            container: m.container_id.as_deref().map(|id| Container { id }),
        };
        let mut fixed = serde_json::to_vec(&fields).expect("serializing to a Vec cannot fail");
        fixed.pop();
        fixed.remove(0);
        let path_json = serde_json::to_vec(&path.to_string_lossy()).expect("serializing to a Vec cannot fail");
        FileContext { id_prefix, fixed, path_json, name_truncated: meta.name_truncated }
    }

    /// The `_id` of the message starting at `offset`:
    /// `document_id(&[node, dev, inode, fingerprint, offset])`.
    pub fn id(ctx: &FileContext, offset: u64) -> String {
        use base64::Engine;
        let mut h = ctx.id_prefix.clone();
        h.update(&8u64.to_le_bytes());
        h.update(&offset.to_le_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h.finalize().as_bytes()[..16])
    }

    fn index_for(&mut self, time: DateTime<Utc>) -> String {
        let day = time.timestamp().div_euclid(86_400);
        match &self.index_cache {
            Some((d, name)) if *d == day => name.clone(),
            _ => {
                let name = self.index.index_for(time);
                self.index_cache = Some((day, name.clone()));
                name
            }
        }
    }

    /// One message → one document. `ingested` is the current time, formatted
    /// once per read by the caller.
    pub fn normalize(&mut self, ctx: &FileContext, rec: &Record<'_>, ingested: &str) -> Document {
        let id = Self::id(ctx, rec.offset);
        let message = String::from_utf8_lossy(&rec.message);
        let mut b = Vec::with_capacity(message.len() + ctx.fixed.len() + ctx.path_json.len() + 256);
        b.extend_from_slice(b"{\"@timestamp\":");
        json_string(&mut b, &rec.time_text);
        b.extend_from_slice(b",\"message\":");
        json_string(&mut b, &message);
        if let Some(stream) = rec.stream {
            b.extend_from_slice(b",\"stream\":\"");
            b.extend_from_slice(stream.as_str().as_bytes());
            b.push(b'"');
        }
        b.extend_from_slice(b",\"event\":{\"dataset\":\"");
        b.extend_from_slice(DATASET.as_bytes());
        b.extend_from_slice(b"\",\"kind\":\"event\",\"id\":\"");
        b.extend_from_slice(id.as_bytes());
        b.extend_from_slice(b"\",\"ingested\":");
        json_string(&mut b, ingested);
        b.extend_from_slice(b"},");
        b.extend_from_slice(&ctx.fixed);
        b.extend_from_slice(b",\"log\":{\"file\":{\"path\":");
        b.extend_from_slice(&ctx.path_json);
        b.extend_from_slice(b"},\"offset\":");
        b.extend_from_slice(itoa::Buffer::new().format(rec.offset).as_bytes());
        b.push(b'}');
        let flags = [
            (rec.flags.cut, "cut"),
            (rec.flags.partial, "partial"),
            (rec.flags.invalid, "invalid_line"),
            (ctx.name_truncated, "name_truncated"),
        ];
        if flags.iter().any(|(on, _)| *on) {
            b.extend_from_slice(b",\"kube_log_gateway\":{\"flags\":[");
            for (i, (_, name)) in flags.iter().filter(|(on, _)| *on).enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                b.push(b'"');
                b.extend_from_slice(name.as_bytes());
                b.push(b'"');
            }
            b.extend_from_slice(b"]}");
        }
        if let Some(error) = &rec.error {
            b.extend_from_slice(b",\"error\":{\"message\":");
            json_string(&mut b, error);
            b.push(b'}');
        }
        b.push(b'}');
        Document { index: self.index_for(rec.time), id, body: Bytes::from(b), source: SourceKind::Containers }
    }
}

/// Appends `s` as a JSON string (quotes included), escaping exactly what JSON
/// requires (`"`, `\`, control characters). Eight bytes at a time are checked
/// for anything to escape, and runs of plain bytes are copied whole.
pub fn json_string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            if !needs_escape(u64::from_le_bytes(chunk.try_into().expect("8 bytes"))) {
                i += 8;
                continue;
            }
        }
        let c = bytes[i];
        if c < 0x20 || c == b'"' || c == b'\\' {
            out.extend_from_slice(&bytes[start..i]);
            match c {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(c >> 4) as usize]);
                    out.push(HEX[(c & 0xf) as usize]);
                }
            }
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any of the 8 bytes in `w` is below 0x20, `"` or `\` (may say yes
/// wrongly, never no wrongly: the caller then checks byte by byte).
#[inline]
fn needs_escape(w: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero_in = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let control = w.wrapping_sub(LO * 0x20) & !w & HI;
    control | zero_in(w ^ (LO * b'"' as u64)) | zero_in(w ^ (LO * b'\\' as u64)) != 0
}

/// `event.ingested` text for now.
pub fn ingested_now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Mapping of the container document's own fields (see docs/containers.md).
pub fn mapping_properties() -> Value {
    let kw = json!({ "type": "keyword", "ignore_above": 1024 });
    json!({
        "stream": kw,
        "kubernetes": { "properties": {
            "namespace": kw,
            "pod": { "properties": { "name": kw, "uid": kw } },
            "container": { "properties": { "name": kw } }
        }},
        "container": { "properties": { "id": kw } },
        "log": { "properties": {
            "file": { "properties": { "path": kw } },
            "offset": { "type": "long" }
        }},
        "error": { "properties": { "message": { "type": "text" } } }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::document_id;
    use crate::sources::containers::format::{parse_cri, Stream};
    use crate::sources::containers::reassembly::Flags;

    fn normalizer() -> ContainerNormalizer {
        ContainerNormalizer::new(
            "c1".into(),
            "h1".into(),
            "node-a".into(),
            IndexPattern::parse("containers-%Y.%m.%d").unwrap(),
        )
    }

    #[test]
    fn json_string_escapes_like_serde_json() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain ascii text that is long enough".into(),
            "quote \" and backslash \\ and tab\t".into(),
            "ünïcödé ✓ 日本語 \u{7f}".into(),
        ];
        cases.extend((0u8..0x20).map(|c| format!("abcdefg{}hijklmnop", c as char)));
        for n in 0..20 {
            cases.push(format!("{}\"{}", "x".repeat(n), "y".repeat(n)));
        }
        for s in cases {
            let mut out = Vec::new();
            json_string(&mut out, &s);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn id_matches_document_id() {
        let n = normalizer();
        let key = FileKey { dev: 7, ino: 42 };
        let fp = Fingerprint { len: 10, hash: [3; 16] };
        let ctx = n.file_context(key, fp, Path::new("/x.log"), Metadata::default());
        let want = document_id(&[
            b"node-a",
            &7u64.to_le_bytes(),
            &42u64.to_le_bytes(),
            &fp.to_bytes(),
            &1234u64.to_le_bytes(),
        ]);
        assert_eq!(ContainerNormalizer::id(&ctx, 1234), want);
    }

    #[test]
    fn document_fields() {
        let mut n = normalizer();
        let meta = Metadata {
            namespace: Some("shop".into()),
            pod_name: Some("web".into()),
            pod_uid: Some("u-1".into()),
            container_name: Some("nginx".into()),
            container_id: Some("abc".into()),
            name_truncated: false,
        };
        let ctx = n.file_context(
            FileKey { dev: 1, ino: 2 },
            Fingerprint { len: 1, hash: [0; 16] },
            Path::new("/l/a.log"),
            meta,
        );
        let line = parse_cri(b"2026-01-02T03:04:05.123456789Z stderr F hello \"world\"").unwrap();
        let rec = Record {
            offset: 77,
            time_text: line.time_text,
            time: line.time,
            stream: Some(Stream::Stderr),
            message: line.message,
            flags: Flags { cut: true, ..Flags::default() },
            error: None,
        };
        let doc = n.normalize(&ctx, &rec, "2026-01-02T03:04:06.000Z");
        assert_eq!(doc.index, "containers-2026.01.02");
        let v: Value = serde_json::from_slice(&doc.body).unwrap();
        assert_eq!(
            v,
            json!({
                "@timestamp": "2026-01-02T03:04:05.123456789Z",
                "message": "hello \"world\"",
                "stream": "stderr",
                "event": { "dataset": "kubernetes.container", "kind": "event", "id": doc.id, "ingested": "2026-01-02T03:04:06.000Z" },
                "orchestrator": { "type": "kubernetes", "cluster": { "name": "c1" } },
                "host": { "name": "h1" },
                "kubernetes": { "node": { "name": "node-a" }, "namespace": "shop",
                    "pod": { "name": "web", "uid": "u-1" }, "container": { "name": "nginx" } },
                "container": { "id": "abc" },
                "log": { "file": { "path": "/l/a.log" }, "offset": 77 },
                "kube_log_gateway": { "flags": ["cut"] }
            })
        );
    }
}
