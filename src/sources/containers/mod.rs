//! Container logs from `/var/log/containers` (node role): CRI and docker
//! json-file, rotation-safe, exactly once.
//!
//! * [`config`] — `sources.containers`.
//! * [`discovery`] — globs, include/exclude filters, inotify wake-ups.
//! * [`file_id`] — (dev, inode, fingerprint) — which file is which.
//! * [`format`] — CRI and docker line parsing.
//! * [`reassembly`] — partial lines → messages, size cap, dangling partials.
//! * [`metadata`] — namespace/pod/container from the path.
//! * [`kubernetes`] — labels, owners, image and pod IP from a watch-based cache of the API.
//! * [`document`] — one message → one document (and the container index mapping).
//! * `files` — which files are open; rotation, truncation, closing.
//! * [`pipeline`] — one file's bytes → lines → messages → documents, in a [`pipeline::Batch`].
//! * [`tailer`] — the blocking read loop that drives both and produces batches.
//! * [`checkpoint`] — offsets, saved only after delivery.
//!
//! Two halves, run by [`super::pull::PullRunner`]: the [`tailer::Tailer`] runs
//! on its own thread (reading and normalizing is CPU work) and hands batches
//! over a small bounded channel; [`crate::ack::deliver_in_order`] delivers them to the sink, several in
//! flight but completed in order, and applies each batch's checkpoint updates
//! only once it and every earlier batch are delivered. When Elasticsearch is slow the channel fills and
//! the tailer simply stops reading: the log files are the buffer.

pub mod checkpoint;
pub mod config;
pub mod discovery;
pub mod document;
pub mod file_id;
mod files;
pub mod format;
pub mod kubernetes;
pub mod metadata;
pub mod metrics;
pub mod pipeline;
pub mod reassembly;
pub mod tailer;
#[cfg(test)]
mod tests;

use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use self::checkpoint::{CheckpointError, CheckpointStore, Checkpoints};
use self::config::ContainersConfig;
use self::document::ContainerNormalizer;
use self::tailer::Tailer;
use super::pull::PullRunner;
use super::section::{self, SourceSection};
use super::{Registration, Running, Section, Source, SourceContext, SourceError};
use crate::ack::{self, Saving};
use crate::document::SourceKind;
use crate::setting::ConfigError;

/// The container log source in the registry: `sources.containers`, index key `containers`.
pub static REGISTRATION: Registration = Registration {
    kind: SourceKind::Containers,
    index_key: "containers",
    default_index: "containers-%Y.%m.%d",
    mappings: |m| vec![document::mapping(m.pattern)],
    section: Some(Section {
        check: |raw| section::check::<ContainersConfig>("containers", raw),
        build: |raw| Ok(Box::new(ContainersSource(section::parse("containers", raw)?))),
    }),
};

impl SourceSection for ContainersConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ContainersConfig::validate(self)
    }
}

/// A configured container log source.
pub struct ContainersSource(pub ContainersConfig);

impl Source for ContainersSource {
    fn start(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<Running, SourceError>> {
        Box::pin(async move { Ok(Running::task(spawn(&self.0, &ctx)?)) })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContainersError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("cannot start the container log reader thread: {0}")]
    Thread(std::io::Error),
}

/// Batches buffered between the tailer and delivery: the files are the buffer.
const CHANNEL_BATCHES: usize = 2;

/// Starts the container source; the handle finishes after a shutdown, once
/// the last delivered batch's checkpoint is saved.
pub fn spawn(ccfg: &ContainersConfig, ctx: &SourceContext) -> Result<JoinHandle<()>, ContainersError> {
    let store = CheckpointStore::new(&ctx.data_dir);
    let saved = store.load()?;
    let id = &ctx.identity;
    let shutdown = ctx.shutdown.clone();
    let kube = ccfg.kubernetes.enabled.then(|| kubernetes::start(&ccfg.kubernetes, &id.node, shutdown.clone()));
    let normalizer = ContainerNormalizer::new(id.cluster.clone(), id.host.clone(), id.node.clone(), ctx.index.clone())
        .with_kube(kube.clone());
    let initial_sync = ccfg.kubernetes.initial_sync_timeout;
    let wakeup = discovery::Wakeup::new(&ccfg.paths, ccfg.inotify);
    let tailer = Tailer::new(ccfg.clone(), normalizer, saved.clone());
    let runner = PullRunner {
        positions: Checkpoints(saved.unwrap_or_default()),
        saving: Saving {
            file: store.position_file(),
            interval: ccfg.checkpoint_interval,
            max_in_flight: ccfg.max_batches_in_flight,
            saves: metrics::metrics().checkpoint_saves.clone(),
            save_errors: metrics::metrics().checkpoint_errors.clone(),
        },
        channel_batches: CHANNEL_BATCHES,
    };
    let task = runner
        .on_thread("containers-tail", ctx, move |tx| {
            // Not to flag every line already on disk at start: the first list of
            // pods gets a short head start (the files wait, nothing is lost).
            if let Some(cache) = &kube {
                if !cache.wait_ready(initial_sync) {
                    tracing::warn!(timeout = ?initial_sync, "kubernetes metadata: the first lists of pods, namespaces, ReplicaSets and Jobs are not all in; reading files anyway");
                }
            }
            tailer.run(
                &wakeup,
                |batch| tx.blocking_send(ack::Batch { payload: batch.docs, update: batch.updates }).is_ok(),
                || shutdown.is_stopping(),
            );
        })
        .map_err(ContainersError::Thread)?;
    tracing::info!(paths = ?ccfg.paths, checkpoint = %store.path().display(), "container log source started");
    Ok(task)
}
