//! The reader: lists Events (`events.k8s.io/v1`, every namespace), then
//! watches from the list's resourceVersion, and hands each run of revisions
//! to delivery with the resourceVersion it makes safe.
//!
//! * A watch that ends (its timeout) or breaks is resumed from the newest
//!   resourceVersion seen.
//! * `410 Gone` (that version is no longer in the API server's history, e.g.
//!   after etcd compaction) lists again. Events listed again that were
//!   delivered before have the same `_id` and become 409s; revisions that came
//!   and went while nobody watched are not in any list and cannot be read.
//! * While a list is being delivered page by page, its batches carry the
//!   previous resume point: only the list's last batch moves it to the list's
//!   resourceVersion, so a crash in the middle lists again rather than
//!   skipping what the later pages held.
//! * A deleted Event (expired by its TTL) is no new fact and ships nothing.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};

use super::config::EventsConfig;
use super::document::EventNormalizer;
use super::metrics::metrics;
use crate::ack;
use crate::document::Document;
use crate::sources::kube_api::Backoff;
use crate::sources::pull::BatchSender;

/// Why a list or watch ended.
enum Stop {
    /// 410 Gone: list again.
    Gone,
    /// Delivery has stopped: so does reading.
    Closed,
    /// Anything else: retried after a backoff, from where it stood.
    Failed(kube::Error),
}

/// Reads until delivery stops; `resume` is the saved resourceVersion.
pub async fn run(cfg: EventsConfig, mut normalizer: EventNormalizer, resume: Option<String>, tx: BatchSender<String>) {
    let mut backoff = Backoff::new(cfg.retry_max_backoff);
    let api: Api<Event> = loop {
        match cfg.connection().client().await {
            Ok(c) => break Api::all(c),
            Err(e) => {
                metrics().watch_errors.inc();
                tracing::error!(error = %e, "kubernetes events: cannot make an API client; trying again");
                if sleep_or_closed(backoff.delay(), &tx).await {
                    return;
                }
            }
        }
    };
    let mut reader = Reader { api, cfg, tx, saved: resume.clone().unwrap_or_default() };
    let mut version = resume;
    loop {
        let result = match version.clone() {
            None => reader.list(&mut normalizer).await.map(Some),
            Some(from) => reader.watch(&mut normalizer, from).await,
        };
        match result {
            Ok(v) => {
                backoff.reset();
                version = v;
            }
            Err(Stop::Closed) => return,
            Err(Stop::Gone) => {
                tracing::info!("kubernetes events: resourceVersion too old (410 Gone); listing again");
                version = None;
            }
            Err(Stop::Failed(e)) => {
                metrics().watch_errors.inc();
                tracing::warn!(error = %e, "kubernetes events: list/watch failed; retrying after a backoff");
                if sleep_or_closed(backoff.delay(), &reader.tx).await {
                    return;
                }
            }
        }
    }
}

struct Reader {
    api: Api<Event>,
    cfg: EventsConfig,
    tx: BatchSender<String>,
    /// The newest resourceVersion handed to delivery as a batch's update.
    saved: String,
}

impl Reader {
    /// Lists every Event, page by page; returns the list's resourceVersion.
    async fn list(&mut self, normalizer: &mut EventNormalizer) -> Result<String, Stop> {
        metrics().relists.inc();
        let limit = u32::try_from(self.cfg.batch_max_documents).unwrap_or(u32::MAX);
        let mut params = ListParams::default().limit(limit);
        loop {
            let page = self.api.list(&params).await.map_err(classify)?;
            let version = page.metadata.resource_version.clone().unwrap_or_default();
            let last_page = page.metadata.continue_.as_deref().is_none_or(str::is_empty);
            let docs: Vec<Document> = page.items.iter().map(|e| normalizer.normalize(e)).collect();
            metrics().revisions_read.inc_by(docs.len() as u64);
            let update = if last_page { version.clone() } else { self.saved.clone() };
            self.send(docs, update, last_page).await?;
            if last_page {
                tracing::info!(resource_version = %version, "kubernetes events: listed; watching from here");
                return Ok(version);
            }
            params = params.continue_token(page.metadata.continue_.as_deref().unwrap_or_default());
        }
    }

    /// Watches from `from` until the watch ends; returns the newest
    /// resourceVersion seen (`from` if none).
    async fn watch(&mut self, normalizer: &mut EventNormalizer, from: String) -> Result<Option<String>, Stop> {
        let timeout = u32::try_from(self.cfg.watch_timeout.as_secs()).unwrap_or(290);
        let params = WatchParams::default().timeout(timeout);
        let stream = self.api.watch(&params, &from).await.map_err(classify)?;
        let mut chunks = std::pin::pin!(stream.map_err(classify).ready_chunks(self.cfg.batch_max_documents));
        let mut version = from;
        while let Some(chunk) = chunks.next().await {
            let mut docs = Vec::new();
            let mut stop = None;
            for item in chunk {
                match item {
                    Ok(WatchEvent::Added(e)) | Ok(WatchEvent::Modified(e)) => {
                        docs.push(normalizer.normalize(&e));
                        version = e.metadata.resource_version.unwrap_or(version);
                    }
                    Ok(WatchEvent::Deleted(e)) => version = e.metadata.resource_version.unwrap_or(version),
                    Ok(WatchEvent::Bookmark(b)) => version = b.metadata.resource_version,
                    Ok(WatchEvent::Error(e)) if e.code == 410 => stop = Some(Stop::Gone),
                    Ok(WatchEvent::Error(e)) => stop = Some(Stop::Failed(kube::Error::Api(e))),
                    Err(e) => stop = Some(e),
                }
                if stop.is_some() {
                    break;
                }
            }
            metrics().revisions_read.inc_by(docs.len() as u64);
            self.send(docs, version.clone(), false).await?;
            if let Some(stop) = stop {
                return Err(stop);
            }
        }
        Ok(Some(version))
    }

    /// Hands `docs` to delivery with the resume point they make safe. A
    /// batch without documents is only sent when it must move the resume
    /// point (the end of a list); bookmarks ride along with the next events.
    async fn send(&mut self, docs: Vec<Document>, update: String, always: bool) -> Result<(), Stop> {
        if docs.is_empty() && !always {
            return Ok(());
        }
        self.saved = update.clone();
        self.tx.send(ack::Batch { payload: docs, update }).await.map_err(|_| Stop::Closed)
    }
}

fn classify(e: kube::Error) -> Stop {
    match e {
        kube::Error::Api(ref r) if r.code == 410 => Stop::Gone,
        e => Stop::Failed(e),
    }
}

/// Waits `d`; true if delivery stopped meanwhile.
async fn sleep_or_closed(d: Duration, tx: &BatchSender<String>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = tx.closed() => true,
    }
}
