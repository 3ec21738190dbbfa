//! Container log messages → documents (docs/fields.md, "container"), and
//! their index mapping.
//!
//! Hot path. Everything that is the same for every line of a file (cluster,
//! host, node, pod, container, path) is serialized once per file from typed
//! structs into a JSON fragment, and the per-file parts of the `_id` are hashed
//! once per file. Per line only the time, message, stream, id, offset and flags
//! are written around it, with the shared writer's SIMD string escaping.

use std::path::Path;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

use super::file_id::{FileKey, Fingerprint};
use super::metadata::Metadata;
use super::reassembly::Record;
use crate::document::ecs::{Named, Orchestrator};
use crate::document::id::IdBuilder;
use crate::document::index_pattern::IndexPattern;
use crate::document::json::{self, write_str as json_string};
use crate::document::mapping::IndexMapping;
use crate::document::time::DayIndex;
use crate::document::{Document, SourceKind};

pub const DATASET: &str = "kubernetes.container";

/// Everything about one file that every document from it repeats.
pub struct FileContext {
    /// The id after the (node, dev, inode, fingerprint) parts; the offset is
    /// added per line.
    id_prefix: IdBuilder,
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
    index: DayIndex,
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
        ContainerNormalizer { cluster, host, node, index: DayIndex::new(index) }
    }

    pub fn file_context(&self, key: FileKey, fingerprint: Fingerprint, path: &Path, meta: Metadata) -> FileContext {
        let mut id_prefix = IdBuilder::new();
        id_prefix
            .part(self.node.as_bytes())
            .part(&key.dev.to_le_bytes())
            .part(&key.ino.to_le_bytes())
            .part(&fingerprint.to_bytes());
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
        let mut fixed = Vec::new();
        json::write(&mut fixed, &fields).expect("serializing to a Vec cannot fail");
        fixed.pop();
        fixed.remove(0);
        let mut path_json = Vec::new();
        json_string(&mut path_json, &path.to_string_lossy());
        FileContext { id_prefix, fixed, path_json, name_truncated: meta.name_truncated }
    }

    /// The `_id` of the message starting at `offset`:
    /// `document_id(&[node, dev, inode, fingerprint, offset])`.
    pub fn id(ctx: &FileContext, offset: u64) -> String {
        let mut id = ctx.id_prefix.clone();
        id.part(&offset.to_le_bytes());
        id.finish()
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
        Document { index: self.index.index_for(rec.time), id, body: Bytes::from(b), source: SourceKind::Containers }
    }
}

/// The container index mapping: the container document's own fields (docs/containers.md).
pub fn mapping(pattern: &IndexPattern) -> IndexMapping {
    IndexMapping::new(pattern.clone(), mapping_properties(), Value::Array(Vec::new()))
}

fn mapping_properties() -> Value {
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
    use crate::document::id::document_id;
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
