//! What happened to each document of a bulk request the server read (a 200):
//! created, already there, to be retried, refused for now by a blocked index,
//! or refused for good. The whole request's fate is the [`policy`](super::policy)'s.

use super::bulk_response::{self, BulkResponseError, ItemError};

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
    /// The index refuses writes for now: it is closed (`index_closed_exception`,
    /// a 400), or has a write, read-only or flood-stage block
    /// (`cluster_block_exception`, 403 or 429). That is the index's state, set
    /// by someone or by the disk watermark, not anything wrong with the
    /// document: retried like [`Outcome::Retry`], never dead-lettered, and
    /// logged and counted by `block` so that nobody has to guess why nothing
    /// arrives.
    Blocked { status: u16, index: String, block: Block, error: String },
    /// Any other 4xx: Elasticsearch will never take this document as it is
    /// (mapping or parsing error). Goes to the dead-letter index.
    Reject { status: u16, error_type: String, reason: String },
}

/// Why an index refuses writes for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// `index_closed_exception`: the index is closed.
    IndexClosed,
    /// `index.blocks.write`.
    Write,
    /// `index.blocks.read_only`.
    ReadOnly,
    /// `index.blocks.read_only_allow_delete`: set by Elasticsearch itself at
    /// the flood-stage disk watermark (and lifted when the disk has room).
    ReadOnlyAllowDelete,
    /// Any other `cluster_block_exception` (e.g. a cluster-wide block).
    Other,
}

impl Block {
    /// The block an item error describes, if it is one.
    pub fn of(error: &ItemError) -> Option<Block> {
        match error.kind.as_str() {
            "index_closed_exception" => Some(Block::IndexClosed),
            "cluster_block_exception" => {
                let reason = error.reason.as_deref().unwrap_or_default();
                Some(if reason.contains("read-only-allow-delete") {
                    Block::ReadOnlyAllowDelete
                } else if reason.contains("index write") {
                    Block::Write
                } else if reason.contains("read-only") {
                    Block::ReadOnly
                } else {
                    Block::Other
                })
            }
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Block::IndexClosed => "index_closed",
            Block::Write => "write",
            Block::ReadOnly => "read_only",
            Block::ReadOnlyAllowDelete => "read_only_allow_delete",
            Block::Other => "cluster_block",
        }
    }
}

impl Outcome {
    /// The outcome of one item: its `status`, the `index` it was for, its `error`.
    pub fn from_item(status: u16, index: &str, error: Option<&ItemError>) -> Outcome {
        let error_type = || error.map(|e| e.kind.clone()).unwrap_or_default();
        if let Some((e, block)) = error.and_then(|e| Some((e, Block::of(e)?))) {
            return Outcome::Blocked { status, index: index.to_string(), block, error: e.describe() };
        }
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

/// One [`Outcome`] per document sent, in the order sent.
pub fn parse_bulk_response(body: &[u8], sent: usize) -> Result<Vec<Outcome>, BulkResponseError> {
    let items = bulk_response::read(body, sent)?;
    Ok(items.iter().map(|i| Outcome::from_item(i.status, &i.index, i.error.as_ref())).collect())
}

/// Literal bulk answers, shared by the tests of the policy and of the outcomes.
#[cfg(test)]
pub(crate) mod answers {
    // Literal responses as Elasticsearch 8.19 writes them.
    pub const MIXED: &str = r#"{"errors":true,"took":3,"items":[
      {"create":{"_index":"audit-2026.01.01","_id":"a","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}},
      {"create":{"_index":"audit-2026.01.01","_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[b]: version conflict, document already exists (current version [1])","index_uuid":"x","shard":"0","index":"audit-2026.01.01"}}},
      {"create":{"_index":"audit-2026.01.01","_id":"c","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}},
      {"create":{"_index":"audit-2026.01.01","_id":"d","status":400,"error":{"type":"document_parsing_exception","reason":"[1:27] failed to parse field [http.response.status_code] of type [long] in document with id 'd'. Preview of field's value: 'abc'","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"abc\""}}}},
      {"create":{"_index":"audit-2026.01.01","_id":"e","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}}
    ]}"#;

    /// Each item as Elasticsearch 8.19 answered `create` into an index that was
    /// closed, had `index.blocks.write`, `index.blocks.read_only` and
    /// `index.blocks.read_only_allow_delete`.
    pub const BLOCKED: &str = r#"{"errors":true,"took":0,"items":[
      {"create":{"_index":"klgcap-25731-closed","_id":"a","status":400,"error":{"type":"index_closed_exception","reason":"closed","index_uuid":"y6beYNUhTua-MVsUPdvNHQ","index":"klgcap-25731-closed"}}},
      {"create":{"_index":"klgcap-25731-wb","_id":"a","status":403,"error":{"type":"cluster_block_exception","reason":"index [klgcap-25731-wb] blocked by: [FORBIDDEN/8/index write (api)];"}}},
      {"create":{"_index":"klgcap-25731-r2","_id":"a","status":403,"error":{"type":"cluster_block_exception","reason":"index [klgcap-25731-r2] blocked by: [FORBIDDEN/5/index read-only (api)];"}}},
      {"create":{"_index":"klgcap-25731-ro","_id":"a","status":429,"error":{"type":"cluster_block_exception","reason":"index [klgcap-25731-ro] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block; for more information, see https://www.elastic.co/guide/en/elasticsearch/reference/8.19/fix-watermark-errors.html];"}}}
    ]}"#;
}

#[cfg(test)]
mod tests {
    use super::answers::*;
    use super::*;

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

    /// Literally what Elasticsearch 8.19 answers with the gateway's
    /// `filter_path` (`client::BULK_FILTER_PATH`): no `errors`, no `_id`.
    const FILTERED: &str = r#"{"items":[{"create":{"_index":"fp-test","status":201}},{"create":{"_index":"fp-test","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[a]: version conflict, document already exists (current version [1])","index_uuid":"6sd0sm1PQs6lkuvmVhQ-Xw","shard":"0","index":"fp-test"}}},{"create":{"_index":"fp-test","status":400,"error":{"type":"document_parsing_exception","reason":"[1:6] failed to parse field [x] of type [long] in document with id 'b'. Preview of field's value: 'notnum'","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"notnum\""}}}}]}"#;

    #[test]
    fn reads_the_filtered_response() {
        let outcomes = parse_bulk_response(FILTERED.as_bytes(), 3).unwrap();
        assert_eq!(outcomes[0], Outcome::Created);
        assert_eq!(outcomes[1], Outcome::Duplicate);
        match &outcomes[2] {
            Outcome::Reject { status, error_type, reason } => {
                assert_eq!(*status, 400);
                assert_eq!(error_type, "document_parsing_exception");
                assert!(
                    reason.ends_with("caused by illegal_argument_exception: For input string: \"notnum\""),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
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

    #[test]
    fn a_closed_or_blocked_index_is_retried_never_dead_lettered() {
        let outcomes = parse_bulk_response(BLOCKED.as_bytes(), 4).unwrap();
        let expected = [
            (400, "klgcap-25731-closed", Block::IndexClosed, "index_closed_exception: closed"),
            (
                403,
                "klgcap-25731-wb",
                Block::Write,
                "cluster_block_exception: index [klgcap-25731-wb] blocked by: [FORBIDDEN/8/index write (api)];",
            ),
            (
                403,
                "klgcap-25731-r2",
                Block::ReadOnly,
                "cluster_block_exception: index [klgcap-25731-r2] blocked by: [FORBIDDEN/5/index read-only (api)];",
            ),
            (429, "klgcap-25731-ro", Block::ReadOnlyAllowDelete, "cluster_block_exception: index [klgcap-25731-ro] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark"),
        ];
        for (outcome, (want_status, want_index, want_block, want_error)) in outcomes.iter().zip(expected) {
            match outcome {
                Outcome::Blocked { status, index, block, error } => {
                    assert_eq!((*status, index.as_str(), *block), (want_status, want_index, want_block));
                    assert!(error.starts_with(want_error), "{error}");
                }
                other => panic!("a blocked index is an operational state, not poison: {other:?}"),
            }
        }
        assert_eq!(
            [Block::IndexClosed, Block::Write, Block::ReadOnly, Block::ReadOnlyAllowDelete, Block::Other]
                .map(Block::as_str),
            ["index_closed", "write", "read_only", "read_only_allow_delete", "cluster_block"]
        );
    }
}
