//! The audit index mapping (docs/fields.md, "audit").

use serde_json::{json, Value};

use super::document_bodies::{self, REQUEST_BODY, RESPONSE_BODY};
use super::document_shape::DATASET;
use crate::document::ecs::DataStream;
use crate::document::index_pattern::IndexPattern;
use crate::document::mapping::IndexMapping;

/// The audit index mapping: the audit document's own fields (docs/fields.md)
/// and annotations as keywords, and the alias `logs-kubernetes.audit_logs-
/// <namespace>` on every audit index, which Elastic's rules and views find
/// through their pattern `logs-kubernetes.audit_logs-*`.
pub fn mapping(pattern: &IndexPattern, data_stream_namespace: &str) -> IndexMapping {
    let mut mapping = IndexMapping::new(pattern.clone(), mapping_properties(), dynamic_templates());
    mapping.aliases.push(DataStream::alias(DATASET, data_stream_namespace));
    mapping
}

fn mapping_properties() -> Value {
    let kw = json!({ "type": "keyword", "ignore_above": 1024 });
    let user_info = json!({ "properties": {
        "username": kw, "uid": kw, "groups": kw,
        // Keys as sent, dots included; any number of them is one field.
        // Searchable (one rule's exceptions are prefixes on a key), no doc
        // values: nothing sorts or aggregates on them.
        "extra": { "type": "flattened", "ignore_above": 1024, "doc_values": false }
    }});

    let unindexed = json!({ "type": "object", "enabled": false });
    // Copies of `kubernetes.audit.*` fields written as Elastic's integration
    // writes them, in `_source` for views and exports; no rule reads them, so
    // they are not indexed (docs/decisions.md §17.5).
    let stored_keyword = json!({ "type": "keyword", "index": false, "doc_values": false });
    json!({
        "data_stream": { "properties": { "type": kw, "dataset": kw, "namespace": kw } },
        "orchestrator": { "properties": {
            "namespace": kw,
            "resource": unindexed,
            "api_version": stored_keyword
        }},
        "user": { "properties": { "name": kw, "id": kw } },
        "source": { "properties": { "ip": { "type": "ip" } } },
        "client": unindexed,
        "related": unindexed,
        "user_agent": { "properties": { "original": { "type": "keyword", "ignore_above": 2048,
            "fields": { "text": { "type": "text" } } } } },
        "url": { "properties": { "original": { "type": "keyword", "ignore_above": 8192,
            "fields": { "text": { "type": "text" } } } } },
        "http": { "properties": { "response": { "properties": { "status_code": { "type": "long" } } } } },
        "kubernetes": { "properties": { "audit": { "properties": {
            "level": kw,
            "auditID": kw,
            "stage": kw,
            "requestURI": { "type": "keyword", "ignore_above": 8192 },
            "verb": kw,
            "user": user_info,
            "impersonatedUser": user_info,
            "sourceIPs": kw,
            "userAgent": { "type": "keyword", "ignore_above": 2048 },
            "objectRef": { "properties": {
                "resource": kw, "namespace": kw, "name": kw, "uid": kw, "apiGroup": kw,
                "apiVersion": kw, "resourceVersion": kw, "subresource": kw
            }},
            "responseStatus": { "properties": {
                "code": { "type": "long" },
                "status": kw,
                "reason": kw,
                "message": { "type": "text" },
                "metadata": { "type": "object", "enabled": false },
                "details": { "type": "object", "enabled": false }
            }},
            "requestObject": document_bodies::mapping(&REQUEST_BODY),
            "responseObject": document_bodies::mapping(&RESPONSE_BODY),
            "requestReceivedTimestamp": { "type": "date_nanos" },
            "stageTimestamp": { "type": "date_nanos" },
            // The ones rules name, mapped before any event has them.
            "annotations": { "type": "object", "dynamic": true, "properties": {
                "authorization_k8s_io/decision": kw,
                "authorization_k8s_io/reason": kw
            }}
        }}}},
        "kube_log_gateway": { "properties": { "original": { "properties": {
            "stageTimestamp": kw, "requestReceivedTimestamp": kw,
            "requestObject": unindexed, "responseObject": unindexed
        }}}}
    })
}

/// Annotation values are strings: index them as keywords, whatever the key.
fn dynamic_templates() -> Value {
    json!([{
        "audit_annotations": {
            "path_match": "kubernetes.audit.annotations.*",
            "match_mapping_type": "*",
            "mapping": { "type": "keyword", "ignore_above": 1024 }
        }
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mapping of a dotted field path, or `Null`.
    fn field<'m>(properties: &'m Value, path: &str) -> &'m Value {
        let mut parts = path.split('.').peekable();
        let mut cur = properties;
        while let Some(part) = parts.next() {
            cur = &cur[part];
            if parts.peek().is_some() {
                cur = &cur["properties"];
            }
        }
        cur
    }

    fn properties() -> Value {
        mapping(&IndexPattern::parse("audit-%Y.%m.%d").unwrap(), "default").properties
    }

    /// What Elastic's prebuilt Kubernetes rules query (KQL, EQL, ES|QL, and the
    /// fields new-terms rules aggregate on): searchable, with doc values, typed
    /// as before.
    #[test]
    fn the_fields_the_rules_read_stay_indexed_with_doc_values() {
        let p = properties();
        for (path, ty) in [
            ("data_stream.dataset", "keyword"),
            ("data_stream.namespace", "keyword"),
            ("event.dataset", "keyword"),
            ("event.action", "keyword"),
            ("event.ingested", "date"),
            ("source.ip", "ip"),
            ("user.name", "keyword"),
            ("user_agent.original", "keyword"),
            ("orchestrator.namespace", "keyword"),
            ("kubernetes.audit.level", "keyword"),
            ("kubernetes.audit.stage", "keyword"),
            ("kubernetes.audit.verb", "keyword"),
            ("kubernetes.audit.requestURI", "keyword"),
            ("kubernetes.audit.sourceIPs", "keyword"),
            ("kubernetes.audit.userAgent", "keyword"),
            ("kubernetes.audit.user.username", "keyword"),
            ("kubernetes.audit.user.groups", "keyword"),
            ("kubernetes.audit.impersonatedUser.username", "keyword"),
            ("kubernetes.audit.impersonatedUser.groups", "keyword"),
            ("kubernetes.audit.objectRef.resource", "keyword"),
            ("kubernetes.audit.objectRef.subresource", "keyword"),
            ("kubernetes.audit.objectRef.namespace", "keyword"),
            ("kubernetes.audit.objectRef.name", "keyword"),
            ("kubernetes.audit.responseStatus.code", "long"),
            ("kubernetes.audit.responseStatus.message", "text"),
            ("kubernetes.audit.annotations.authorization_k8s_io/decision", "keyword"),
            ("kubernetes.audit.annotations.authorization_k8s_io/reason", "keyword"),
        ] {
            let f = field(&p, path);
            assert_eq!(f["type"], ty, "{path}: {f}");
            assert_ne!(f["index"], json!(false), "{path}: {f}");
            assert_ne!(f["doc_values"], json!(false), "{path}: {f}");
        }
        // One rule's exceptions are prefix queries on a key of `user.extra`.
        for path in ["kubernetes.audit.user.extra", "kubernetes.audit.impersonatedUser.extra"] {
            let f = field(&p, path);
            assert_eq!(f["type"], "flattened", "{path}: {f}");
            assert_ne!(f["index"], json!(false), "{path}: {f}");
        }
    }

    /// Copies of `kubernetes.audit.*` that no rule reads are kept in `_source`
    /// and not indexed: they cost Elasticsearch no indexing.
    #[test]
    fn copies_no_rule_reads_are_stored_not_indexed() {
        let p = properties();
        for path in ["client", "related", "orchestrator.resource"] {
            assert_eq!(field(&p, path), &json!({ "type": "object", "enabled": false }), "{path}");
        }
        let api_version = field(&p, "orchestrator.api_version");
        assert_eq!((&api_version["index"], &api_version["doc_values"]), (&json!(false), &json!(false)));
        for path in ["kubernetes.audit.user.extra", "kubernetes.audit.impersonatedUser.extra"] {
            assert_eq!(field(&p, path)["doc_values"], json!(false), "{path}");
        }
    }
}
