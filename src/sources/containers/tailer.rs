//! The read loop that drives the container source, one step at a time: re-list
//! the files when due, give every file a turn at reading, then housekeeping.
//!
//! It runs on one blocking thread. The two halves it drives stay apart: the
//! `Files` registry decides which files are read and from where (rotation,
//! truncation, closing), the `Pipeline` turns the bytes it is handed into
//! documents. The loop itself only keeps time: when to list again, when a
//! batch is full enough to send, when to sleep.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use super::checkpoint::Entry;
use super::config::ContainersConfig;
use super::discovery::Wakeup;
use super::document::ContainerNormalizer;
use super::file_id::FileKey;
use super::files::Files;
use super::metrics::metrics;
use super::pipeline::{Batch, Pipeline};

pub struct Tailer {
    cfg: ContainersConfig,
    files: Files,
    pipeline: Pipeline,
    last_scan: Option<Instant>,
    /// The live files' directories changed at the last scan: watch them.
    dirs_dirty: bool,
}

impl Tailer {
    /// `resume` is the loaded checkpoint, None on the very first run.
    pub fn new(
        cfg: ContainersConfig,
        normalizer: ContainerNormalizer,
        resume: Option<BTreeMap<FileKey, Entry>>,
    ) -> Tailer {
        Tailer {
            files: Files::new(cfg.clone(), resume),
            pipeline: Pipeline::new(&cfg, normalizer),
            cfg,
            last_scan: None,
            dirs_dirty: false,
        }
    }

    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// Reads until stopped: `send` gets each batch (false = the receiver is gone),
    /// `stop` is polled between steps.
    pub fn run(mut self, wakeup: &Wakeup, mut send: impl FnMut(Batch) -> bool, stop: impl Fn() -> bool) {
        let mut batch = Batch::default();
        let mut watched: HashSet<PathBuf> = HashSet::new();
        while !stop() {
            let busy = self.step(&mut batch, Instant::now(), false);
            if std::mem::take(&mut self.dirs_dirty) {
                let dirs = self.files.live_dirs();
                if dirs != watched {
                    wakeup.watch_dirs(&dirs);
                    watched = dirs;
                }
            }
            let full = batch.docs.len() >= self.cfg.batch_max_documents;
            if (full || !busy) && !batch.is_empty() && !send(std::mem::take(&mut batch)) {
                return;
            }
            if !busy && wakeup.wait(self.cfg.poll_interval) {
                self.last_scan = None;
            }
        }
        if !batch.is_empty() {
            send(batch);
        }
    }

    /// One pass over the files. True if any data was read or any message produced.
    pub fn step(&mut self, batch: &mut Batch, now: Instant, force_scan: bool) -> bool {
        if force_scan || self.last_scan.is_none_or(|t| now.duration_since(t) >= self.cfg.poll_interval) {
            self.files.scan(&mut self.pipeline, batch, now);
            self.last_scan = Some(now);
            self.dirs_dirty = true;
        }
        self.pipeline.stamp_ingested();
        let before = batch.docs.len();
        let busy = self.files.read(&mut self.pipeline, batch, now);
        self.files.housekeeping(&mut self.pipeline, batch, now);
        metrics().files_open.set(self.files.len() as i64);
        busy || batch.docs.len() > before
    }
}
