//! Container log messages → documents (DESIGN.md "The document shape", container).
//!
//! Hot path: one typed struct serialized straight into the body `Vec`; the
//! per-file parts of the `_id` hash are hashed once per file, not per line.

use std::borrow::Cow;
use std::path::Path;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::document::{Document, SourceKind};
use crate::index_pattern::IndexPattern;
use crate::sources::containers::file_id::{FileKey, Fingerprint};
use crate::sources::containers::metadata::Metadata;
use crate::sources::containers::reassembly::Record;

pub const DATASET: &str = "kubernetes.container";

/// Everything about one file that every document from it repeats.
pub struct FileContext {
    /// BLAKE3 state after the length-prefixed (node, dev, inode, fingerprint)
    /// parts of [`crate::document::document_id`]; the offset is added per line.
    id_prefix: blake3::Hasher,
    path: String,
    meta: Metadata,
}

pub struct ContainerNormalizer {
    cluster: String,
    host: String,
    node: String,
    index: IndexPattern,
    /// (day number, index name) of the last document: index names change once a day.
    index_cache: Option<(i64, String)>,
}

#[derive(Serialize)]
struct ContainerDocument<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    message: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'static str>,
    event: EventFields<'a>,
    orchestrator: Orchestrator<'a>,
    host: Named<'a>,
    kubernetes: Kubernetes<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<Container<'a>>,
    log: Log<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kube_log_gateway: Option<Gateway>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorField<'a>>,
}

#[derive(Serialize)]
struct EventFields<'a> {
    dataset: &'static str,
    kind: &'static str,
    id: &'a str,
    ingested: &'a str,
}

#[derive(Serialize)]
struct Orchestrator<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    cluster: Named<'a>,
}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
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

#[derive(Serialize)]
struct Log<'a> {
    file: LogFile<'a>,
    offset: u64,
}

#[derive(Serialize)]
struct LogFile<'a> {
    path: &'a str,
}

#[derive(Serialize)]
struct Gateway {
    flags: Vec<&'static str>,
}

#[derive(Serialize)]
struct ErrorField<'a> {
    message: &'a str,
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
        FileContext { id_prefix, path: path.to_string_lossy().into_owned(), meta }
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
        let mut flags = Vec::new();
        if rec.flags.cut {
            flags.push("cut");
        }
        if rec.flags.partial {
            flags.push("partial");
        }
        if rec.flags.invalid {
            flags.push("invalid_line");
        }
        if ctx.meta.name_truncated {
            flags.push("name_truncated");
        }
        let m = &ctx.meta;
        let doc = ContainerDocument {
            timestamp: &rec.time_text,
            message: String::from_utf8_lossy(&rec.message),
            stream: rec.stream.map(|s| s.as_str()),
            event: EventFields { dataset: DATASET, kind: "event", id: &id, ingested },
            orchestrator: Orchestrator { kind: "kubernetes", cluster: Named { name: &self.cluster } },
            host: Named { name: &self.host },
            kubernetes: Kubernetes {
                node: Named { name: &self.node },
                namespace: m.namespace.as_deref(),
                pod: (m.pod_name.is_some() || m.pod_uid.is_some())
                    .then(|| Pod { name: m.pod_name.as_deref(), uid: m.pod_uid.as_deref() }),
                container: m.container_name.as_deref().map(|name| Named { name }),
            },
            container: m.container_id.as_deref().map(|id| Container { id }),
            log: Log { file: LogFile { path: &ctx.path }, offset: rec.offset },
            kube_log_gateway: (!flags.is_empty()).then_some(Gateway { flags }),
            error: rec.error.as_deref().map(|message| ErrorField { message }),
        };
        let mut body = Vec::with_capacity(rec.message.len() + 480 + ctx.path.len());
        serde_json::to_writer(&mut body, &doc).expect("serializing to a Vec cannot fail");
        Document { index: self.index_for(rec.time), id, body: Bytes::from(body), source: SourceKind::Containers }
    }
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
