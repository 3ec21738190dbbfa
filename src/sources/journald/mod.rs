//! The journald source (node role): kubelet (and other unit) logs read from
//! the host's journal, shipped with the cursor saved only after delivery.
//!
//! Per configured directory that exists, one [`super::pull::PullRunner`]:
//!
//! ```text
//!  reader thread (owns the !Send sd_journal)        async task (ack::deliver_in_order)
//!  next() → fields → normalize → batch ──bounded──► sink.deliver() × max_in_flight_batches
//!  blocks when the channel is full                  completed in order
//!  wait() when caught up                            → cursor of the newest delivered batch
//!                                                   → cursor file (atomic), at most every
//!                                                     checkpoint_interval, and when idle/stopping
//! ```
//!
//! The cursor therefore never passes an entry that Elasticsearch has not
//! accepted or dead-lettered; on restart reading continues just after it, and
//! anything re-read after a crash has the same `_id` and becomes a 409.

pub mod config;
pub mod cursor;
pub mod document;
pub mod entry;
pub mod export_format;
pub mod klog;
pub mod metrics;
pub mod reader;

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;

use self::config::JournaldConfig;
use self::cursor::{Cursor, CursorFile};
use self::document::JournaldNormalizer;
use self::reader::{JournalReader, ReaderError, StartedFrom};
use super::pull::{BatchSender, PullRunner};
use super::section::{self, SourceSection};
use super::{Registration, Running, Section, Source, SourceContext, SourceError};
use crate::ack::{self, PositionFileError, Saving};
use crate::document::SourceKind;
use crate::log_throttle::LogThrottle;
use crate::setting::ConfigError;

/// The journald source in the registry: `sources.journald`, index key `kubelet`.
pub static REGISTRATION: Registration = Registration {
    kind: SourceKind::Journald,
    index_key: "kubelet",
    default_index: "kubelet-%Y.%m.%d",
    mappings: |m| vec![document::mapping(m.pattern)],
    section: Some(Section {
        check: |raw| section::check::<JournaldConfig>("journald", raw),
        build: |raw| Ok(Box::new(JournaldSource(section::parse("journald", raw)?))),
    }),
};

impl SourceSection for JournaldConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        JournaldConfig::validate(self)
    }
}

/// A configured journald source.
pub struct JournaldSource(pub JournaldConfig);

impl Source for JournaldSource {
    fn start(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<Running, SourceError>> {
        Box::pin(async move { Ok(Running::task(spawn(&self.0, &ctx)?)) })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournaldError {
    #[error("config key `sources.journald.directories`: none of {0:?} exists (mount the host's journal there)")]
    NoDirectory(Vec<PathBuf>),
    #[error(transparent)]
    Cursor(#[from] PositionFileError),
    #[error(transparent)]
    Reader(#[from] ReaderError),
    #[error("cannot start the journal reader thread for {dir}: {source}")]
    Thread { dir: PathBuf, source: std::io::Error },
}

/// How long the reader blocks in `sd_journal_wait` before looking at the
/// channel again (so that shutdown is noticed promptly).
const WAIT: Duration = Duration::from_millis(250);

/// Batches buffered between a reader thread and its delivery task. Small on
/// purpose: the journal is the buffer, memory is not.
const CHANNEL_BATCHES: usize = 2;

/// Starts one reader thread and one delivery task per existing directory.
/// Fails (naming the file or key) if no directory exists, the cursor file is
/// unreadable or a journal cannot be opened.
pub fn spawn(jcfg: &JournaldConfig, ctx: &SourceContext) -> Result<tokio::task::JoinHandle<()>, JournaldError> {
    let existing: Vec<PathBuf> = jcfg
        .directories
        .iter()
        .filter(|d| {
            let ok = d.is_dir();
            if !ok {
                tracing::info!(directory = %d.display(), "journal directory does not exist here, skipping it");
            }
            ok
        })
        .cloned()
        .collect();
    if existing.is_empty() {
        return Err(JournaldError::NoDirectory(jcfg.directories.clone()));
    }
    let _ = metrics::metrics();
    let mut tasks = Vec::new();
    for dir in existing {
        let cursor_file = CursorFile::for_directory(&ctx.data_dir, &dir);
        let saved = cursor_file.load()?;
        let normalizer =
            JournaldNormalizer::new(ctx.identity.cluster.clone(), ctx.identity.node.clone(), ctx.index.clone());
        let runner = PullRunner {
            positions: Cursor::default(),
            saving: Saving {
                file: cursor_file.position_file(),
                interval: jcfg.checkpoint_interval,
                max_in_flight: jcfg.max_in_flight_batches,
                saves: metrics::metrics().cursor_saves.clone(),
                save_errors: metrics::metrics().cursor_save_errors.clone(),
            },
            channel_batches: CHANNEL_BATCHES,
        };
        tasks.push(start_reader(runner, ctx, &dir, jcfg, saved, normalizer)?);
    }
    Ok(tokio::spawn(async move {
        futures::future::join_all(tasks).await;
    }))
}

/// Opens and positions the journal on the runner's reader thread, waits for
/// the outcome, and leaves the thread reading until delivery stops.
fn start_reader(
    runner: PullRunner<Cursor>,
    ctx: &SourceContext,
    dir: &std::path::Path,
    jcfg: &JournaldConfig,
    saved: Option<String>,
    mut normalizer: JournaldNormalizer,
) -> Result<tokio::task::JoinHandle<()>, JournaldError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), ReaderError>>(1);
    let (thread_dir, jcfg) = (dir.to_path_buf(), jcfg.clone());
    let name = format!("journald:{}", dir.display());
    let task = runner
        .on_thread(&name, ctx, move |tx| {
            let dir = thread_dir;
            let mut reader = match JournalReader::open(&dir, &jcfg.units, &jcfg.identifiers) {
                Ok(mut r) => {
                    r.set_reopen_every(jcfg.reopen_every);
                    r
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            match reader.position(saved.as_deref(), jcfg.start_at) {
                Ok(from) => log_start(&dir, from, saved.as_deref()),
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            }
            let _ = ready_tx.send(Ok(()));
            read_loop(&mut reader, &mut normalizer, jcfg.batch_size, &tx, &dir);
        })
        .map_err(|source| JournaldError::Thread { dir: dir.to_path_buf(), source })?;
    // A reader that failed has dropped its sender: its delivery task ends by
    // itself, with no position changed.
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(task),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(JournaldError::Thread {
            dir: dir.to_path_buf(),
            source: std::io::Error::other("the reader thread ended before opening the journal"),
        }),
    }
}

fn log_start(dir: &std::path::Path, from: StartedFrom, saved: Option<&str>) {
    let dir = dir.display();
    match from {
        StartedFrom::CursorLost => {
            metrics::metrics().cursors_lost.inc();
            tracing::warn!(directory = %dir, cursor = saved.unwrap_or(""),
                "the saved journal cursor no longer exists (vacuumed?) or is invalid: reading from the oldest entry");
        }
        StartedFrom::BootNotFoundHead => tracing::info!(directory = %dir,
            "start_at: boot, but the journal has no matching entry of the current boot: reading from the oldest entry"),
        other => tracing::info!(directory = %dir, start = ?other, "reading the journal"),
    }
}

fn read_loop(
    reader: &mut JournalReader,
    normalizer: &mut JournaldNormalizer,
    batch_size: usize,
    tx: &BatchSender<String>,
    dir: &std::path::Path,
) {
    let errors = LogThrottle::new(Duration::from_secs(10));
    while !tx.is_closed() {
        let mut docs = Vec::with_capacity(batch_size.min(1024));
        let result = reader.read_into(batch_size, normalizer, &mut docs);
        let full = docs.len() == batch_size;
        match result {
            Ok(Some(cursor)) => {
                metrics::metrics().entries_read.inc_by(docs.len() as u64);
                // Blocks while the delivery task is busy: the sink's backpressure
                // stops the reading here, not in memory.
                if tx.blocking_send(ack::Batch { payload: docs, update: cursor }).is_err() {
                    return;
                }
                if full {
                    continue;
                }
            }
            Ok(None) => {}
            Err(e) => {
                metrics::metrics().read_errors.inc();
                if let Some(suppressed) = errors.check() {
                    tracing::warn!(directory = %dir.display(), suppressed, "reading the journal failed, will retry: {e}");
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        }
        if let Err(e) = reader.wait(WAIT) {
            metrics::metrics().read_errors.inc();
            if let Some(suppressed) = errors.check() {
                tracing::warn!(directory = %dir.display(), suppressed, "waiting for journal changes failed: {e}");
            }
            std::thread::sleep(WAIT);
        }
    }
}
