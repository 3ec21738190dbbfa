//! The failure policy: the one place that decides what an answer from
//! Elasticsearch means. Everything else either produces the answer (the client,
//! the bulk response reader) or carries out the decision (the bulk worker, the
//! template installer); neither judges a status code itself, so the rules below
//! cannot drift apart between the places that act on them.
//!
//! The HTTP status of a bulk request says little: a 200 can carry mapping
//! errors, 429s and 409s in its items, so a 200 is judged item by item.
//! Everything that may pass is retried for as long as it takes (the spool, the
//! journal and the log files are the buffers, so waiting loses nothing); only a
//! document Elasticsearch will never take as it is becomes a dead letter.

use crate::document::dead_letter::Rejection;

use super::outcome::{parse_bulk_response, Outcome};
use crate::sink::transport::{Reply, RequestFailure};

/// How much of a failed whole-request body is kept for the log: enough for
/// Elasticsearch's `error.type` and `reason`, not a proxy's whole HTML page.
const FAILURE_BODY_BYTES: usize = 512;

/// What to do with the documents of one bulk attempt.
#[derive(Debug)]
pub enum Verdict {
    /// Elasticsearch read the request: one [`Outcome`] per document, in the
    /// order sent.
    Items(Vec<Outcome>),
    /// Nothing was written: send the same documents again after a backoff,
    /// to the next URL if `failover`.
    Retry { failure: RequestFailure, failover: bool },
    /// The body is too large for the node: send it again in two halves.
    Split { failure: RequestFailure },
    /// The body is too large and holds a single document: no smaller request
    /// exists, so it can never be written. It becomes a dead letter.
    DeadLetter { failure: RequestFailure, rejection: Rejection },
}

/// What an answer says about how hard the sink pushes Elasticsearch: the
/// input of the adaptive concurrency ([`concurrency`](super::concurrency)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressure {
    /// Elasticsearch read the request and answered for every item without
    /// pushing back: its round trip time is a fair sample of its load.
    Normal,
    /// It pushes back: a whole-request 429 or 503, a 429 on any item
    /// (`es_rejected_execution_exception`, a circuit breaker), or no answer
    /// at all (a timeout, a connection error).
    Back,
    /// Says nothing about load: a body too large on its own (413, or a 429 for
    /// a request over the indexing-pressure limit by itself), credentials, a
    /// proxy's 404, another 5xx, an unreadable 200.
    Unrelated,
}

impl Verdict {
    pub fn pressure(&self) -> Pressure {
        match self {
            Verdict::Items(outcomes) => {
                if outcomes.iter().any(|o| matches!(o, Outcome::Retry { status: 429, .. })) {
                    Pressure::Back
                } else {
                    Pressure::Normal
                }
            }
            Verdict::Retry { failure: RequestFailure::Transport(_), .. }
            | Verdict::Retry { failure: RequestFailure::Status { status: 429 | 503, .. }, .. } => Pressure::Back,
            Verdict::Retry { .. } | Verdict::Split { .. } | Verdict::DeadLetter { .. } => Pressure::Unrelated,
        }
    }
}

/// Judges one bulk attempt of `sent` documents, once.
pub fn classify(reply: Result<Reply, RequestFailure>, sent: usize) -> Verdict {
    let failure = match reply {
        Ok(Reply { status: 200, body }) => match parse_bulk_response(&body, sent) {
            Ok(outcomes) => return Verdict::Items(outcomes),
            Err(e) => RequestFailure::Malformed(e.to_string()),
        },
        Ok(Reply { status, body }) => RequestFailure::Status { status, body: truncate(&body, FAILURE_BODY_BYTES) },
        Err(failure) => failure,
    };
    match failure.action() {
        Action::Retry { failover } => Verdict::Retry { failure, failover },
        Action::Split if sent > 1 => Verdict::Split { failure },
        Action::Split => {
            let rejection = too_large(&failure);
            Verdict::DeadLetter { failure, rejection }
        }
    }
}

/// Why a request of one document that can never fit was refused: the
/// status and the type Elasticsearch (or the proxy) gave, and what it means.
fn too_large(failure: &RequestFailure) -> Rejection {
    match failure {
        RequestFailure::Status { status: 429, body } => {
            let (operation, limit) = over_indexing_pressure(body).unwrap_or_default();
            Rejection {
                status: Some(429),
                error_type: "es_rejected_execution_exception".into(),
                reason: format!(
                    "the document alone is over Elasticsearch's indexing pressure limit ({operation} > {limit} bytes, \
                     indexing_pressure.memory.limit), so no request holding it can ever be accepted: {failure}"
                ),
            }
        }
        _ => {
            Rejection { status: Some(413), error_type: "request_entity_too_large".into(), reason: failure.to_string() }
        }
    }
}

/// A document whose encoded size is over `max` (`elasticsearch.max_document_bytes`)
/// is not sent at all: every request holding it would be refused, and sending
/// it only to learn that again costs the cluster the whole body each time.
pub fn oversized(encoded_len: usize, max: usize) -> Option<Rejection> {
    (encoded_len > max).then(|| Rejection {
        status: None,
        error_type: "document_too_large".into(),
        reason: format!(
            "the document is {encoded_len} bytes in a bulk request, over elasticsearch.max_document_bytes ({max}); \
             Elasticsearch would refuse every request holding it"
        ),
    })
}

/// A whole-request 429 from indexing pressure names the bytes of this one
/// request (`coordinating_operation_bytes`, `primary_operation_bytes`) and the
/// node's limit (`max_coordinating_bytes`, `max_primary_bytes`,
/// `max_coordinating_and_primary_bytes`). A busy node rejects a request that
/// fits the limit because others hold the rest of it: that passes. A request
/// whose own bytes are over the limit is refused by an idle node too: that
/// never passes, whatever the backoff. `Some((operation, limit))` in that case.
pub fn over_indexing_pressure(body: &str) -> Option<(u64, u64)> {
    if !body.contains("es_rejected_execution_exception") {
        return None;
    }
    let number_after = |key: &str| {
        let at = body.find(key)? + key.len();
        let digits: String = body[at..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u64>().ok()
    };
    let operation =
        number_after("coordinating_operation_bytes=").or_else(|| number_after("primary_operation_bytes="))?;
    let limit = number_after("max_coordinating_bytes=")
        .or_else(|| number_after("max_primary_bytes="))
        .or_else(|| number_after("max_coordinating_and_primary_bytes="))?;
    (operation > limit).then_some((operation, limit))
}

/// What to do after a whole-request failure, whatever the request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Wait, then send the same documents again (to the next URL if `failover`).
    Retry { failover: bool },
    /// The body is too large for the node (413, or a 429 from indexing
    /// pressure for a request over the limit on its own): send it in two halves.
    Split,
}

// `RequestFailure` is the client's type (it produces it); its meaning is ours.
impl RequestFailure {
    pub fn action(&self) -> Action {
        match self {
            RequestFailure::Transport(_) => Action::Retry { failover: true },
            RequestFailure::Status { status: 413, .. } => Action::Split,
            RequestFailure::Status { status: 429, body } if over_indexing_pressure(body).is_some() => Action::Split,
            // 5xx from one node says little about the others.
            RequestFailure::Status { status, .. } if *status >= 500 => Action::Retry { failover: true },
            // 429 (cluster busy), 401/403 (credentials being rotated), 404 (a proxy
            // in the way): nothing a different attempt of ours would fix, but also
            // nothing worth losing documents over. Retry and log loudly.
            RequestFailure::Status { .. } => Action::Retry { failover: false },
            RequestFailure::Malformed(_) => Action::Retry { failover: true },
        }
    }

    /// A 4xx other than 429: the cluster refuses us as we are set up
    /// (credentials, privileges, a proxy, a size limit). It is retried like any
    /// failure, but nothing changes until someone acts, so where a failure is
    /// worth an error rather than a warning (the template installer), this is it.
    pub fn needs_an_operator(&self) -> bool {
        matches!(self, RequestFailure::Status { status, .. } if (400..500).contains(status) && *status != 429)
    }
}

fn truncate(body: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&body[..body.len().min(max)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::protocol::outcome::answers::{BLOCKED, MIXED};
    use crate::sink::protocol::outcome::Outcome;

    #[test]
    fn classification() {
        assert_eq!(RequestFailure::Transport("refused".into()).action(), Action::Retry { failover: true });
        assert_eq!(
            RequestFailure::Status { status: 503, body: String::new() }.action(),
            Action::Retry { failover: true }
        );
        assert_eq!(
            RequestFailure::Status { status: 429, body: String::new() }.action(),
            Action::Retry { failover: false }
        );
        assert_eq!(RequestFailure::Status { status: 413, body: String::new() }.action(), Action::Split);
        assert_eq!(
            RequestFailure::Status { status: 401, body: String::new() }.action(),
            Action::Retry { failover: false }
        );
    }

    // Whole bulk attempts, judged by `classify`, with the literal bodies
    // Elasticsearch 8.x sends.

    fn reply(status: u16, body: &str) -> Result<Reply, RequestFailure> {
        Ok(Reply { status, body: bytes::Bytes::copy_from_slice(body.as_bytes()) })
    }

    /// The whole-request verdict, or a panic naming what came instead.
    fn retry(verdict: Verdict) -> (RequestFailure, bool) {
        match verdict {
            Verdict::Retry { failure, failover } => (failure, failover),
            other => panic!("expected a retry: {other:?}"),
        }
    }

    #[test]
    fn a_mixed_200_is_judged_item_by_item() {
        let Verdict::Items(outcomes) = classify(reply(200, MIXED), 5) else {
            panic!("a 200 bulk response is per item")
        };
        assert_eq!(outcomes[0], Outcome::Created);
        assert_eq!(outcomes[1], Outcome::Duplicate);
        assert!(matches!(&outcomes[2], Outcome::Retry { status: 429, .. }));
        assert!(
            matches!(&outcomes[3], Outcome::Reject { status: 400, error_type, .. } if error_type == "document_parsing_exception")
        );
        assert!(matches!(&outcomes[4], Outcome::Retry { status: 503, .. }));
    }

    #[test]
    fn item_errors_other_than_retryable_4xx_are_dead_lettered_with_their_reason() {
        let body = r#"{"errors":true,"took":0,"items":[
          {"create":{"_index":"audit-2026.01.01","_id":"a","status":400,"error":{"type":"illegal_argument_exception","reason":"Limit of total fields [2000] has been exceeded while adding new fields [1]"}}},
          {"create":{"_index":"audit-2026.01.01","_id":"b","status":404,"error":{"type":"index_not_found_exception","reason":"no such index [audit-2026.01.01] and [action.auto_create_index] ([.kube*]) doesn't match","index_uuid":"_na_","index":"audit-2026.01.01"}}},
          {"create":{"_index":"audit-2026.01.01","_id":"c","status":408,"error":{"type":"process_cluster_event_timeout_exception","reason":"failed to process cluster event (put-mapping [audit-2026.01.01/x]) within 30s"}}},
          {"create":{"_index":"audit-2026.01.01","_id":"d","status":401,"error":{"type":"security_exception","reason":"missing authentication credentials"}}}
        ]}"#;
        let Verdict::Items(outcomes) = classify(reply(200, body), 4) else { panic!("a 200 bulk response is per item") };
        assert_eq!(
            outcomes[0],
            Outcome::Reject {
                status: 400,
                error_type: "illegal_argument_exception".into(),
                reason: "illegal_argument_exception: Limit of total fields [2000] has been exceeded while adding new fields [1]"
                    .into(),
            }
        );
        assert!(
            matches!(&outcomes[1], Outcome::Retry { status: 404, error } if error.starts_with("index_not_found_exception"))
        );
        assert!(matches!(&outcomes[2], Outcome::Retry { status: 408, .. }));
        assert!(matches!(&outcomes[3], Outcome::Retry { status: 401, .. }));
    }

    #[test]
    fn a_413_splits_and_a_single_document_too_large_is_dead_lettered() {
        // Elasticsearch answers a body over `http.max_content_length` with an
        // empty 413; a proxy in front of it with its own page.
        assert!(matches!(
            classify(reply(413, ""), 8),
            Verdict::Split { failure: RequestFailure::Status { status: 413, .. } }
        ));
        let nginx = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
        match classify(reply(413, nginx), 1) {
            Verdict::DeadLetter { failure, rejection } => {
                assert_eq!(rejection.status, Some(413));
                assert_eq!(rejection.error_type, "request_entity_too_large");
                assert_eq!(rejection.reason, failure.to_string());
                assert!(rejection.reason.starts_with("HTTP 413: <html>"));
            }
            other => panic!("a single document too large is final: {other:?}"),
        }
    }

    #[test]
    fn a_busy_cluster_is_retried_on_the_same_url() {
        let rejected = r#"{"error":{"root_cause":[{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation [coordinating_and_primary_bytes=104857600, replica_bytes=0, all_bytes=104857600, coordinating_operation_bytes=2097152, max_coordinating_and_primary_bytes=107374182]"}],"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation [coordinating_and_primary_bytes=104857600, replica_bytes=0, all_bytes=104857600, coordinating_operation_bytes=2097152, max_coordinating_and_primary_bytes=107374182]"},"status":429}"#;
        let (failure, failover) = retry(classify(reply(429, rejected), 100));
        assert!(!failover, "every node of a busy cluster is busy");
        assert!(
            matches!(&failure, RequestFailure::Status { status: 429, body } if body.contains("es_rejected_execution_exception"))
        );

        // A parent circuit breaker says PERMANENT, but it is about this node's
        // heap right now, not about the documents.
        let breaker = r#"{"error":{"root_cause":[{"type":"circuit_breaking_exception","reason":"[parent] Data too large, data for [<http_request>] would be [1031181488/983.4mb], which is larger than the limit of [986932838/941.2mb], real usage: [1031181488/983.4mb], new bytes reserved: [0/0b], usages [model_inference=0/0b, inflight_requests=0/0b, request=0/0b, fielddata=0/0b, eql_sequence=0/0b]","bytes_wanted":1031181488,"bytes_limit":986932838,"durability":"PERMANENT"}],"type":"circuit_breaking_exception","reason":"[parent] Data too large, data for [<http_request>] would be [1031181488/983.4mb], which is larger than the limit of [986932838/941.2mb], real usage: [1031181488/983.4mb], new bytes reserved: [0/0b], usages [model_inference=0/0b, inflight_requests=0/0b, request=0/0b, fielddata=0/0b, eql_sequence=0/0b]","bytes_wanted":1031181488,"bytes_limit":986932838,"durability":"PERMANENT"},"status":429}"#;
        let (failure, failover) = retry(classify(reply(429, breaker), 100));
        assert!(!failover);
        assert!(!failure.needs_an_operator(), "a 429 passes on its own");
        // The log keeps the start of the body, not all of it.
        assert!(matches!(&failure, RequestFailure::Status { body, .. } if body.len() == FAILURE_BODY_BYTES));
    }

    #[test]
    fn bad_credentials_are_retried_on_the_same_url_and_need_an_operator() {
        let unauthenticated = r#"{"error":{"root_cause":[{"type":"security_exception","reason":"unable to authenticate user [klg] for REST request [/_bulk]","header":{"WWW-Authenticate":["Basic realm=\"security\", charset=\"UTF-8\"","Bearer realm=\"security\"","ApiKey"]}}],"type":"security_exception","reason":"unable to authenticate user [klg] for REST request [/_bulk]","header":{"WWW-Authenticate":["Basic realm=\"security\", charset=\"UTF-8\"","Bearer realm=\"security\"","ApiKey"]}},"status":401}"#;
        let (failure, failover) = retry(classify(reply(401, unauthenticated), 10));
        assert!(!failover, "the other nodes check the same credentials");
        assert!(failure.needs_an_operator());
        let forbidden = r#"{"error":{"root_cause":[{"type":"security_exception","reason":"action [indices:admin/index_template/put] is unauthorized for user [klg] with effective roles [klg_writer], this action is granted by the cluster privileges [manage_index_templates,manage,all]"}],"type":"security_exception","reason":"action [indices:admin/index_template/put] is unauthorized for user [klg] with effective roles [klg_writer], this action is granted by the cluster privileges [manage_index_templates,manage,all]"},"status":403}"#;
        let (failure, failover) = retry(classify(reply(403, forbidden), 10));
        assert!(!failover);
        assert!(failure.needs_an_operator());
    }

    #[test]
    fn an_unavailable_cluster_is_retried_on_the_next_url() {
        let blocked = r#"{"error":{"root_cause":[{"type":"cluster_block_exception","reason":"blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];"}],"type":"cluster_block_exception","reason":"blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];"},"status":503}"#;
        let no_shard = r#"{"error":{"root_cause":[{"type":"no_shard_available_action_exception","reason":null}],"type":"no_shard_available_action_exception","reason":null},"status":503}"#;
        for body in [blocked, no_shard] {
            let (failure, failover) = retry(classify(reply(503, body), 10));
            assert!(failover, "another node may be up: {body}");
            assert!(!failure.needs_an_operator());
        }
    }

    #[test]
    fn a_200_that_is_not_a_bulk_response_is_retried_on_the_next_url() {
        // What a misrouting proxy or a wrong path prefix answers: the root
        // endpoint of some Elasticsearch, not the `_bulk` of ours.
        let root = r#"{"name":"es-1","cluster_name":"logs","cluster_uuid":"f0XhKb3vS6yqUC1zXoWm6w","version":{"number":"8.19.0","build_flavor":"default","build_type":"docker","build_hash":"0000000","build_date":"2025-07-01T00:00:00.000Z","build_snapshot":false,"lucene_version":"9.12.2","minimum_wire_compatibility_version":"7.17.0","minimum_index_compatibility_version":"7.0.0"},"tagline":"You Know, for Search"}"#;
        let (failure, failover) = retry(classify(reply(200, root), 3));
        assert!(failover);
        assert!(
            matches!(failure, RequestFailure::Malformed(e) if e.starts_with("bulk response is not the expected JSON"))
        );
        // Items that cannot be matched to the documents sent are not guessed at.
        let short = r#"{"errors":false,"took":1,"items":[{"create":{"_index":"i","_id":"1","status":201}}]}"#;
        let (failure, failover) = retry(classify(reply(200, short), 3));
        assert!(failover);
        assert_eq!(failure, RequestFailure::Malformed("bulk response has 1 items for 3 documents".into()));
    }

    #[test]
    fn a_transport_error_is_retried_on_the_next_url() {
        let refused = RequestFailure::Transport(
            "error sending request for url (http://es-1:9200/_bulk): client error (Connect): tcp connect error: Connection refused (os error 111)".into(),
        );
        let (failure, failover) = retry(classify(Err(refused.clone()), 10));
        assert!(failover);
        assert_eq!(failure, refused);
        assert!(!failure.needs_an_operator());
    }

    // Captured from Elasticsearch 8.19 (single node, 512 MiB heap, so
    // `indexing_pressure.memory.limit` = 10 % = 53687091 bytes).

    /// `POST /_bulk` of one document with a 60 MiB string: the request alone
    /// is over the limit, so even an idle node refuses it.
    const TOO_LARGE_FOR_INDEXING_PRESSURE: &str = r#"{"error":{"root_cause":[{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=62914848, max_coordinating_bytes=53687091]"}],"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=62914848, max_coordinating_bytes=53687091]"},"status":429}"#;

    #[test]
    fn a_429_for_a_request_over_the_indexing_pressure_limit_splits_and_dead_letters_a_single_document() {
        assert_eq!(over_indexing_pressure(TOO_LARGE_FOR_INDEXING_PRESSURE), Some((62914848, 53687091)));
        assert!(matches!(
            classify(reply(429, TOO_LARGE_FOR_INDEXING_PRESSURE), 2),
            Verdict::Split { failure: RequestFailure::Status { status: 429, .. } }
        ));
        match classify(reply(429, TOO_LARGE_FOR_INDEXING_PRESSURE), 1) {
            Verdict::DeadLetter { rejection, .. } => {
                assert_eq!(rejection.status, Some(429));
                assert_eq!(rejection.error_type, "es_rejected_execution_exception");
                assert!(rejection.reason.contains("(62914848 > 53687091 bytes"), "{}", rejection.reason);
                assert!(rejection.reason.contains("coordinating_operation_bytes=62914848"), "{}", rejection.reason);
            }
            other => panic!("a single document over the limit is final: {other:?}"),
        }
    }

    #[test]
    fn a_429_for_a_request_that_fits_the_limit_is_a_busy_cluster() {
        // The node is busy with others' bytes; this request (2 MiB) fits.
        let busy = r#"{"error":{"root_cause":[{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation [coordinating_and_primary_bytes=52428800, replica_bytes=0, all_bytes=52428800, coordinating_operation_bytes=2097152, max_coordinating_bytes=53687091]"}],"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation [coordinating_and_primary_bytes=52428800, replica_bytes=0, all_bytes=52428800, coordinating_operation_bytes=2097152, max_coordinating_bytes=53687091]"},"status":429}"#;
        assert_eq!(over_indexing_pressure(busy), None);
        let (_, failover) = retry(classify(reply(429, busy), 1));
        assert!(!failover);
        // A proxy's 429 says nothing about sizes: a busy cluster.
        assert_eq!(over_indexing_pressure("<html>429 Too Many Requests</html>"), None);
        let (_, failover) = retry(classify(reply(429, "<html>429 Too Many Requests</html>"), 1));
        assert!(!failover);
    }

    #[test]
    fn a_document_over_max_document_bytes_is_refused_before_it_is_sent() {
        assert!(oversized(1024, 1024).is_none());
        let rejection = oversized(1025, 1024).expect("over the bound");
        assert_eq!(rejection.status, None);
        assert_eq!(rejection.error_type, "document_too_large");
        assert!(rejection.reason.contains("1025 bytes"), "{}", rejection.reason);
        assert!(rejection.reason.contains("elasticsearch.max_document_bytes (1024)"), "{}", rejection.reason);
    }

    #[test]
    fn what_an_answer_says_about_load() {
        let all_created = r#"{"errors":false,"took":1,"items":[{"create":{"_index":"a","_id":"1","status":201}}]}"#;
        assert_eq!(classify(reply(200, all_created), 1).pressure(), Pressure::Normal);
        assert_eq!(classify(reply(200, MIXED), 5).pressure(), Pressure::Back, "an item's 429");
        assert_eq!(classify(reply(200, BLOCKED), 4).pressure(), Pressure::Normal, "a flood-stage block is not load");
        assert_eq!(classify(reply(429, "<html>busy</html>"), 2).pressure(), Pressure::Back);
        assert_eq!(classify(reply(503, "{}"), 2).pressure(), Pressure::Back);
        assert_eq!(classify(Err(RequestFailure::Transport("timed out".into())), 2).pressure(), Pressure::Back);
        assert_eq!(classify(reply(429, TOO_LARGE_FOR_INDEXING_PRESSURE), 2).pressure(), Pressure::Unrelated);
        assert_eq!(classify(reply(413, ""), 2).pressure(), Pressure::Unrelated);
        assert_eq!(classify(reply(401, ""), 2).pressure(), Pressure::Unrelated);
        assert_eq!(classify(reply(500, ""), 2).pressure(), Pressure::Unrelated);
    }
}
