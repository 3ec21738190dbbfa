//! `POST {audit_path}`: authenticate, read the body within limits, split it into
//! events, normalize each, commit the documents to the spool, and only then
//! answer 200. Every refusal says what was wrong.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::value::RawValue;

use super::auth::{authenticate, Denied, Tokens};
use super::body;
use super::budget::Budget;
use super::document::AuditNormalizer;
use super::event::{parse_event_list, split_items, AuditEvent, PayloadError};
use super::limits::ClientLimiter;
use crate::server::peer::Peer;
use crate::server::Committing;
use crate::spool::entry::EntryWriter;
use crate::spool::{Spool, SpoolError};
use crate::telemetry::{self, CodeLabels, EventLabels, EventResult};

pub struct Webhook {
    pub normalizer: AuditNormalizer,
    pub spool: Spool,
    pub tokens: Option<Tokens>,
    pub allow_unauthenticated: bool,
    pub limiter: Option<ClientLimiter>,
    pub max_body_bytes: u64,
    pub retry_after_seconds: u64,
    /// What requests in flight may hold in memory, together.
    pub budget: Arc<Budget>,
}

/// The 200 body. kube-apiserver ignores it; people debugging with curl do not.
#[derive(Serialize)]
pub struct Accepted {
    pub accepted: usize,
    pub rejected: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ItemError>,
}

#[derive(Serialize)]
pub struct ItemError {
    /// Position in `items` (or in the array), from 0.
    pub item: usize,
    #[serde(rename = "auditID", skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
    pub reason: String,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody { error: message.into() })).into_response()
}

fn retry_after(status: StatusCode, seconds: u64, message: String) -> Response {
    let mut resp = error(status, message);
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    resp
}

pub async fn handle(
    State(w): State<Arc<Webhook>>,
    Extension(peer): Extension<Peer>,
    committing: Option<Extension<Committing>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle_inner(&w, &peer, committing.map(|Extension(c)| c), &headers, body).await
}

/// Counts every webhook response by status code (including 404 and 405, which
/// never reach [`handle`]) and times it.
pub async fn count_responses(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = Instant::now();
    let resp = next.run(req).await;
    let m = telemetry::metrics();
    m.webhook_requests.get_or_create(&CodeLabels { code: resp.status().as_u16() }).inc();
    m.webhook_request_seconds.observe(started.elapsed().as_secs_f64());
    resp
}

/// kube-apiserver retries an answer only if it is a 500, a 429, or carries
/// `Retry-After`; a 503 or 408 without it drops the batch for good. Every
/// transient answer of the webhook already says when to come back; this makes
/// sure one added later cannot forget: a 408, 429 or 5xx without `Retry-After`
/// gets `server.retry_after_seconds`.
pub async fn transient_retry_after(
    State(seconds): State<u64>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut resp = next.run(req).await;
    with_retry_after(&mut resp, seconds);
    resp
}

fn with_retry_after(resp: &mut Response, seconds: u64) {
    let status = resp.status();
    let transient =
        status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
    if transient && !resp.headers().contains_key(header::RETRY_AFTER) {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
}

async fn handle_inner(
    w: &Webhook,
    peer: &Peer,
    committing: Option<Committing>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let who = match authenticate(peer, authorization, w.tokens.as_ref(), w.allow_unauthenticated) {
        Ok(who) => who,
        Err(denied) => {
            let message = match denied {
                Denied::Missing => "authentication required: a client certificate or an Authorization: Bearer token",
                Denied::BadToken => "the bearer token is not valid",
            };
            tracing::warn!(peer = %peer.addr, "refused: {message}");
            let mut resp = error(StatusCode::UNAUTHORIZED, message);
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    };
    let gzip = match body::check_headers(headers) {
        Ok(g) => g,
        Err(e) => return error(e.status, e.message),
    };
    // Held until the answer: the body, its events and their documents.
    let mut charge = w.budget.charge();
    let bytes = match body::read(body, headers, gzip, w.max_body_bytes, &mut charge).await {
        Ok(b) => b,
        Err(e) => {
            let mut resp = error(e.status, e.message);
            if let Some(bytes) = e.drain_up_to {
                resp.extensions_mut().insert(crate::server::DrainUpTo(bytes));
            }
            return resp;
        }
    };
    let items = match Items::parse(&bytes) {
        Ok(items) => items,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let count = items.len();
    if let Err(refused) = charge.grow_to(held_while_decoding(bytes.len(), count)).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, refused.to_string());
    }
    if let Some(limiter) = &w.limiter {
        if let Err(wait) = limiter.check(&who, count as u32) {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            telemetry::metrics()
                .audit_events
                .get_or_create(&EventLabels { result: EventResult::rate_limited })
                .inc_by(count as u64);
            return retry_after(
                StatusCode::TOO_MANY_REQUESTS,
                seconds,
                format!("rate limit for {who} exceeded (server.rate_limit); retry in {seconds} s"),
            );
        }
    }
    let (entry, errors) = match normalize(&w.normalizer, &bytes, items) {
        Ok(normalized) => normalized,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let rejected = errors.len();
    let accepted = count - rejected;
    if !entry.is_empty() {
        // Once handed to the spool the batch is committed whatever happens to
        // this request: the answer must say how that went, not 408.
        if let Some(c) = &committing {
            c.set();
        }
        match w.spool.append_entry(entry).await {
            Ok(_) => {}
            Err(SpoolError::Full { used, max }) => {
                telemetry::metrics()
                    .audit_events
                    .get_or_create(&EventLabels { result: EventResult::spool_full })
                    .inc_by(count as u64);
                return retry_after(
                    StatusCode::TOO_MANY_REQUESTS,
                    w.retry_after_seconds,
                    format!("spool is full ({used} of {max} bytes); Elasticsearch is behind, retry later"),
                );
            }
            Err(e) => {
                // A full disk or an I/O error: nothing was written. The writer
                // reopens the database and /readyz says 503 until a write
                // succeeds again, so this is worth a retry, here or elsewhere.
                tracing::error!("spool append failed: {e}");
                telemetry::metrics()
                    .audit_events
                    .get_or_create(&EventLabels { result: EventResult::spool_error })
                    .inc_by(count as u64);
                return retry_after(
                    StatusCode::SERVICE_UNAVAILABLE,
                    w.retry_after_seconds,
                    format!("cannot spool the batch, retry later: {e}"),
                );
            }
        }
    }
    if rejected > 0 {
        tracing::warn!(client = %who, rejected, first = %errors[0].reason, "refused invalid audit events (kept in the dead-letter index)");
    }
    let m = &telemetry::metrics().audit_events;
    m.get_or_create(&EventLabels { result: EventResult::accepted }).inc_by(accepted as u64);
    m.get_or_create(&EventLabels { result: EventResult::rejected }).inc_by(rejected as u64);
    (StatusCode::OK, Json(Accepted { accepted, rejected, errors })).into_response()
}

/// A request's events: parsed already when the body took the one-pass path
/// ([`parse_event_list`]), else raw, to be parsed one by one.
pub enum Items<'a> {
    Parsed(Vec<AuditEvent<'a>>),
    Raw(Vec<&'a RawValue>),
}

impl<'a> Items<'a> {
    /// The body's events, or why it is not a body of events at all.
    pub fn parse(body: &'a [u8]) -> Result<Items<'a>, PayloadError> {
        match parse_event_list(body) {
            Some(events) => Ok(Items::Parsed(events)),
            None => split_items(body).map(Items::Raw),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Items::Parsed(events) => events.len(),
            Items::Raw(items) => items.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Normalizes a request's events into its spool entry; an invalid event
/// becomes its dead-letter document, in its place, and an [`ItemError`].
///
/// An event parsed in one pass that the normalizer refuses (a time that is not
/// a time) needs its raw text for the dead letter and its error: the entry is
/// then started again on the two-pass path, so that a refused item is reported
/// and kept exactly as the two-pass path always did.
pub fn normalize<'a>(
    normalizer: &AuditNormalizer,
    body: &'a [u8],
    items: Items<'a>,
) -> Result<(EntryWriter, Vec<ItemError>), PayloadError> {
    let capacity = entry_capacity(body.len(), items.len());
    let mut batch = normalizer.batch();
    let raw = match items {
        Items::Parsed(events) => {
            let mut entry = EntryWriter::with_capacity(capacity);
            let mut events = events.into_iter();
            if events.all(|event| normalizer.write_event(event, &mut batch, &mut entry).is_ok()) {
                return Ok((entry, Vec::new()));
            }
            split_items(body)?
        }
        Items::Raw(raw) => raw,
    };
    let mut entry = EntryWriter::with_capacity(capacity);
    let mut errors = Vec::new();
    for (i, raw) in raw.iter().enumerate() {
        if let Err(reason) = normalizer.normalize_into(raw, &mut batch, &mut entry) {
            entry.push(&normalizer.rejected(raw, &reason));
            errors.push(ItemError { item: i, audit_id: audit_id_of(raw), reason });
        }
    }
    Ok((entry, errors))
}

/// Room for a request's documents in its spool entry: a document is its event
/// plus the derived ECS fields (≈ 600 bytes) and the entry's index and `_id`
/// (≈ 100). Too little only costs a reallocation.
pub fn entry_capacity(body_bytes: usize, events: usize) -> usize {
    body_bytes + events * 704
}

/// What a request holds at its peak: its body, its parsed events (they borrow
/// their text from the body), its spool entry and, while the entry is being
/// compressed for the spool, the compressed copy (JSON shrinks about 5×).
pub fn held_while_decoding(body_bytes: usize, events: usize) -> u64 {
    let entry = entry_capacity(body_bytes, events);
    (body_bytes + events * std::mem::size_of::<AuditEvent>() + entry + entry / 4) as u64
}

/// The `auditID` of an invalid item, when it has one, for the error report.
fn audit_id_of(raw: &serde_json::value::RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        #[serde(rename = "auditID")]
        audit_id: Option<String>,
    }
    serde_json::from_str::<Id>(raw.get()).ok().and_then(|i| i.audit_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_answers_say_when_to_retry() {
        // The 503 the handler gives when the spool cannot write, and the 429s.
        let spool_error = retry_after(StatusCode::SERVICE_UNAVAILABLE, 2, "cannot spool the batch: disk".into());
        assert_eq!(spool_error.headers()[header::RETRY_AFTER], "2");
        let limited = retry_after(StatusCode::TOO_MANY_REQUESTS, 3, "rate limit".into());
        assert_eq!(limited.headers()[header::RETRY_AFTER], "3");

        // Any transient status that forgot it gets one; its own value is kept.
        for status in [
            StatusCode::REQUEST_TIMEOUT,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT,
        ] {
            let mut resp = error(status, "transient");
            with_retry_after(&mut resp, 4);
            assert_eq!(resp.headers()[header::RETRY_AFTER], "4", "{status}");
        }
        let mut resp = retry_after(StatusCode::SERVICE_UNAVAILABLE, 1, "x".into());
        with_retry_after(&mut resp, 4);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");

        // Permanent refusals carry none: they are meant to be dropped.
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::NOT_FOUND,
            StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ] {
            let mut resp = error(status, "permanent");
            with_retry_after(&mut resp, 4);
            assert!(!resp.headers().contains_key(header::RETRY_AFTER), "{status}");
        }
    }

    fn normalizer() -> AuditNormalizer {
        super::super::document::test_normalizer()
    }

    /// The plain entry with the times of normalizing — every `event.ingested`,
    /// and a dead letter's `@timestamp` — set to one value (of the same length,
    /// so the entry's lengths still hold).
    fn plain_without_ingested(entry: EntryWriter) -> String {
        // Lossy: the entry's binary length prefixes need not be UTF-8.
        let mut plain = String::from_utf8_lossy(&entry.into_plain()).into_owned();
        for key in ["\"ingested\":\"", "\"@timestamp\":\""] {
            let mut out = String::new();
            let mut rest = plain.as_str();
            while let Some(i) = rest.find(key) {
                let start = i + key.len();
                out.push_str(&rest[..start]);
                let end = start + rest[start..].find('"').unwrap();
                out.push_str(&"9".repeat(end - start));
                rest = &rest[end..];
            }
            out.push_str(rest);
            plain = out;
        }
        plain
    }

    fn raw_items(body: &[u8]) -> Items<'_> {
        Items::Raw(split_items(body).unwrap())
    }

    #[test]
    fn one_pass_and_two_passes_write_the_same_entry() {
        let n = normalizer();
        let body = crate::sample::event_list("h", 30, 4, 300);
        let items = Items::parse(body.as_bytes()).unwrap();
        assert!(matches!(items, Items::Parsed(_)));
        let (one, errors) = normalize(&n, body.as_bytes(), items).unwrap();
        assert!(errors.is_empty());
        assert_eq!(one.len(), 30);
        let (two, errors) = normalize(&n, body.as_bytes(), raw_items(body.as_bytes())).unwrap();
        assert!(errors.is_empty());
        assert_eq!(plain_without_ingested(one), plain_without_ingested(two));
    }

    #[test]
    fn an_event_the_normalizer_refuses_sends_the_request_the_two_pass_way() {
        let n = normalizer();
        let good = crate::sample::event("g-1", 1, false, 0);
        let bad = crate::sample::event("g-2", 2, false, 0).replacen(
            "\"stageTimestamp\":\"",
            "\"stageTimestamp\":\"not a time ",
            1,
        );
        let body = format!(r#"{{"kind":"EventList","items":[{good},{bad},{good}]}}"#);
        let items = Items::parse(body.as_bytes()).unwrap();
        assert!(matches!(items, Items::Parsed(_)), "it parses; the normalizer refuses it");
        let (one, errors) = normalize(&n, body.as_bytes(), items).unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].item, 1);
        assert_eq!(errors[0].audit_id.as_deref(), Some("g-2"));
        assert!(errors[0].reason.starts_with("field `stageTimestamp`"), "{}", errors[0].reason);
        assert_eq!(one.len(), 3, "the refused item's dead letter is in its place");
        let (two, errors_two) = normalize(&n, body.as_bytes(), raw_items(body.as_bytes())).unwrap();
        assert_eq!(serde_json::to_string(&errors).unwrap(), serde_json::to_string(&errors_two).unwrap());
        assert_eq!(plain_without_ingested(one), plain_without_ingested(two));
    }
}
