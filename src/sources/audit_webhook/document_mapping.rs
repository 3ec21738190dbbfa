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
        "extra": { "type": "flattened", "ignore_above": 1024 }
    }});

    let unindexed = json!({ "type": "object", "enabled": false });
    json!({
        "data_stream": { "properties": { "type": kw, "dataset": kw, "namespace": kw } },
        "orchestrator": { "properties": {
            "namespace": kw,
            "resource": { "properties": { "type": kw, "name": kw } },
            "api_version": kw
        }},
        "user": { "properties": { "name": kw, "id": kw } },
        "source": { "properties": { "ip": { "type": "ip" } } },
        "client": { "properties": { "ip": { "type": "ip" } } },
        "related": { "properties": { "user": kw, "ip": { "type": "ip" } } },
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
