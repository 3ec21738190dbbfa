//! One Kubernetes Event revision → one document, and the events index mapping.
//!
//! Field names follow Elastic's own Kubernetes integration (`kubernetes.event.*`
//! with `involved_object`, `source`, `timestamp.{first,last}_occurrence`,
//! `metadata`), plus what `events.k8s.io/v1` adds (action, reporting
//! controller and instance, series) and the ECS fields every document has.
//! The index template also gives every events index the alias
//! [`ALIAS`], the name Elastic's integration would query.
//!
//! The `_id` is one per *revision* of an Event: a repeated event changes its
//! count and last-seen time, and each repeat is a fact of its own, while
//! reading the same revision again (a relist, a restart) gives the same `_id`
//! and becomes a 409.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use serde::Serialize;
use serde_json::{json, Value};

use crate::document::ecs::{Named, Orchestrator};
use crate::document::id::document_id;
use crate::document::index_pattern::IndexPattern;
use crate::document::json::to_body;
use crate::document::mapping::IndexMapping;
use crate::document::time::{rfc3339_micros, DayIndex};
use crate::document::{Document, SourceKind};

/// The source's label: `source="events"` in metrics, `sources.events`.
pub const KIND: SourceKind = SourceKind::new("events");

/// The alias of every events index: Elastic's data stream name for Kubernetes
/// events (`<type>-<dataset>-<namespace>`), with a namespace of its own so it
/// never meets a data stream an Elastic Agent creates.
pub const ALIAS: &str = "metrics-kubernetes.event-klg";

/// Events → documents for one cluster.
pub struct EventNormalizer {
    cluster: String,
    host: String,
    index: DayIndex,
}

impl EventNormalizer {
    pub fn new(cluster: String, host: String, index: IndexPattern) -> Self {
        EventNormalizer { cluster, host, index: DayIndex::new(index) }
    }

    /// The document of this revision of `event` (`event.ingested` is stamped by
    /// the sink when the document is sent).
    pub fn normalize(&mut self, event: &Event) -> Document {
        let revision = Revision::of(event);
        let id = revision.id(&self.cluster, event.metadata.uid.as_deref().unwrap_or(""));
        let when =
            revision.last.or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0)).unwrap_or_default();
        let regarding = event.regarding.as_ref();
        let kind_is = |k: &str| regarding.and_then(|r| r.kind.as_deref()) == Some(k);
        let node = match regarding {
            Some(r) if kind_is("Node") => r.name.as_deref(),
            // The kubelet reports as itself on its node: `reportingInstance` is the node.
            _ => event.deprecated_source.as_ref().and_then(|s| s.host.as_deref()).filter(|h| !h.is_empty()).or(event
                .reporting_instance
                .as_deref()
                .filter(|_| event.reporting_controller.as_deref() == Some("kubelet"))),
        };
        let timestamp = rfc3339_micros(when);
        let doc = EventDoc {
            timestamp: &timestamp,
            message: event.note.as_deref(),
            event: EcsEvent {
                dataset: "kubernetes.event",
                kind: "event",
                module: "kubernetes",
                id: &id,
                action: event.action.as_deref(),
                reason: event.reason.as_deref(),
            },
            data_stream: DataStream { kind: "metrics", dataset: "kubernetes.event", namespace: "klg" },
            orchestrator: Orchestrator::kubernetes(&self.cluster),
            host: Named { name: &self.host },
            kubernetes: Kubernetes {
                namespace: regarding.and_then(|r| r.namespace.as_deref()).or(event.metadata.namespace.as_deref()),
                pod: regarding
                    .filter(|_| kind_is("Pod"))
                    .map(|r| Pod { name: r.name.as_deref(), uid: r.uid.as_deref() }),
                node: node.map(|name| Named { name }),
                event: KubeEvent {
                    kind: event.type_.as_deref(),
                    reason: event.reason.as_deref(),
                    action: event.action.as_deref(),
                    message: event.note.as_deref(),
                    count: revision.count,
                    timestamp: Occurrence {
                        first_occurrence: revision.first.map(rfc3339_micros),
                        last_occurrence: revision.last.map(rfc3339_micros),
                    },
                    reporting: Reporting {
                        controller: event.reporting_controller.as_deref(),
                        instance: event.reporting_instance.as_deref(),
                    },
                    source: Source {
                        component: event
                            .reporting_controller
                            .as_deref()
                            .or(event.deprecated_source.as_ref().and_then(|s| s.component.as_deref())),
                        host: node,
                    },
                    involved_object: regarding.map(Object::of),
                    related: event.related.as_ref().map(Object::of),
                    metadata: Metadata {
                        name: event.metadata.name.as_deref(),
                        namespace: event.metadata.namespace.as_deref(),
                        uid: event.metadata.uid.as_deref(),
                        resource_version: event.metadata.resource_version.as_deref(),
                        timestamp: Created {
                            created: event.metadata.creation_timestamp.as_ref().map(|t| rfc3339_micros(t.0)),
                        },
                    },
                },
            },
        };
        let body = to_body(&doc).expect("an event document always serializes");
        Document { index: self.index.index_for(when), id, body, source: KIND }
    }
}

/// What tells one revision of an Event from another: the series count and the
/// last time it was observed (`series` for `events.k8s.io/v1` writers, the
/// deprecated `count`/`lastTimestamp` for `core/v1` ones, `eventTime` for a
/// single occurrence).
struct Revision {
    count: u64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl Revision {
    fn of(e: &Event) -> Revision {
        let count = match (&e.series, e.deprecated_count) {
            (Some(series), _) => series.count,
            (None, Some(count)) => count,
            (None, None) => 1,
        };
        let last = e
            .series
            .as_ref()
            .map(|s| s.last_observed_time.0)
            .or_else(|| e.deprecated_last_timestamp.as_ref().map(|t| t.0))
            .or_else(|| e.event_time.as_ref().map(|t| t.0));
        let first =
            e.deprecated_first_timestamp.as_ref().map(|t| t.0).or_else(|| e.event_time.as_ref().map(|t| t.0)).or(last);
        Revision { count: count.max(0) as u64, first, last }
    }

    fn id(&self, cluster: &str, uid: &str) -> String {
        let last = self.last.map(rfc3339_micros).unwrap_or_default();
        document_id(&[
            b"kubernetes.event",
            cluster.as_bytes(),
            uid.as_bytes(),
            self.count.to_string().as_bytes(),
            last.as_bytes(),
        ])
    }
}

#[derive(Serialize)]
struct EventDoc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    event: EcsEvent<'a>,
    data_stream: DataStream,
    orchestrator: Orchestrator<'a>,
    host: Named<'a>,
    kubernetes: Kubernetes<'a>,
}

#[derive(Serialize)]
struct EcsEvent<'a> {
    dataset: &'static str,
    kind: &'static str,
    module: &'static str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct DataStream {
    #[serde(rename = "type")]
    kind: &'static str,
    dataset: &'static str,
    namespace: &'static str,
}

#[derive(Serialize)]
struct Kubernetes<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<Pod<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<Named<'a>>,
    event: KubeEvent<'a>,
}

#[derive(Serialize)]
struct Pod<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
}

#[derive(Serialize)]
struct KubeEvent<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    count: u64,
    timestamp: Occurrence,
    reporting: Reporting<'a>,
    source: Source<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    involved_object: Option<Object<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    related: Option<Object<'a>>,
    metadata: Metadata<'a>,
}

#[derive(Serialize)]
struct Occurrence {
    #[serde(skip_serializing_if = "Option::is_none")]
    first_occurrence: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_occurrence: Option<String>,
}

#[derive(Serialize)]
struct Reporting<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    controller: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<&'a str>,
}

#[derive(Serialize)]
struct Source<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
}

#[derive(Serialize)]
struct Object<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field_path: Option<&'a str>,
}

impl<'a> Object<'a> {
    fn of(r: &'a ObjectReference) -> Object<'a> {
        Object {
            api_version: r.api_version.as_deref(),
            kind: r.kind.as_deref(),
            namespace: r.namespace.as_deref(),
            name: r.name.as_deref(),
            uid: r.uid.as_deref(),
            resource_version: r.resource_version.as_deref(),
            field_path: r.field_path.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct Metadata<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_version: Option<&'a str>,
    timestamp: Created,
}

#[derive(Serialize)]
struct Created {
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<String>,
}

/// The events index mapping, with the alias Elastic users know.
pub fn mapping(pattern: &IndexPattern) -> IndexMapping {
    let mut m = IndexMapping::new(pattern.clone(), mapping_properties(), Value::Array(Vec::new()));
    m.aliases = vec![ALIAS.to_string()];
    m
}

fn mapping_properties() -> Value {
    let kw = json!({ "type": "keyword", "ignore_above": 1024 });
    let object = json!({ "properties": {
        "api_version": kw, "kind": kw, "namespace": kw, "name": kw, "uid": kw,
        "resource_version": kw, "field_path": kw
    }});
    json!({
        "event": { "properties": { "reason": kw, "module": kw } },
        "data_stream": { "properties": { "type": kw, "dataset": kw, "namespace": kw } },
        "kubernetes": { "properties": {
            "namespace": kw,
            "pod": { "properties": { "name": kw, "uid": kw } },
            "event": { "properties": {
                "type": kw,
                "reason": kw,
                "action": kw,
                "message": { "type": "text" },
                "count": { "type": "long" },
                "timestamp": { "properties": {
                    "first_occurrence": { "type": "date" },
                    "last_occurrence": { "type": "date" }
                }},
                "reporting": { "properties": { "controller": kw, "instance": kw } },
                "source": { "properties": { "component": kw, "host": kw } },
                "involved_object": object,
                "related": object,
                "metadata": { "properties": {
                    "name": kw, "namespace": kw, "uid": kw, "resource_version": kw,
                    "timestamp": { "properties": { "created": { "type": "date" } } }
                }}
            }}
        }}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: Value) -> Event {
        serde_json::from_value(json).unwrap()
    }

    fn evicted(count: Option<i32>, last: &str) -> Event {
        let mut e = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": { "name": "web-1.17a", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
                          "creationTimestamp": "2026-12-07T04:00:00Z" },
            "eventTime": "2026-12-07T04:00:00.000001Z",
            "reportingController": "kubelet", "reportingInstance": "node-7",
            "action": "Evicting", "reason": "Evicted", "type": "Warning",
            "note": "The node was low on resource: memory.",
            "regarding": { "kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "p-1", "apiVersion": "v1",
                           "fieldPath": "spec.containers{web}" },
            "deprecatedSource": { "component": "kubelet", "host": "node-7" }
        });
        if let Some(count) = count {
            e["series"] = json!({ "count": count, "lastObservedTime": last });
        }
        event(e)
    }

    fn body(d: &Document) -> Value {
        serde_json::from_slice(&d.body).unwrap()
    }

    #[test]
    fn an_eviction_has_the_fields_users_query() {
        let mut n = EventNormalizer::new("prod".into(), "gw-0".into(), IndexPattern::parse("events-%Y.%m.%d").unwrap());
        let d = n.normalize(&evicted(None, ""));
        assert_eq!(d.index, "events-2026.12.07");
        assert_eq!(d.source.as_str(), "events");
        let v = body(&d);
        assert_eq!(v["@timestamp"], "2026-12-07T04:00:00.000001Z");
        assert_eq!(v["message"], "The node was low on resource: memory.");
        assert_eq!(v["event"]["reason"], "Evicted");
        assert_eq!(v["event"]["action"], "Evicting");
        assert_eq!(v["event"]["dataset"], "kubernetes.event");
        assert_eq!(v["event"]["id"], d.id.as_str());
        assert_eq!(v["kubernetes"]["namespace"], "shop");
        assert_eq!(v["kubernetes"]["pod"]["name"], "web-1");
        assert_eq!(v["kubernetes"]["node"]["name"], "node-7");
        let k = &v["kubernetes"]["event"];
        assert_eq!((k["type"].as_str(), k["count"].as_u64()), (Some("Warning"), Some(1)));
        assert_eq!(k["involved_object"]["field_path"], "spec.containers{web}");
        assert_eq!(k["involved_object"]["uid"], "p-1");
        assert_eq!(k["reporting"]["controller"], "kubelet");
        assert_eq!(k["source"]["host"], "node-7");
        assert_eq!(k["metadata"]["resource_version"], "42");
        assert_eq!(v["orchestrator"]["cluster"]["name"], "prod");
        assert_eq!(v["data_stream"]["dataset"], "kubernetes.event");
    }

    #[test]
    fn each_repeat_is_its_own_document_and_the_same_revision_the_same_id() {
        let mut n = EventNormalizer::new("prod".into(), "gw-0".into(), IndexPattern::parse("events-%Y.%m.%d").unwrap());
        let once = n.normalize(&evicted(None, "")).id;
        let twice = n.normalize(&evicted(Some(2), "2026-12-07T04:01:00.000000Z")).id;
        let thrice = n.normalize(&evicted(Some(3), "2026-12-07T04:02:00.000000Z")).id;
        let again = n.normalize(&evicted(Some(3), "2026-12-07T04:02:00.000000Z")).id;
        assert_eq!(thrice, again, "a relist of one revision is a 409");
        assert!(once != twice && twice != thrice && once != thrice);
        let mut other = EventNormalizer::new("test".into(), "gw-0".into(), IndexPattern::parse("e-%Y").unwrap());
        assert_ne!(other.normalize(&evicted(None, "")).id, once, "the cluster is part of the id");
    }

    #[test]
    fn a_core_v1_repeat_counts_from_the_deprecated_fields() {
        let mut n = EventNormalizer::new("c".into(), "h".into(), IndexPattern::parse("events-%Y.%m.%d").unwrap());
        let e = event(json!({
            "metadata": { "name": "n.1", "namespace": "default", "uid": "u-2" },
            "reason": "BackOff", "deprecatedCount": 7,
            "deprecatedFirstTimestamp": "2026-12-06T23:00:00Z",
            "deprecatedLastTimestamp": "2026-12-07T01:00:00Z",
            "eventTime": null
        }));
        let d = n.normalize(&e);
        let v = body(&d);
        assert_eq!(d.index, "events-2026.12.07", "the index is the last occurrence's day");
        assert_eq!(v["kubernetes"]["event"]["count"], 7);
        assert_eq!(v["kubernetes"]["event"]["timestamp"]["first_occurrence"], "2026-12-06T23:00:00.000000Z");
        assert!(v["kubernetes"].get("pod").is_none());
    }

    #[test]
    fn the_mapping_declares_the_alias() {
        let m = mapping(&IndexPattern::parse("events-%Y.%m.%d").unwrap());
        assert_eq!(m.aliases, vec![ALIAS.to_string()]);
        assert_eq!(m.properties["kubernetes"]["properties"]["event"]["properties"]["count"]["type"], "long");
    }
}
