//! One bulk worker: sends one batch until every document in it is final.
//!
//! A worker keeps its batch until every item is final: 429/5xx items are resent
//! (only those), refused items become dead letters, a 413 splits the batch.
//! Each round is: attempt, let the [`policy`] judge the answer once, tell the
//! [`Concurrency`] what the verdict says about load, apply the verdict.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::concurrency::Concurrency;
use super::data_stream::{Assumed, Streams};
use super::dead_letter::DeadLetters;
use super::encoder;
use super::outcome::{Block, Outcome};
use super::policy::{self, Verdict};
use super::rate_limit::DocLimiter;
use super::retry::Backoff;
use crate::document::dead_letter::Rejection;
use crate::document::Document;
use crate::log_throttle::LogThrottle;
use crate::shutdown::Shutdown;
use crate::sink::config::RetryConfig;
use crate::sink::report::DeliveryReport;
use crate::sink::transport::{EsClient, Reply, RequestFailure};
use crate::telemetry::{self, BlockLabels, BlockReason, BulkLabels, BulkResult, DocOutcome};

/// Counts a submission's documents down to zero, then reports. If the last
/// reference is dropped before that (shutdown), the sender is dropped and the
/// submitter sees [`Cancelled`].
pub struct Tracker {
    remaining: AtomicUsize,
    report: Mutex<DeliveryReport>,
    done: Mutex<Option<oneshot::Sender<DeliveryReport>>>,
}

impl Tracker {
    /// A tracker for a submission of `documents` (at least one).
    pub fn new(documents: usize, done: oneshot::Sender<DeliveryReport>) -> Arc<Tracker> {
        Arc::new(Tracker {
            remaining: AtomicUsize::new(documents),
            report: Mutex::new(DeliveryReport::default()),
            done: Mutex::new(Some(done)),
        })
    }
}

#[derive(Clone, Copy)]
enum Final {
    Created,
    Duplicate,
    DeadLettered,
}

impl Tracker {
    fn finish(&self, how: Final) {
        {
            let mut r = self.report.lock().expect("tracker poisoned");
            match how {
                Final::Created => r.created += 1,
                Final::Duplicate => r.duplicates += 1,
                Final::DeadLettered => r.dead_lettered += 1,
            }
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let report = *self.report.lock().expect("tracker poisoned");
            if let Some(done) = self.done.lock().expect("tracker poisoned").take() {
                let _ = done.send(report);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    /// The dead-letter copy of a refused primary.
    DeadLetter,
}

pub struct Pending {
    pub doc: Document,
    pub role: Role,
    pub tracker: Arc<Tracker>,
}

/// What every bulk worker shares.
pub struct Inner {
    pub client: Arc<EsClient>,
    pub dead_letters: DeadLetters,
    pub limiter: Option<DocLimiter>,
    /// With data streams: each stream's backing indices, for the lookups
    /// that keep a resend across a rollover from being written twice.
    pub streams: Option<Streams>,
    pub retry: RetryConfig,
    pub shutdown: Shutdown,
    pub error_log: LogThrottle,
    pub dead_letter_log: LogThrottle,
    pub blocked_log: LogThrottle,
    /// Items retried with their own status (see `report_item_retries`).
    pub item_retry_log: LogThrottle,
    pub max_document_bytes: usize,
    pub dead_letter_max_original_bytes: usize,
}

/// Sends one batch until every document in it is final. A 413 splits the
/// batch, so its parts wait in a queue, the second half at the front to follow
/// the first. One backoff serves the whole batch:
/// the longer it keeps failing, for whatever reason, the longer it waits.
pub async fn send_until_final(inner: &Inner, slots: &Concurrency, batch: Vec<Pending>) {
    let batch = refuse_oversized(inner, batch);
    let mut parts: VecDeque<Vec<Pending>> = VecDeque::from([batch]);
    let mut backoff = Backoff::new(&inner.retry);
    while let Some(mut todo) = parts.pop_front() {
        while !todo.is_empty() {
            let assumed = match &inner.streams {
                None => None,
                Some(streams) => match without_earlier_copies(inner, streams, todo).await {
                    Ok((left, assumed)) => {
                        todo = left;
                        Some(assumed)
                    }
                    Err((left, failure)) => {
                        todo = left;
                        report_failure(inner, &failure, todo.len());
                        if !backoff.wait(&inner.shutdown).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            if todo.is_empty() {
                break;
            }
            let Some((node, reply, rtt)) = attempt(inner, &todo).await else { return };
            let body = reply.as_ref().ok().filter(|_| assumed.is_some()).map(|r| r.body.clone());
            let mut verdict = policy::classify(reply, todo.len());
            if let (Some(streams), Some(assumed), Some(body), Verdict::Items(outcomes)) =
                (&inner.streams, &assumed, &body, &mut verdict)
            {
                undo_copies_written_twice(inner, streams, &todo, body, outcomes, assumed).await;
            }
            slots.record(rtt, verdict.pressure());
            let next = apply(inner, verdict, node, todo, &mut parts);
            if next.wait && !backoff.wait(&inner.shutdown).await {
                return;
            }
            todo = next.todo;
        }
    }
}

/// Data streams: documents already stored in an earlier backing index are
/// finished as duplicates before the write; the rest are returned with the
/// write indices the lookup assumed. On a failed lookup nothing is finished.
async fn without_earlier_copies(
    inner: &Inner,
    streams: &Streams,
    todo: Vec<Pending>,
) -> Result<(Vec<Pending>, Assumed), (Vec<Pending>, RequestFailure)> {
    let docs: Vec<&Document> = todo.iter().map(|p| &p.doc).collect();
    let (found, assumed) = match streams.before_write(&docs).await {
        Ok(answer) => answer,
        Err(failure) => return Err((todo, failure)),
    };
    let (stored, left): (Vec<_>, Vec<_>) = todo.into_iter().zip(found).partition(|(_, found)| *found);
    if !stored.is_empty() {
        let stored: Vec<Pending> = stored.into_iter().map(|(p, _)| p).collect();
        let n = stored.len();
        settle(inner, stored, vec![Outcome::Duplicate; n]);
    }
    Ok((left.into_iter().map(|(p, _)| p).collect(), assumed))
}

/// Data streams, after a bulk answer: copies a rollover let through twice are
/// deleted and become duplicates. The lookup is retried until it is done: a
/// document is final only once it is known to be stored once.
async fn undo_copies_written_twice(
    inner: &Inner,
    streams: &Streams,
    todo: &[Pending],
    body: &Bytes,
    outcomes: &mut [Outcome],
    assumed: &Assumed,
) {
    let docs: Vec<&Document> = todo.iter().map(|p| &p.doc).collect();
    let mut backoff = Backoff::new(&inner.retry);
    while let Err(failure) = streams.after_write(&docs, body, outcomes, assumed).await {
        if let Some(suppressed) = inner.error_log.check() {
            tracing::warn!(url = %inner.client.current_url(), documents = docs.len(), suppressed,
                "looking up documents written across a data stream rollover failed, will retry: {failure}");
        }
        if !backoff.wait(&inner.shutdown).await {
            return;
        }
    }
}

/// What is left of a part after a verdict, and whether to back off before
/// sending it: not after a split or a fresh dead letter, which are new requests
/// rather than the same one failing again.
struct Next {
    todo: Vec<Pending>,
    wait: bool,
}

/// One bulk request: the rate limit, then encode, send, read; with its round
/// trip time. `None` if the shutdown aborted meanwhile. The encoded body is not kept between attempts:
/// what is resent changes (only the retried items, a half, dead letters).
async fn attempt(inner: &Inner, todo: &[Pending]) -> Option<(usize, Result<Reply, RequestFailure>, Duration)> {
    if let Some(limiter) = &inner.limiter {
        tokio::select! {
            _ = limiter.until_ready(todo.len()) => {}
            _ = inner.shutdown.aborted() => return None,
        }
    }
    let body = Bytes::from(encoder::bulk_body(todo.iter().map(|p| &p.doc)));
    let in_flight = &telemetry::metrics().es_in_flight_requests;
    in_flight.inc();
    let started = Instant::now();
    let sent = tokio::select! {
        r = inner.client.bulk(body) => Some(r),
        _ = inner.shutdown.aborted() => None,
    };
    let rtt = started.elapsed();
    in_flight.dec();
    let (node, reply) = sent?;
    telemetry::metrics().bulk_seconds.observe(rtt.as_secs_f64());
    Some((node, reply, rtt))
}

/// Carries out the policy's verdict on `todo`, which was just sent to `node`.
/// A second half of a split goes to the front of `parts`.
fn apply(
    inner: &Inner,
    verdict: Verdict,
    node: usize,
    mut todo: Vec<Pending>,
    parts: &mut VecDeque<Vec<Pending>>,
) -> Next {
    match verdict {
        Verdict::Items(outcomes) => {
            count_bulk(BulkResult::ok);
            settle(inner, todo, outcomes)
        }
        Verdict::Retry { failure, failover } => {
            report_failure(inner, &failure, todo.len());
            if failover {
                inner.client.fail_over(node);
                telemetry::metrics().es_failovers.inc();
            }
            Next { todo, wait: true }
        }
        Verdict::Split { failure } => {
            report_failure(inner, &failure, todo.len());
            parts.push_front(todo.split_off(todo.len() / 2));
            Next { todo, wait: false }
        }
        Verdict::DeadLetter { failure, rejection } => {
            report_failure(inner, &failure, todo.len());
            let p = todo.pop().expect("the policy dead-letters only a request of one document");
            match p.role {
                Role::Primary => Next { todo: vec![too_large_dead_letter(inner, p, &rejection)], wait: false },
                // Its dead letter (which embeds it) is too large as well.
                Role::DeadLetter => unless_filed(dead_letter_to_file(inner, p, &format!("413 {failure}"))),
            }
        }
    }
}

/// Finishes each document Elasticsearch answered for, and keeps those to send
/// again: retried items as they are, refused primaries as their dead letters.
/// Only a retry (or a dead letter that even the file did not take) is a
/// failure worth backing off for; a fresh dead letter goes out at once.
fn settle(inner: &Inner, todo: Vec<Pending>, outcomes: Vec<Outcome>) -> Next {
    let mut next = Next { todo: Vec::new(), wait: false };
    let mut tally = telemetry::DocTally::default();
    let mut blocked: Option<(String, Block, String, usize)> = None;
    let mut refused_for_now: Option<(u16, String, String, usize)> = None;
    for (p, outcome) in todo.into_iter().zip(outcomes) {
        match (outcome, p.role) {
            (Outcome::Created, Role::Primary) => {
                tally.add(p.doc.source, DocOutcome::created);
                p.tracker.finish(Final::Created);
            }
            (Outcome::Duplicate, Role::Primary) => {
                tally.add(p.doc.source, DocOutcome::duplicate);
                p.tracker.finish(Final::Duplicate);
            }
            (Outcome::Created | Outcome::Duplicate, Role::DeadLetter) => {
                tally.add(p.doc.source, DocOutcome::dead_lettered);
                p.tracker.finish(Final::DeadLettered);
            }
            (Outcome::Retry { status, error }, _) => {
                tally.add(p.doc.source, DocOutcome::retried);
                match &mut refused_for_now {
                    Some((.., n)) => *n += 1,
                    None => refused_for_now = Some((status, error, p.doc.index.clone(), 1)),
                }
                next.wait = true;
                next.todo.push(p);
            }
            (Outcome::Blocked { index, block, error, .. }, _) => {
                tally.add(p.doc.source, DocOutcome::retried);
                telemetry::metrics().index_blocked.get_or_create(&BlockLabels { reason: block_reason(block) }).inc();
                match &mut blocked {
                    Some((.., n)) => *n += 1,
                    None => blocked = Some((index, block, error, 1)),
                }
                next.wait = true;
                next.todo.push(p);
            }
            (Outcome::Reject { status, error_type, reason }, Role::Primary) => {
                let rejection = Rejection { status: Some(status), error_type, reason };
                next.todo.push(dead_letter(inner, p, &rejection));
            }
            (Outcome::Reject { status, error_type, reason }, Role::DeadLetter) => {
                let refusal = format!("{status} {error_type}: {reason}");
                if let Some(p) = dead_letter_to_file(inner, p, &refusal) {
                    next.wait = true;
                    next.todo.push(p);
                }
            }
        }
    }
    tally.record();
    if let Some((status, error, index, documents)) = refused_for_now {
        report_item_retries(inner, status, &error, &index, documents);
    }
    if let Some((index, block, error, documents)) = blocked {
        if let Some(suppressed) = inner.blocked_log.check() {
            tracing::warn!(index = %index, reason = block.as_str(), documents, suppressed,
                "THROTTLED: index {index} refuses writes ({}): {error}; its documents are held and retried \
                 with backoff until it takes writes again (open the index or remove the block)", block.as_str());
        }
    }
    next
}

/// Items answered with a status that may pass (429, 5xx, 401/403/404/408) are
/// retried; the first one's answer is logged, at most once per
/// `dead_letter_log_interval`, so that a role without a privilege on an index
/// (403) or an index that cannot be created (404) is never a silent wait.
/// Elasticsearch's own push-back (429) is expected under load: info, not warn.
fn report_item_retries(inner: &Inner, status: u16, error: &str, index: &str, documents: usize) {
    let Some(suppressed) = inner.item_retry_log.check() else { return };
    let hint = match status {
        401 => "the credentials were not accepted: check elasticsearch.auth",
        403 => "the credentials lack a privilege on this index (create_doc, and auto_configure or create_index)",
        404 => "the index does not exist and cannot be created (action.auto_create_index, or its template)",
        429 => "the server pushes back",
        _ => "the server could not take them now",
    };
    if status == 429 {
        tracing::info!(status, index = %index, documents, suppressed,
            "documents refused for now ({hint}), retried with backoff: {error}");
    } else {
        tracing::warn!(status, index = %index, documents, suppressed,
            "documents refused for now with HTTP {status} on {index} ({hint}); they wait in the spool or \
             at their source and are retried with backoff: {error}");
    }
}

fn block_reason(block: Block) -> BlockReason {
    match block {
        Block::IndexClosed => BlockReason::index_closed,
        Block::Write => BlockReason::write,
        Block::ReadOnly => BlockReason::read_only,
        Block::ReadOnlyAllowDelete => BlockReason::read_only_allow_delete,
        Block::Other => BlockReason::cluster_block,
    }
}

/// Documents no request can hold (`elasticsearch.max_document_bytes`, the
/// policy's call) become their dead letters before anything is sent.
fn refuse_oversized(inner: &Inner, batch: Vec<Pending>) -> Vec<Pending> {
    batch
        .into_iter()
        .map(|p| match policy::oversized(encoder::encoded_len(&p.doc), inner.max_document_bytes) {
            Some(rejection) if p.role == Role::Primary => too_large_dead_letter(inner, p, &rejection),
            _ => p,
        })
        .collect()
}

/// The dead letter of a document refused for its size. It must fit where the
/// original did not, so its `event.original` is truncated (and says so); the
/// whole dead letter goes to the fsynced dead-letter file first, so nothing of
/// the original is lost.
fn too_large_dead_letter(inner: &Inner, p: Pending, rejection: &Rejection) -> Pending {
    telemetry::metrics().documents_too_large.inc();
    let Some(truncated) =
        inner.dead_letters.truncated_document(&p.doc, rejection, inner.dead_letter_max_original_bytes)
    else {
        return dead_letter(inner, p, rejection);
    };
    if let Some(suppressed) = inner.dead_letter_log.check() {
        tracing::warn!(source = p.doc.source.as_str(), index = %p.doc.index, id = %p.doc.id, bytes = p.doc.body.len(),
            suppressed, file = %inner.dead_letters.file_path().display(),
            "a document too large for Elasticsearch; writing it whole to the dead-letter file and truncated to the \
             dead-letter index: {}", rejection.reason);
    }
    let whole = inner.dead_letters.document(&p.doc, rejection);
    if let Err(e) = inner.dead_letters.append_to_file(
        &whole,
        "too large for Elasticsearch: kept whole here; the dead-letter index holds it truncated",
    ) {
        tracing::error!(file = %inner.dead_letters.file_path().display(), id = %p.doc.id,
            "cannot append a too large document to the dead-letter file; only its truncated dead letter is kept: {e}");
    }
    Pending { doc: truncated, role: Role::DeadLetter, tracker: p.tracker }
}

/// Counts a whole-request failure and logs it, at most once per
/// `dead_letter_log_interval`: a long outage would otherwise flood the log
/// with one line per attempt of every worker.
fn report_failure(inner: &Inner, failure: &RequestFailure, documents: usize) {
    count_bulk(match failure {
        RequestFailure::Transport(_) => BulkResult::transport_error,
        _ => BulkResult::http_error,
    });
    if let Some(suppressed) = inner.error_log.check() {
        tracing::warn!(url = %inner.client.current_url(), documents, suppressed,
            "bulk request failed, will retry: {failure}");
    }
}

fn count_bulk(result: BulkResult) {
    telemetry::metrics().bulk_requests.get_or_create(&BulkLabels { result }).inc();
}

/// A dead letter the file did not take either is tried again after a backoff.
fn unless_filed(left: Option<Pending>) -> Next {
    match left {
        Some(p) => Next { todo: vec![p], wait: true },
        None => Next { todo: Vec::new(), wait: false },
    }
}

fn dead_letter(inner: &Inner, p: Pending, rejection: &Rejection) -> Pending {
    if let Some(suppressed) = inner.dead_letter_log.check() {
        tracing::warn!(source = p.doc.source.as_str(), index = %p.doc.index, id = %p.doc.id, suppressed,
            "Elasticsearch refused a document; writing it to the dead-letter index: {}", rejection.reason);
    }
    let doc = inner.dead_letters.document(&p.doc, rejection);
    Pending { doc, role: Role::DeadLetter, tracker: p.tracker }
}

/// The last resort for a dead letter the dead-letter index refused: the file.
/// Returns the document if even that failed, to be tried again.
fn dead_letter_to_file(inner: &Inner, p: Pending, refusal: &str) -> Option<Pending> {
    match inner.dead_letters.append_to_file(&p.doc, refusal) {
        Ok(()) => {
            tracing::error!(file = %inner.dead_letters.file_path().display(), id = %p.doc.id,
                "the dead-letter index refused a document ({refusal}); appended to the file");
            telemetry::count_document(p.doc.source, DocOutcome::dead_letter_file);
            p.tracker.finish(Final::DeadLettered);
            None
        }
        Err(e) => {
            tracing::error!(file = %inner.dead_letters.file_path().display(),
                "cannot append to the dead-letter file, will retry: {e}");
            Some(p)
        }
    }
}
