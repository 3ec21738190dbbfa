//! Reads a bulk response item by item. The HTTP status of a bulk request says
//! little: a 200 can carry mapping errors, 429s and 409s in its items.

use serde::Deserialize;

/// What happened to one document of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200/201: written now.
    Created,
    /// 409 on `create`: the same `_id` is already there, so an earlier attempt
    /// delivered it. Counts as delivered.
    Duplicate,
    /// 429, 5xx, or 401/403/404/408 (credentials, privileges or an index that
    /// cannot be auto-created: the cluster's configuration, not the document):
    /// try this document again later.
    Retry { status: u16, error: String },
    /// Any other 4xx: Elasticsearch will never take this document as it is
    /// (mapping or parsing error). Goes to the dead-letter index.
    Reject { status: u16, error_type: String, reason: String },
}

impl Outcome {
    pub fn from_item(status: u16, error: Option<&ItemError>) -> Outcome {
        let error_type = || error.map(|e| e.kind.clone()).unwrap_or_default();
        match status {
            200 | 201 => Outcome::Created,
            409 => Outcome::Duplicate,
            401 | 403 | 404 | 408 | 429 | 500..=599 => Outcome::Retry {
                status,
                error: error.map(ItemError::describe).unwrap_or_else(|| format!("status {status}")),
            },
            _ => Outcome::Reject {
                status,
                error_type: error_type(),
                reason: error.map(ItemError::describe).unwrap_or_else(|| format!("status {status}")),
            },
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BulkResponseError {
    #[error("bulk response is not the expected JSON: {0}")]
    Json(String),
    #[error("bulk response has {got} items for {sent} documents")]
    Count { got: usize, sent: usize },
}

#[derive(Deserialize)]
// `errors` is not read: 409s set it too, and the items are the truth.
struct BulkResponse {
    items: Vec<BulkItem>,
}

#[derive(Deserialize)]
struct BulkItem {
    // We only send `create`, but accept `index` too so that the parser is not
    // the thing that breaks if that ever changes.
    #[serde(alias = "index")]
    create: ItemResult,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<ItemError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ItemError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub caused_by: Option<Box<ItemError>>,
}

impl ItemError {
    /// `type: reason; caused by type: reason`, the way Elasticsearch nests causes.
    pub fn describe(&self) -> String {
        let mut out = format!("{}: {}", self.kind, self.reason.as_deref().unwrap_or(""));
        let mut cause = self.caused_by.as_deref();
        while let Some(c) = cause {
            out.push_str(&format!("; caused by {}: {}", c.kind, c.reason.as_deref().unwrap_or("")));
            cause = c.caused_by.as_deref();
        }
        out
    }
}

/// One [`Outcome`] per document sent, in the order sent.
pub fn parse_bulk_response(body: &[u8], sent: usize) -> Result<Vec<Outcome>, BulkResponseError> {
    let resp: BulkResponse = serde_json::from_slice(body).map_err(|e| BulkResponseError::Json(e.to_string()))?;
    if resp.items.len() != sent {
        return Err(BulkResponseError::Count { got: resp.items.len(), sent });
    }
    Ok(resp.items.iter().map(|i| Outcome::from_item(i.create.status, i.create.error.as_ref())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Literal responses as Elasticsearch 8.19 writes them.
    const MIXED: &str = r#"{"errors":true,"took":3,"items":[
      {"create":{"_index":"audit-2026.01.01","_id":"a","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}},
      {"create":{"_index":"audit-2026.01.01","_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[b]: version conflict, document already exists (current version [1])","index_uuid":"x","shard":"0","index":"audit-2026.01.01"}}},
      {"create":{"_index":"audit-2026.01.01","_id":"c","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}},
      {"create":{"_index":"audit-2026.01.01","_id":"d","status":400,"error":{"type":"document_parsing_exception","reason":"[1:27] failed to parse field [http.response.status_code] of type [long] in document with id 'd'. Preview of field's value: 'abc'","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"abc\""}}}},
      {"create":{"_index":"audit-2026.01.01","_id":"e","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}}
    ]}"#;

    #[test]
    fn reads_each_item() {
        let outcomes = parse_bulk_response(MIXED.as_bytes(), 5).unwrap();
        assert_eq!(outcomes[0], Outcome::Created);
        assert_eq!(outcomes[1], Outcome::Duplicate);
        assert!(
            matches!(&outcomes[2], Outcome::Retry { status: 429, error } if error.starts_with("es_rejected_execution_exception"))
        );
        match &outcomes[3] {
            Outcome::Reject { status, error_type, reason } => {
                assert_eq!(*status, 400);
                assert_eq!(error_type, "document_parsing_exception");
                assert!(reason.contains("failed to parse field [http.response.status_code]"));
                assert!(reason.ends_with("caused by illegal_argument_exception: For input string: \"abc\""));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&outcomes[4], Outcome::Retry { status: 503, .. }));
    }

    #[test]
    fn missing_privileges_are_retried_not_dead_lettered() {
        let body = r#"{"errors":true,"items":[{"create":{"_index":"audit-x","_id":"a","status":403,"error":{"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized for user [klg]"}}}]}"#;
        assert!(matches!(&parse_bulk_response(body.as_bytes(), 1).unwrap()[0], Outcome::Retry { status: 403, .. }));
    }

    #[test]
    fn all_created() {
        let body = r#"{"errors":false,"took":1,"items":[{"create":{"_index":"i","_id":"1","status":201}},{"create":{"_index":"i","_id":"2","status":201}}]}"#;
        assert_eq!(parse_bulk_response(body.as_bytes(), 2).unwrap(), vec![Outcome::Created, Outcome::Created]);
    }

    #[test]
    fn item_count_mismatch_is_an_error() {
        let body = r#"{"errors":false,"items":[{"create":{"status":201}}]}"#;
        assert_eq!(parse_bulk_response(body.as_bytes(), 2), Err(BulkResponseError::Count { got: 1, sent: 2 }));
    }

    #[test]
    fn not_a_bulk_response() {
        let body = r#"{"error":{"root_cause":[],"type":"x"},"status":400}"#;
        assert!(matches!(parse_bulk_response(body.as_bytes(), 1), Err(BulkResponseError::Json(_))));
    }
}
