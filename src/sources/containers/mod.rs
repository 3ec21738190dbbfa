//! Container logs from `/var/log/containers` (node role): CRI and docker
//! json-file, rotation-safe, exactly once.
//!
//! * [`config`] — `sources.containers`.
//! * [`discovery`] — globs, include/exclude filters, inotify wake-ups.
//! * [`file_id`] — (dev, inode, fingerprint) — which file is which.
//! * [`format`] — CRI and docker line parsing.
//! * [`reassembly`] — partial lines → messages, size cap, dangling partials.
//! * [`metadata`] — namespace/pod/container from the path.
//! * [`tailer`] — the blocking read loop that produces batches.
//! * [`checkpoint`] — offsets, saved only after delivery.
//!
//! Two halves: the [`tailer::Tailer`] runs on its own thread (reading and
//! normalizing is CPU work) and hands batches over a small bounded channel;
//! an async task delivers them to the sink, several in flight but completed in
//! order, and applies each batch's checkpoint updates only once it and every
//! earlier batch are delivered. When Elasticsearch is slow the channel fills and
//! the tailer simply stops reading: the log files are the buffer.

pub mod checkpoint;
pub mod config;
pub mod discovery;
pub mod file_id;
pub mod format;
pub mod metadata;
pub mod metrics;
pub mod reassembly;
pub mod tailer;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{host_name, Config};
use crate::normalize::container::ContainerNormalizer;
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use checkpoint::{CheckpointError, CheckpointStore, Entry};
use file_id::FileKey;
use tailer::{Batch, Tailer, Update};

pub use config::ContainersConfig;

#[derive(Debug, thiserror::Error)]
pub enum ContainersError {
    #[error("sources.containers is not configured")]
    NotConfigured,
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("cannot start the container log reader thread: {0}")]
    Thread(std::io::Error),
}

/// Starts the container source; the handle finishes after a shutdown, once
/// the last delivered batch's checkpoint is saved.
pub fn spawn(cfg: &Config, sink: Sink, shutdown: Shutdown) -> Result<JoinHandle<()>, ContainersError> {
    let ccfg = cfg.sources.containers.clone().ok_or(ContainersError::NotConfigured)?;
    let store = CheckpointStore::new(&cfg.data_dir);
    let saved = store.load()?;
    let normalizer = ContainerNormalizer::new(
        cfg.cluster_name.clone(),
        host_name(),
        cfg.node_name(),
        cfg.index_patterns().containers,
    );
    let (tx, rx) = mpsc::channel::<Batch>(2);
    let wakeup = discovery::Wakeup::new(&ccfg.paths, ccfg.inotify);
    let tailer = Tailer::new(ccfg.clone(), normalizer, saved.clone());
    let stop = shutdown.clone();
    let reader = std::thread::Builder::new()
        .name("containers-tail".into())
        .spawn(move || {
            tailer.run(&wakeup, |batch| tx.blocking_send(batch).is_ok(), || stop.is_stopping());
        })
        .map_err(ContainersError::Thread)?;
    tracing::info!(paths = ?ccfg.paths, checkpoint = %store.path().display(), "container log source started");
    Ok(tokio::spawn(async move {
        deliver(rx, sink, store, saved.unwrap_or_default(), &ccfg, shutdown).await;
        let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    }))
}

/// Delivers batches in order and saves checkpoints behind them.
async fn deliver(
    mut rx: mpsc::Receiver<Batch>,
    sink: Sink,
    store: CheckpointStore,
    mut entries: BTreeMap<FileKey, Entry>,
    cfg: &ContainersConfig,
    shutdown: Shutdown,
) {
    let mut in_flight = FuturesOrdered::new();
    let mut open = true;
    let mut dirty = false;
    let mut last_save = Instant::now();
    let mut tick = tokio::time::interval(cfg.checkpoint_interval.max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            batch = rx.recv(), if open && in_flight.len() < cfg.max_batches_in_flight => match batch {
                Some(Batch { docs, updates, .. }) => {
                    let sink = sink.clone();
                    in_flight.push_back(async move { (sink.deliver(docs).await, updates) });
                }
                None => open = false,
            },
            Some((result, updates)) = in_flight.next(), if !in_flight.is_empty() => match result {
                Ok(_) => {
                    for u in updates {
                        match u {
                            Update::Position(e) => { entries.insert(e.key(), e); }
                            Update::Forget(k) => { entries.remove(&k); }
                        }
                    }
                    dirty = true;
                    if last_save.elapsed() >= cfg.checkpoint_interval {
                        save(&store, &entries, &mut dirty);
                        last_save = Instant::now();
                    }
                }
                // Shutdown aborted the delivery: what is not delivered is not acknowledged.
                Err(_) => break,
            },
            _ = tick.tick() => if dirty {
                save(&store, &entries, &mut dirty);
                last_save = Instant::now();
            },
            _ = shutdown.aborted() => break,
        }
        if !open && in_flight.is_empty() {
            break;
        }
    }
    if dirty {
        save(&store, &entries, &mut dirty);
    }
    // Unblocks the reader thread if it is waiting on a full channel.
    rx.close();
    while rx.try_recv().is_ok() {}
}

fn save(store: &CheckpointStore, entries: &BTreeMap<FileKey, Entry>, dirty: &mut bool) {
    match store.save(entries) {
        Ok(()) => {
            *dirty = false;
            metrics::metrics().checkpoint_saves.inc();
        }
        Err(e) => {
            metrics::metrics().checkpoint_errors.inc();
            tracing::error!("{e}");
        }
    }
}
