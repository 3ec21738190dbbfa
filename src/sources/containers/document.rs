//! Container log messages → documents (docs/fields.md, "container"), and
//! their index mapping.
//!
//! Hot path. Everything that is the same for every line of a file (cluster,
//! host, node, pod, container, path) is serialized once per file from typed
//! structs into a JSON fragment, and the per-file parts of the `_id` are hashed
//! once per file. Per line only the time, message, stream, id, offset and flags
//! are written around it, with the shared writer's SIMD string escaping.
//!
//! With the Kubernetes metadata cache on, the per-file fragment also carries
//! the pod's labels, owners, image and IP. It is rebuilt when the cache's
//! epoch moved and the pod's metadata differ from what the fragment holds;
//! the check per line is one atomic load. A pod the cache does not know
//! leaves the fragment as the path makes it and flags the line
//! `metadata_missing`; nothing waits for the API.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use super::file_id::{FileKey, Fingerprint};
use super::kubernetes::metrics::metrics as kube_metrics;
use super::kubernetes::pod_cache::Controller;
use super::kubernetes::{PodCache, PodMetadata};
use super::metadata::Metadata;
use super::reassembly::Record;
use crate::document::arena::BodyArena;
use crate::document::ecs::{DataStream, Named, Namespace, Orchestrator};
use crate::document::id::IdBuilder;
use crate::document::index_pattern::IndexPattern;
use crate::document::json::{self, write_str as json_string};
use crate::document::mapping::IndexMapping;
use crate::document::time::DayIndex;
use crate::document::{Document, SourceKind};

/// `event.dataset` and `data_stream.dataset`: the name Elastic's Kubernetes
/// integration gives container logs, so that views built for it find ours.
pub const DATASET: &str = "kubernetes.container_logs";

/// `data_stream` of every container document. Namespace `kube_log_gateway`, not
/// Elastic Agent's `default`: the alias must never be a Fleet data stream's name.
const DATA_STREAM: &[u8] =
    br#""data_stream":{"type":"logs","dataset":"kubernetes.container_logs","namespace":"kube_log_gateway"}"#;

/// Everything about one file that every document from it repeats.
pub struct FileContext {
    /// The id after the (node, dev, inode, fingerprint) parts; the offset is
    /// added per line.
    id_prefix: IdBuilder,
    /// `"orchestrator":{…},"host":{…},"kubernetes":{…},"container":{…}` (no braces around).
    /// Rebuilt in place when the pod's metadata change.
    fixed: RefCell<Vec<u8>>,
    /// The file path as a JSON string, quotes included.
    path_json: Vec<u8>,
    name_truncated: bool,
    /// Present when the metadata cache is on.
    kube: Option<KubeState>,
}

/// What a file's fragment was built from, to know when to rebuild it.
struct KubeState {
    path_meta: Metadata,
    /// The cache's epoch at the last look-up (`u64::MAX`: never looked).
    epoch: Cell<u64>,
    /// What the fragment shows; None: the pod is not known (yet).
    pod: RefCell<Option<PodMetadata>>,
}

pub struct ContainerNormalizer {
    cluster: String,
    host: String,
    node: String,
    index: DayIndex,
    kube: Option<Arc<PodCache>>,
    /// Where each body is written before it is copied out at its exact size.
    /// sonic-rs reserves the worst-case escaped length (6× the string) before
    /// writing a string, so a body written straight into its own `Vec` kept
    /// about twice the memory it needs for as long as it was in flight.
    scratch: Vec<u8>,
    /// Bodies are copied out of `scratch` into this chunk and split off.
    arena: BodyArena,
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

type Map = BTreeMap<String, String>;

#[derive(Serialize)]
struct Kubernetes<'a> {
    node: Named<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<Pod<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<Named<'a>>,
    #[serde(skip_serializing_if = "is_empty")]
    labels: Option<&'a Map>,
    #[serde(skip_serializing_if = "is_empty")]
    annotations: Option<&'a Map>,
    #[serde(skip_serializing_if = "is_empty")]
    namespace_labels: Option<&'a Map>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replicaset: Option<Named<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment: Option<Named<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    statefulset: Option<Named<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    daemonset: Option<Named<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<Named<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cronjob: Option<Named<'a>>,
}

fn named(name: Option<&String>) -> Option<Named<'_>> {
    name.map(|n| Named { name: n.as_str() })
}

fn is_empty(m: &Option<&Map>) -> bool {
    m.is_none_or(|m| m.is_empty())
}

#[derive(Serialize)]
struct Pod<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
}

#[derive(Serialize)]
struct Container<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<Named<'a>>,
}

impl ContainerNormalizer {
    pub fn new(cluster: String, host: String, node: String, index: IndexPattern) -> Self {
        ContainerNormalizer {
            cluster,
            host,
            node,
            index: DayIndex::new(index),
            kube: None,
            scratch: Vec::new(),
            arena: BodyArena::new(),
        }
    }

    /// Enrich documents from the metadata cache.
    pub fn with_kube(mut self, cache: Option<Arc<PodCache>>) -> Self {
        self.kube = cache;
        self
    }

    pub fn file_context(&self, key: FileKey, fingerprint: Fingerprint, path: &Path, meta: Metadata) -> FileContext {
        let mut id_prefix = IdBuilder::new();
        id_prefix
            .part(self.node.as_bytes())
            .part(&key.dev.to_le_bytes())
            .part(&key.ino.to_le_bytes())
            .part(&fingerprint.to_bytes());
        let fixed = RefCell::new(self.fixed(&meta, None));
        let mut path_json = Vec::new();
        json_string(&mut path_json, &path.to_string_lossy());
        let name_truncated = meta.name_truncated;
        let kube = self.kube.is_some().then(|| KubeState {
            path_meta: meta,
            epoch: Cell::new(u64::MAX),
            pod: RefCell::new(None),
        });
        FileContext { id_prefix, fixed, path_json, name_truncated, kube }
    }

    /// The per-file fragment: what the path says, and what the API says about its pod.
    fn fixed(&self, m: &Metadata, api: Option<&PodMetadata>) -> Vec<u8> {
        let pod = api.map(|a| &*a.pod);
        let controller = pod.and_then(|p| p.controller.as_ref());
        let owner = |want: fn(&Controller) -> Option<&String>| named(controller.and_then(want));
        let image = pod.zip(m.container_name.as_deref()).and_then(|(p, c)| p.image(c)).map(|name| Named { name });
        let ip = pod.and_then(|p| p.ip.as_deref());
        let fields = FileFields {
            orchestrator: Orchestrator::kubernetes(&self.cluster),
            host: Named { name: &self.host },
            kubernetes: Kubernetes {
                node: Named { name: &self.node },
                namespace: m.namespace.as_deref(),
                pod: (m.pod_name.is_some() || m.pod_uid.is_some() || ip.is_some()).then_some(Pod {
                    name: m.pod_name.as_deref(),
                    uid: m.pod_uid.as_deref(),
                    ip,
                }),
                container: m.container_name.as_deref().map(|name| Named { name }),
                labels: pod.map(|p| &p.labels),
                annotations: pod.map(|p| &p.annotations),
                namespace_labels: api.and_then(|a| a.namespace_labels.as_deref()),
                replicaset: owner(|c| if let Controller::ReplicaSet(n) = c { Some(n) } else { None }),
                deployment: named(api.and_then(|a| a.deployment.as_ref())),
                statefulset: owner(|c| if let Controller::StatefulSet(n) = c { Some(n) } else { None }),
                daemonset: owner(|c| if let Controller::DaemonSet(n) = c { Some(n) } else { None }),
                job: owner(|c| if let Controller::Job(n) = c { Some(n) } else { None }),
                cronjob: named(api.and_then(|a| a.cronjob.as_ref())),
            },
            container: (m.container_id.is_some() || image.is_some())
                .then_some(Container { id: m.container_id.as_deref(), image }),
        };
        let mut fixed = Vec::new();
        json::write(&mut fixed, &fields).expect("serializing to a Vec cannot fail");
        fixed.pop();
        fixed.remove(0);
        fixed
    }

    /// Brings the file's fragment up to date with the cache when its epoch
    /// moved. True if the pod is unknown (the line is flagged `metadata_missing`).
    /// A pod that was known stays as it was last seen, even once the cache forgot it.
    fn refresh(&self, ctx: &FileContext) -> bool {
        let (Some(cache), Some(state)) = (&self.kube, &ctx.kube) else {
            return false;
        };
        let epoch = cache.epoch();
        if epoch != state.epoch.get() {
            state.epoch.set(epoch);
            let m = &state.path_meta;
            if let Some(found) = cache.lookup(m.pod_uid.as_deref(), m.namespace.as_deref(), m.pod_name.as_deref()) {
                let mut pod = state.pod.borrow_mut();
                if pod.as_ref() != Some(&found) {
                    *ctx.fixed.borrow_mut() = self.fixed(m, Some(&found));
                    *pod = Some(found);
                }
            }
        }
        state.pod.borrow().is_none()
    }

    /// The `_id` of the message starting at `offset`:
    /// `document_id(&[node, dev, inode, fingerprint, offset])`.
    pub fn id(ctx: &FileContext, offset: u64) -> String {
        let mut id = ctx.id_prefix.clone();
        id.part(&offset.to_le_bytes());
        id.finish()
    }

    /// One message → one document. `event.ingested` is not written here: the
    /// sink stamps it when it sends the document to Elasticsearch.
    pub fn normalize(&mut self, ctx: &FileContext, rec: &Record<'_>) -> Document {
        let id = Self::id(ctx, rec.offset);
        let metadata_missing = self.refresh(ctx);
        if metadata_missing {
            kube_metrics().metadata_missing.inc();
        }
        let fixed = ctx.fixed.borrow();
        // simdutf8 for the valid case (nearly all lines); std's lossy
        // conversion walks the bytes one chunk at a time even when they are valid.
        let message = match simdutf8::basic::from_utf8(&rec.message) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(&rec.message),
        };
        let mut b = std::mem::take(&mut self.scratch);
        b.clear();
        b.extend_from_slice(b"{\"@timestamp\":");
        json_string(&mut b, &rec.time_text);
        b.extend_from_slice(b",\"message\":");
        json_string(&mut b, &message);
        if let Some(stream) = rec.stream {
            b.extend_from_slice(b",\"stream\":\"");
            b.extend_from_slice(stream.as_str().as_bytes());
            b.push(b'"');
        }
        b.push(b',');
        b.extend_from_slice(DATA_STREAM);
        b.extend_from_slice(b",\"event\":{\"dataset\":\"");
        b.extend_from_slice(DATASET.as_bytes());
        b.extend_from_slice(b"\",\"kind\":\"event\",\"id\":\"");
        b.extend_from_slice(id.as_bytes());
        b.extend_from_slice(b"\"},");
        b.extend_from_slice(&fixed);
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
            (metadata_missing, "metadata_missing"),
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
        let body = self.arena.carve(&b);
        self.scratch = b;
        Document { index: self.index.index_for(rec.time), id, body, source: SourceKind::Containers }
    }
}

/// The container index mapping: the container document's own fields
/// (docs/containers.md), and the alias `logs-kubernetes.container_logs-
/// kube_log_gateway` that Elastic's pattern `logs-kubernetes.container_logs-*`
/// finds.
pub fn mapping(pattern: &IndexPattern) -> IndexMapping {
    let mut mapping = IndexMapping::new(pattern.clone(), mapping_properties(), Value::Array(Vec::new()));
    mapping.aliases.push(DataStream::alias(DATASET, Namespace::default().as_str()));
    mapping
}

/// Labels and annotations are `flattened`: one field each, whatever the keys,
/// so `app.kubernetes.io/name` stays one key (no object explosion, no mapping
/// conflict between `app` and `app.kubernetes.io/name`) and
/// `kubernetes.labels.app: checkout` still queries it.
fn mapping_properties() -> Value {
    let kw = json!({ "type": "keyword", "ignore_above": 1024 });
    let flat = json!({ "type": "flattened", "ignore_above": 1024 });
    let name = json!({ "properties": { "name": kw } });
    json!({
        "data_stream": { "properties": { "type": kw, "dataset": kw, "namespace": kw } },
        "stream": kw,
        "kubernetes": { "properties": {
            "namespace": kw,
            "pod": { "properties": { "name": kw, "uid": kw, "ip": { "type": "ip" } } },
            "container": name,
            "labels": flat,
            "annotations": flat,
            "namespace_labels": flat,
            "replicaset": name,
            "deployment": name,
            "statefulset": name,
            "daemonset": name,
            "job": name,
            "cronjob": name
        }},
        "container": { "properties": { "id": kw, "image": name } },
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
        let doc = n.normalize(&ctx, &rec);
        assert_eq!(doc.index, "containers-2026.01.02");
        let v: Value = serde_json::from_slice(&doc.body).unwrap();
        assert_eq!(
            v,
            json!({
                "@timestamp": "2026-01-02T03:04:05.123456789Z",
                "message": "hello \"world\"",
                "stream": "stderr",
                "data_stream": { "type": "logs", "dataset": "kubernetes.container_logs", "namespace": "kube_log_gateway" },
                "event": { "dataset": "kubernetes.container_logs", "kind": "event", "id": doc.id },
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

    #[test]
    fn bodies_sharing_a_chunk_stay_apart_and_invalid_utf8_is_replaced() {
        let mut n = normalizer();
        let ctx = n.file_context(
            FileKey { dev: 1, ino: 2 },
            Fingerprint { len: 1, hash: [0; 16] },
            Path::new("/l/a.log"),
            Metadata::default(),
        );
        let line = parse_cri(b"2026-01-02T03:04:05Z stdout F x").unwrap();
        let messages: Vec<Vec<u8>> = (0..200usize)
            .map(|i| match i {
                7 => b"bad \xff byte".to_vec(),
                // Over a quarter of a chunk: its own allocation.
                50 => vec![b'y'; crate::document::arena::CHUNK],
                _ => format!("message {i} {}", "z".repeat(i * 13 % 700)).into_bytes(),
            })
            .collect();
        let docs: Vec<Document> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let rec = Record {
                    offset: i as u64,
                    time_text: line.time_text.clone(),
                    time: line.time,
                    stream: Some(Stream::Stdout),
                    message: m.as_slice().into(),
                    flags: Flags::default(),
                    error: None,
                };
                n.normalize(&ctx, &rec)
            })
            .collect();
        for (i, doc) in docs.iter().enumerate() {
            let v: Value = serde_json::from_slice(&doc.body).unwrap();
            let want = String::from_utf8_lossy(&messages[i]).into_owned();
            assert_eq!(v["message"], Value::String(want), "document {i}");
            assert_eq!(v["log"]["offset"], json!(i), "document {i}");
        }
        assert_eq!(docs[7].body.windows(3).filter(|w| *w == "\u{fffd}".as_bytes()).count(), 1);
    }
}
