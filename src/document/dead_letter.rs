//! The dead-letter document: a record that can never be written as it is (the
//! webhook refused it, or Elasticsearch refused it with a mapping or parsing
//! error) is kept with its original as a string and the reason, in the
//! dead-letter index. Nothing is dropped.

use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};

use super::index_pattern::IndexPattern;
use super::json;
use super::mapping::IndexMapping;
use super::time::rfc3339_micros;
use super::{Document, SourceKind};

/// Why a document is dead-lettered.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The item's HTTP status, or `None` when the gateway itself refused it.
    pub status: Option<u16>,
    pub error_type: String,
    pub reason: String,
}

#[derive(Serialize)]
struct DeadLetterBody<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    event: DlEvent<'a>,
    error: DlError<'a>,
    dead_letter: DlInfo<'a>,
}

#[derive(Serialize)]
struct DlEvent<'a> {
    dataset: &'static str,
    kind: &'static str,
    original: &'a str,
}

#[derive(Serialize)]
struct DlError<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct DlInfo<'a> {
    source: &'static str,
    index: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
}

/// `event.dataset` of every dead letter.
pub const DATASET: &str = "kube_log_gateway.dead_letter";

/// Whether a serialized body is a dead letter: its `event.dataset` comes
/// right after `@timestamp`, within the first bytes.
pub fn is_dead_letter(body: &[u8]) -> bool {
    let needle = format!(r#""event":{{"dataset":"{DATASET}""#);
    body[..body.len().min(128)].windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Builds a dead-letter document; also used by the webhook for items it refuses
/// before they ever reach Elasticsearch.
pub fn dead_letter_document(
    pattern: &IndexPattern,
    source: SourceKind,
    index: &str,
    id: &str,
    original: &str,
    rejection: &Rejection,
) -> Document {
    let now = Utc::now();
    let now_text = rfc3339_micros(now);
    let body = DeadLetterBody {
        timestamp: &now_text,
        event: DlEvent { dataset: DATASET, kind: "pipeline_error", original },
        error: DlError { kind: &rejection.error_type, message: &rejection.reason },
        dead_letter: DlInfo { source: source.as_str(), index, id, status: rejection.status },
    };
    Document {
        index: pattern.index_for(now),
        id: id.to_string(),
        body: json::to_body(&body).expect("serializing a dead letter cannot fail"),
        source,
    }
}

/// The mapping of the dead-letter index.
pub fn mapping(pattern: &IndexPattern) -> IndexMapping {
    IndexMapping::new(
        pattern.clone(),
        json!({
            "error": { "properties": {
                "type": { "type": "keyword" },
                "message": { "type": "text" }
            }},
            "dead_letter": { "properties": {
                "source": { "type": "keyword" },
                "index": { "type": "keyword" },
                "id": { "type": "keyword" },
                "status": { "type": "long" }
            }}
        }),
        Value::Array(Vec::new()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn keeps_the_original_and_the_reason() {
        let original = Document {
            index: "audit-2026.01.01".into(),
            id: "abc".into(),
            body: Bytes::from_static(br#"{"x":"y"}"#),
            source: SourceKind::Audit,
        };
        let doc = dead_letter_document(
            &IndexPattern::parse("deadletter-%Y.%m.%d").unwrap(),
            original.source,
            &original.index,
            &original.id,
            &String::from_utf8_lossy(&original.body),
            &Rejection { status: Some(400), error_type: "document_parsing_exception".into(), reason: "bad".into() },
        );
        assert!(doc.index.starts_with("deadletter-"));
        assert_eq!(doc.id, "abc");
        let v: serde_json::Value = serde_json::from_slice(&doc.body).unwrap();
        assert_eq!(v["event"]["original"], r#"{"x":"y"}"#);
        assert_eq!(v["error"]["type"], "document_parsing_exception");
        assert_eq!(v["dead_letter"]["index"], "audit-2026.01.01");
        assert_eq!(v["dead_letter"]["status"], 400);
        assert_eq!(v["dead_letter"]["source"], "audit");
        assert!(is_dead_letter(&doc.body) && !is_dead_letter(&original.body));
    }
}
