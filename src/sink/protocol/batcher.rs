//! The batcher: merges submissions from all sources into bulk requests (by
//! documents, bytes and linger time) and hands each to a bulk worker, as many
//! at once as the [`Concurrency`] allows. While workers are busy it stops
//! taking submissions, so backpressure reaches the sources instead of memory
//! growing.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::concurrency::Concurrency;
use super::encoder;
use super::gate::{Carry, Gate};
use super::worker::{send_until_final, Inner, Pending, Role, Tracker};
use crate::document::Document;
use crate::shutdown::Shutdown;
use crate::sink::config::BatchConfig;
use crate::sink::report::DeliveryReport;

/// What a source handed to [`Sink::deliver`](crate::sink::Sink::deliver).
pub struct Submission {
    pub docs: Vec<Document>,
    pub done: oneshot::Sender<DeliveryReport>,
}

/// Merges submissions into batches and hands each to a worker. A submission
/// whose index template is not installed yet waits aside (parked) until it
/// is, without holding back the others.
pub async fn batcher(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<Submission>,
    cfg: BatchConfig,
    slots: Arc<Concurrency>,
    gate: Arc<Gate>,
    carry_over: mpsc::UnboundedSender<Carry>,
) {
    let mut pending: Vec<Pending> = Vec::new();
    let mut bytes = 0usize;
    let mut deadline: Option<tokio::time::Instant> = None;
    let (parked_tx, mut parked_rx) = mpsc::channel::<Submission>(16);
    loop {
        let submission = tokio::select! {
            s = rx.recv() => s,
            Some(s) = parked_rx.recv() => Some(s),
            _ = sleep_until(deadline), if deadline.is_some() => {
                deadline = None;
                if !flush(&inner, &slots, &mut pending, &mut bytes).await { return; }
                continue;
            }
            _ = inner.shutdown.aborted() => return,
        };
        let Some(Submission { docs, done }) = submission else { break };
        if docs.is_empty() {
            let _ = done.send(DeliveryReport::default());
            continue;
        }
        if !gate.admits(&docs) {
            // Indices of an earlier pattern are created first (`flavour::carry_over`).
            for carry in gate.carry_over(&docs) {
                let _ = carry_over.send(carry);
            }
            park(Submission { docs, done }, &gate, &parked_tx, &inner.shutdown);
            continue;
        }
        let tracker = Tracker::new(docs.len(), done);
        for doc in docs {
            let len = encoder::encoded_len(&doc);
            // A document that would take the batch over `max_bytes` starts the
            // next one: a big document then travels with as few others as
            // possible, and a request too large for the node splits less often.
            if !pending.is_empty()
                && bytes + len > cfg.max_bytes
                && !flush(&inner, &slots, &mut pending, &mut bytes).await
            {
                return;
            }
            bytes += len;
            pending.push(Pending { doc, role: Role::Primary, tracker: tracker.clone() });
            if (pending.len() >= cfg.max_documents || bytes >= cfg.max_bytes)
                && !flush(&inner, &slots, &mut pending, &mut bytes).await
            {
                return;
            }
        }
        deadline = match (pending.is_empty(), deadline) {
            (true, _) => None,
            (false, None) => Some(tokio::time::Instant::now() + cfg.linger),
            (false, d) => d,
        };
    }
    // Every handle is gone: send what is left, then wait for the workers.
    if flush(&inner, &slots, &mut pending, &mut bytes).await {
        tokio::select! {
            _ = slots.idle() => {}
            _ = inner.shutdown.aborted() => {}
        }
    }
}

/// Holds a submission until the gate admits it, then hands it back to the
/// batcher. At an abort it is dropped, so its source hears [`Cancelled`](crate::sink::Cancelled)
/// and keeps its documents.
fn park(submission: Submission, gate: &Arc<Gate>, parked: &mpsc::Sender<Submission>, shutdown: &Shutdown) {
    let (gate, parked, shutdown) = (gate.clone(), parked.clone(), shutdown.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = gate.until_admits(&submission.docs) => { let _ = parked.send(submission).await; }
            _ = shutdown.aborted() => {}
        }
    });
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Hands the pending documents to a worker once one is free. `false` if the
/// shutdown aborted while waiting.
async fn flush(inner: &Arc<Inner>, slots: &Arc<Concurrency>, pending: &mut Vec<Pending>, bytes: &mut usize) -> bool {
    if pending.is_empty() {
        return true;
    }
    let slot = tokio::select! {
        s = slots.acquire() => s,
        _ = inner.shutdown.aborted() => return false,
    };
    let batch = std::mem::take(pending);
    *bytes = 0;
    let inner = inner.clone();
    let slots = slots.clone();
    tokio::spawn(async move {
        send_until_final(&inner, &slots, batch).await;
        drop(slot);
    });
    true
}
