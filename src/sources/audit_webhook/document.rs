//! Audit events → documents (docs/fields.md, "audit"), and their index mapping.
//!
//! The original event is kept under `kubernetes.audit.*` with its own field
//! names; ECS fields are derived beside it so that Kibana's usual fields
//! (`user.name`, `source.ip`, `event.action`, …) work across sources.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::event::{parse_event, AuditEvent, RawObject};
use super::secrets;
use crate::document::dead_letter::{dead_letter_document, Rejection};
use crate::document::ecs::{Named, Orchestrator};
use crate::document::id::document_id;
use crate::document::index_pattern::IndexPattern;
use crate::document::mapping::IndexMapping;
use crate::document::time::ingested_now;
use crate::document::{json as json_writer, Document, SourceKind};

pub struct AuditNormalizer {
    pub cluster: String,
    pub host: String,
    /// `kubernetes.node.name`: the node the gateway runs on.
    pub node: String,
    pub index: IndexPattern,
    pub dead_letter: IndexPattern,
    pub redact_secrets: bool,
}

#[derive(Serialize)]
struct AuditDocument<'e, 'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'e str,
    event: EventFields<'e>,
    orchestrator: Orchestrator<'e>,
    host: Named<'e>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<UserFields<'e>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<SourceFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<Original<'e>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<Original<'e>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<Http>,
    kubernetes: Kubernetes<'e, 'a>,
}

#[derive(Serialize)]
struct EventFields<'e> {
    dataset: &'static str,
    kind: &'static str,
    id: &'e str,
    ingested: &'e str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'e str>,
    outcome: &'static str,
}

#[derive(Serialize)]
struct UserFields<'e> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'e str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'e str>,
}

#[derive(Serialize)]
struct SourceFields {
    ip: IpAddr,
}

#[derive(Serialize)]
struct Original<'e> {
    original: &'e str,
}

#[derive(Serialize)]
struct Http {
    response: HttpResponse,
}

#[derive(Serialize)]
struct HttpResponse {
    status_code: i64,
}

#[derive(Serialize)]
struct Kubernetes<'e, 'a> {
    node: Named<'e>,
    audit: &'e AuditEvent<'a>,
}

impl AuditNormalizer {
    /// One event → one document, or the reason it is not a valid event.
    pub fn normalize(&self, raw: &RawValue) -> Result<Document, String> {
        let mut event = parse_event(raw)?;
        let time = DateTime::parse_from_rfc3339(&event.stage_timestamp)
            .map_err(|e| format!("field `stageTimestamp` {:?} is not an RFC 3339 time: {e}", event.stage_timestamp))?
            .with_timezone(&Utc);
        if let Some(received) = &event.request_received_timestamp {
            DateTime::parse_from_rfc3339(received)
                .map_err(|e| format!("field `requestReceivedTimestamp` {received:?} is not an RFC 3339 time: {e}"))?;
        }
        let id = document_id(&[
            self.cluster.as_bytes(),
            event.audit_id.as_bytes(),
            event.stage.as_bytes(),
            event.stage_timestamp.as_bytes(),
            event.request_uri.as_deref().unwrap_or("").as_bytes(),
            event.verb.as_deref().unwrap_or("").as_bytes(),
        ]);
        undot_keys(&mut event.annotations);
        undot_keys(&mut event.user.extra);
        if let Some(imp) = &mut event.impersonated_user {
            undot_keys(&mut imp.extra);
        }
        if self.redact_secrets {
            redact_event(&mut event);
        }
        let ingested = ingested_now();
        let code = event.response_status.as_ref().and_then(|s| s.code);
        let decision = event.annotations.get("authorization_k8s_io/decision").map(|d| d.as_ref());
        let outcome = match (decision, code) {
            (Some("forbid"), _) => "failure",
            (_, Some(c)) if c < 400 => "success",
            (_, Some(_)) => "failure",
            (_, None) => "unknown",
        };
        let doc = AuditDocument {
            timestamp: &event.stage_timestamp,
            event: EventFields {
                dataset: "kubernetes.audit",
                kind: "event",
                id: &id,
                ingested: &ingested,
                action: event.verb.as_deref(),
                outcome,
            },
            orchestrator: Orchestrator::kubernetes(&self.cluster),
            host: Named { name: &self.host },
            user: (event.user.username.is_some() || event.user.uid.is_some())
                .then_some(UserFields { name: event.user.username.as_deref(), id: event.user.uid.as_deref() }),
            source: event.source_ips.first().and_then(|ip| ip.parse().ok()).map(|ip| SourceFields { ip }),
            user_agent: event.user_agent.as_deref().map(|original| Original { original }),
            url: event.request_uri.as_deref().map(|original| Original { original }),
            http: code.map(|status_code| Http { response: HttpResponse { status_code } }),
            kubernetes: Kubernetes { node: Named { name: &self.node }, audit: &event },
        };
        let mut body = Vec::with_capacity(raw.get().len() + 768);
        json_writer::write(&mut body, &doc).map_err(|e| format!("cannot serialize the document: {e}"))?;
        Ok(Document { index: self.index.index_for(time), id, body: Bytes::from(body), source: SourceKind::Audit })
    }

    /// The dead-letter document for an event the gateway refused. Its Secret
    /// values are redacted too, on a best-effort parse.
    pub fn rejected(&self, raw: &RawValue, reason: &str) -> Document {
        let mut original = Cow::Borrowed(raw.get());
        if self.redact_secrets && looks_like_secret(raw.get()) {
            if let Ok(mut v) = serde_json::from_str::<Value>(raw.get()) {
                secrets::redact(&mut v);
                original = Cow::Owned(v.to_string());
            }
        }
        let id = document_id(&[self.cluster.as_bytes(), b"rejected", raw.get().as_bytes()]);
        dead_letter_document(
            &self.dead_letter,
            SourceKind::Audit,
            "",
            &id,
            &original,
            &Rejection { status: None, error_type: "invalid_audit_event".into(), reason: reason.into() },
        )
    }
}

/// Elasticsearch reads dots in field names as object paths; annotation and
/// `user.extra` keys (`authorization.k8s.io/decision`) would become deep,
/// conflicting objects. Dots become underscores.
fn undot_keys<V>(map: &mut BTreeMap<Cow<'_, str>, V>) {
    if !map.keys().any(|k| k.contains('.')) {
        return;
    }
    let old = std::mem::take(map);
    for (k, v) in old {
        let k = if k.contains('.') { Cow::Owned(k.replace('.', "_")) } else { k };
        map.insert(k, v);
    }
}

fn looks_like_secret(text: &str) -> bool {
    text.contains("\"secrets\"") || text.contains("\"Secret\"") || text.contains("\"SecretList\"")
}

fn redact_event(event: &mut AuditEvent<'_>) {
    let is_secret_resource = event
        .object_ref
        .as_ref()
        .is_some_and(|r| r.resource.as_deref() == Some("secrets") && r.api_group.as_deref().unwrap_or("").is_empty());
    for object in [&mut event.request_object, &mut event.response_object].into_iter().flatten() {
        if !is_secret_resource && !looks_like_secret(object.get()) {
            continue;
        }
        if let Ok(mut v) = serde_json::from_str::<Value>(object.get()) {
            if secrets::redact(&mut v) {
                let text = v.to_string();
                *object = RawObject::Owned(RawValue::from_string(text).expect("re-serialized JSON is valid"));
            }
        }
    }
}

/// The audit index mapping: the audit document's own fields (docs/fields.md)
/// and annotations as keywords.
pub fn mapping(pattern: &IndexPattern) -> IndexMapping {
    IndexMapping::new(pattern.clone(), mapping_properties(), dynamic_templates())
}

fn mapping_properties() -> Value {
    let kw = json!({ "type": "keyword", "ignore_above": 1024 });
    let user_info = json!({ "properties": {
        "username": kw, "uid": kw, "groups": kw,
        "extra": { "type": "object", "dynamic": false }
    }});
    json!({
        "user": { "properties": { "name": kw, "id": kw } },
        "source": { "properties": { "ip": { "type": "ip" } } },
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
            "requestObject": { "type": "object", "enabled": false },
            "responseObject": { "type": "object", "enabled": false },
            "requestReceivedTimestamp": { "type": "date_nanos" },
            "stageTimestamp": { "type": "date_nanos" },
            "annotations": { "type": "object", "dynamic": true }
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

    fn normalizer() -> AuditNormalizer {
        AuditNormalizer {
            cluster: "prod".into(),
            host: "gw-0".into(),
            node: "node-1".into(),
            index: IndexPattern::parse("audit-%Y.%m.%d").unwrap(),
            dead_letter: IndexPattern::parse("deadletter-%Y.%m.%d").unwrap(),
            redact_secrets: true,
        }
    }

    fn normalize(json: &str) -> Result<(Document, Value), String> {
        let raw: &RawValue = serde_json::from_str(json).unwrap();
        let doc = normalizer().normalize(raw)?;
        let v = serde_json::from_slice(&doc.body).unwrap();
        Ok((doc, v))
    }

    const DELETE: &str = r#"{"level":"Metadata","auditID":"7e0cbccf-8d8a-4f5f-9b66-2f3c1c1e6d2a","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/shop/deployments/web","verb":"delete","user":{"username":"alice@example.com","uid":"u-1","groups":["devs","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=ab"]}},"sourceIPs":["192.0.2.10","10.0.0.1"],"userAgent":"kubectl/v1.31.0 (linux/amd64)","objectRef":{"resource":"deployments","namespace":"shop","name":"web","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Success","code":200},"requestReceivedTimestamp":"2026-11-09T06:14:42.535854Z","stageTimestamp":"2026-11-09T06:14:42.541203Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"devs\""}}"#;

    #[test]
    fn ecs_fields_and_original() {
        let (doc, v) = normalize(DELETE).unwrap();
        assert_eq!(doc.index, "audit-2026.11.09");
        assert_eq!(v["@timestamp"], "2026-11-09T06:14:42.541203Z");
        assert_eq!(v["event"]["dataset"], "kubernetes.audit");
        assert_eq!(v["event"]["action"], "delete");
        assert_eq!(v["event"]["outcome"], "success");
        assert_eq!(v["event"]["id"], doc.id.as_str());
        assert_eq!(v["user"]["name"], "alice@example.com");
        assert_eq!(v["user"]["id"], "u-1");
        assert_eq!(v["source"]["ip"], "192.0.2.10");
        assert_eq!(v["user_agent"]["original"], "kubectl/v1.31.0 (linux/amd64)");
        assert_eq!(v["url"]["original"], "/apis/apps/v1/namespaces/shop/deployments/web");
        assert_eq!(v["http"]["response"]["status_code"], 200);
        assert_eq!(v["orchestrator"]["cluster"]["name"], "prod");
        assert_eq!(v["host"]["name"], "gw-0");
        assert_eq!(v["kubernetes"]["node"]["name"], "node-1");
        let audit = &v["kubernetes"]["audit"];
        assert_eq!(audit["objectRef"]["resource"], "deployments");
        assert_eq!(audit["annotations"]["authorization_k8s_io/decision"], "allow");
        assert_eq!(audit["user"]["extra"]["authentication_kubernetes_io/credential-id"][0], "X509SHA256=ab");
        assert_eq!(audit["requestReceivedTimestamp"], "2026-11-09T06:14:42.535854Z");
    }

    #[test]
    fn id_is_deterministic_and_depends_on_stage() {
        let (a, _) = normalize(DELETE).unwrap();
        let (b, _) = normalize(DELETE).unwrap();
        assert_eq!(a.id, b.id);
        let (c, _) = normalize(&DELETE.replace("ResponseComplete", "ResponseStarted")).unwrap();
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn forbidden_and_failed_authentication() {
        let forbid = DELETE.replace("\"allow\"", "\"forbid\"").replace("\"code\":200", "\"code\":403");
        assert_eq!(normalize(&forbid).unwrap().1["event"]["outcome"], "failure");
        let anon = r#"{"level":"Metadata","auditID":"x","stage":"ResponseStarted","requestURI":"/api","verb":"get","user":{},"sourceIPs":["203.0.113.5"],"responseStatus":{"metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401},"requestReceivedTimestamp":"2026-11-09T06:00:00.000000Z","stageTimestamp":"2026-11-09T06:00:00.000100Z"}"#;
        let (_, v) = normalize(anon).unwrap();
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["http"]["response"]["status_code"], 401);
        assert!(v.get("user").is_none());
    }

    #[test]
    fn secrets_are_redacted() {
        let update = r#"{"level":"RequestResponse","auditID":"s1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/secrets/db","verb":"update","user":{"username":"bob"},"objectRef":{"resource":"secrets","namespace":"shop","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"aHVudGVyMg=="}},"responseObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","resourceVersion":"9"},"data":{"password":"aHVudGVyMg=="}},"stageTimestamp":"2026-11-09T06:14:42.541203Z"}"#;
        let (doc, v) = normalize(update).unwrap();
        let text = String::from_utf8(doc.body.to_vec()).unwrap();
        assert!(!text.contains("aHVudGVyMg=="), "{text}");
        assert_eq!(v["kubernetes"]["audit"]["requestObject"]["data"]["password"], "[REDACTED]");
        assert_eq!(v["kubernetes"]["audit"]["responseObject"]["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn bad_times_are_refused_with_the_field_name() {
        let err = normalize(&DELETE.replace("2026-11-09T06:14:42.541203Z", "yesterday")).unwrap_err();
        assert!(err.starts_with("field `stageTimestamp` \"yesterday\" is not an RFC 3339 time"), "{err}");
    }

    #[test]
    fn rejected_items_keep_the_original_without_secret_values() {
        let raw: &RawValue = serde_json::from_str(
            r#"{"stage":"ResponseComplete","objectRef":{"resource":"secrets"},"requestObject":{"data":{"k":"c2VjcmV0"}}}"#,
        )
        .unwrap();
        let doc = normalizer().rejected(raw, "missing field `auditID`");
        let v: Value = serde_json::from_slice(&doc.body).unwrap();
        assert!(doc.index.starts_with("deadletter-"));
        assert_eq!(v["error"]["type"], "invalid_audit_event");
        assert_eq!(v["error"]["message"], "missing field `auditID`");
        assert!(!v["event"]["original"].as_str().unwrap().contains("c2VjcmV0"));
    }
}
