//! The file registry: which files are open, keyed by (dev, inode), and what
//! rotation has done to each of them. Paths change under a running tailer;
//! files do not, so every decision here is about a file's identity.
//!
//! A listing ([`discovery::list`]) is turned into transitions: a new file is
//! opened; a path that resolves to a new (dev, inode) *detaches* the old file,
//! which stays open and is read to its end, while the new one waits until its
//! predecessor is drained; a file that shrank below the read offset, or whose
//! head no longer matches its fingerprint, was truncated in place (copytruncate)
//! and restarts at offset 0. A detached file is closed when it has been at EOF
//! for `rotated_grace`, and in any case after `rotated_max_open`, so a rotated
//! file never pins disk space for long. On the first listing, checkpointed files
//! that no glob matches any more (rotated while the gateway was down) are found
//! again beside their old target, or forgotten.
//!
//! Split along its seams: [`tail_file`] is one open file and its reading,
//! this module the registry and the transitions of a listing, and [`rotation`]
//! what rotation leaves behind (orphans, siblings, finished files).
//!
//! A file's bytes go to the [`Pipeline`] once the file has a fingerprint (its
//! first line is complete); this module only says when and from which offset.

mod rotation;
mod tail_file;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use self::rotation::beside;
use self::tail_file::TailFile;
use super::checkpoint::{Entry, Update};
use super::config::{ContainersConfig, StartAt};
use super::discovery::{self, Filters, Found};
use super::file_id::{FileKey, Fingerprint};
use super::metadata::Metadata;
use super::metrics::metrics;
use super::pipeline::{Batch, Pipeline};
use crate::log_throttle::LogThrottle;

/// How many buffer-fulls one file may read per step before the others get a turn.
const READS_PER_TURN: usize = 8;
/// Warnings about lost data and unreadable paths: at most one per interval each.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How often finished checkpoint entries are checked against the disk.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// A directory changed this recently is listed again at the next scan: two
/// changes within one clock tick leave the same mtime.
const MTIME_SETTLE: Duration = Duration::from_secs(2);

/// A directory's mtime at its last sibling listing.
struct DirSeen {
    mtime: Option<SystemTime>,
    /// The mtime was old enough to trust: an equal mtime means no change since.
    settled: bool,
}

/// Every open file, by identity and by the path that currently leads to it.
pub(super) struct Files {
    cfg: ContainersConfig,
    filters: Filters,
    files: BTreeMap<FileKey, TailFile>,
    by_path: HashMap<PathBuf, FileKey>,
    /// Paths the filters excluded, with the file they pointed to then.
    ignored: HashMap<PathBuf, FileKey>,
    resume: BTreeMap<FileKey, Entry>,
    /// Rotated files read to their end (or given up), while they are on disk.
    finished: BTreeMap<FileKey, Entry>,
    /// Directories of live files, as their siblings were last listed.
    dirs: HashMap<PathBuf, DirSeen>,
    last_sweep: Option<Instant>,
    /// Paths that cannot be listed or opened now, with the reason (warned once).
    failing: HashMap<PathBuf, String>,
    failing_now: HashSet<PathBuf>,
    /// Files truncated in place (copytruncate): their old fingerprint and how far
    /// they had been read. A sibling with that head is the copy: read from there.
    copies: HashMap<Fingerprint, u64>,
    loss_log: LogThrottle,
    error_log: LogThrottle,
    first_run: bool,
    scanned_once: bool,
    /// Where the next [`Files::read`] starts: the file after the one whose
    /// turn filled the last batch, so that every file gets its turn.
    next_turn: Option<FileKey>,
}

impl Files {
    /// `resume` is the loaded checkpoint, None on the very first run.
    pub(super) fn new(cfg: ContainersConfig, resume: Option<BTreeMap<FileKey, Entry>>) -> Files {
        let first_run = resume.is_none();
        let (finished, resume) = resume.unwrap_or_default().into_iter().partition(|(_, e)| e.finished);
        Files {
            filters: Filters::new(&cfg),
            cfg,
            files: BTreeMap::new(),
            by_path: HashMap::new(),
            ignored: HashMap::new(),
            resume,
            finished,
            dirs: HashMap::new(),
            last_sweep: None,
            failing: HashMap::new(),
            failing_now: HashSet::new(),
            copies: HashMap::new(),
            loss_log: LogThrottle::new(LOG_INTERVAL),
            error_log: LogThrottle::new(LOG_INTERVAL),
            first_run,
            scanned_once: false,
            next_turn: None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.files.len()
    }

    /// The directories of the files read now: worth an inotify watch, so that
    /// a rotation wakes the tailer before the next poll.
    pub(super) fn live_dirs(&self) -> HashSet<PathBuf> {
        self.by_path.values().filter_map(|k| self.files.get(k)?.target.parent().map(Path::to_path_buf)).collect()
    }

    /// Re-lists the globs and applies what changed: new files, rotations,
    /// deletions, truncations (whose pending pieces go out through `pipeline`);
    /// then lists the siblings of the live files whose directory changed.
    pub(super) fn scan(&mut self, pipeline: &mut Pipeline, batch: &mut Batch, now: Instant) {
        let listing = discovery::list(&self.cfg.paths);
        for (path, e) in &listing.errors {
            self.note_error(path, e);
        }
        let mut seen: HashSet<PathBuf> = HashSet::with_capacity(listing.found.len());
        let mut rotated_dirs: HashSet<PathBuf> = HashSet::new();
        for fd in listing.found {
            seen.insert(fd.path.clone());
            if let Some(k) = self.ignored.get(&fd.path) {
                if *k == fd.key {
                    continue;
                }
                self.ignored.remove(&fd.path);
            }
            match self.by_path.get(&fd.path).copied() {
                Some(k) if k == fd.key => self.check_truncation(k, fd.len, pipeline, batch),
                Some(old) => {
                    metrics().rotations.inc();
                    self.by_path.remove(&fd.path);
                    if let Some(dir) = self.files.get(&old).and_then(|f| f.target.parent()) {
                        rotated_dirs.insert(dir.to_path_buf());
                    }
                    self.detach(old, now);
                    self.open(fd, Some(old), now);
                }
                None => self.open(fd, None, now),
            }
        }
        let gone: Vec<(PathBuf, FileKey)> =
            self.by_path.iter().filter(|(p, _)| !seen.contains(*p)).map(|(p, k)| (p.clone(), *k)).collect();
        for (path, key) in gone {
            if let Some(dir) = self.files.get(&key).and_then(|f| f.target.parent()) {
                rotated_dirs.insert(dir.to_path_buf());
            }
            self.by_path.remove(&path);
            self.detach(key, now);
        }
        self.ignored.retain(|p, _| seen.contains(p));
        if !self.scanned_once {
            self.recover_orphans(batch, now);
        }
        for dir in self.live_dirs().into_iter().chain(rotated_dirs) {
            if !self.scanned_once || self.dir_changed(&dir) {
                self.siblings(&dir, batch, now);
            }
        }
        self.scanned_once = true;
        let now_failing = std::mem::take(&mut self.failing_now);
        self.failing.retain(|p, _| now_failing.contains(p));
    }

    /// Gives every file a turn at reading, until the batch is full
    /// (`batch_max_documents`). True if any data was read.
    ///
    /// Stopping at a full batch is what bounds memory: every file's turn reads
    /// at least one buffer, so with many busy files a pass that went on would
    /// make batches several times `batch_max_documents`, and the batches in
    /// flight hold all of them. The next pass starts where this one stopped.
    pub(super) fn read(&mut self, pipeline: &mut Pipeline, batch: &mut Batch, now: Instant) -> bool {
        let start = self.next_turn.take();
        let keys: Vec<FileKey> = match start {
            Some(k) => self.files.range(k..).chain(self.files.range(..k)).map(|(k, _)| *k).collect(),
            None => self.files.keys().copied().collect(),
        };
        let mut busy = false;
        for (i, key) in keys.iter().enumerate() {
            busy |= self.read_file(*key, pipeline, batch, now);
            if batch.docs.len() >= self.cfg.batch_max_documents {
                self.next_turn = keys.get(i + 1).copied();
                break;
            }
        }
        busy
    }

    /// Sends dangling partial messages that waited long enough, closes
    /// rotated files that are done, and forgets finished files no longer on disk.
    pub(super) fn housekeeping(&mut self, pipeline: &mut Pipeline, batch: &mut Batch, now: Instant) {
        let mut close = Vec::new();
        for (key, f) in self.files.iter_mut() {
            if f.at_eof {
                if let Some((_, lines)) = f.established.as_mut() {
                    if pipeline.flush_expired(lines, now, batch) {
                        if let Some(e) = f.entry() {
                            batch.position(e);
                        }
                    }
                }
            }
            if let Some(since) = f.detached {
                let quiet = now.duration_since(f.last_data.max(since));
                if (f.drained && quiet >= self.cfg.rotated_grace)
                    || now.duration_since(since) >= self.cfg.rotated_max_open
                {
                    close.push(*key);
                }
            }
        }
        for key in close {
            self.close(key, pipeline, batch, now);
        }
        if self.last_sweep.is_none_or(|t| now.duration_since(t) >= SWEEP_INTERVAL) {
            self.last_sweep = Some(now);
            self.sweep_finished(batch);
        }
    }

    fn open(&mut self, fd: Found, waits_for: Option<FileKey>, now: Instant) {
        if let Some(f) = self.files.get_mut(&fd.key) {
            // Already open (another pattern, or a rename back): just map the path.
            f.detached = None;
            self.by_path.insert(fd.path, fd.key);
            return;
        }
        let target = std::fs::canonicalize(&fd.path).unwrap_or_else(|_| fd.path.clone());
        let meta = Metadata::from_paths(&fd.path, Some(&target));
        if !self.filters.allows(&meta) {
            tracing::debug!(file = %fd.path.display(), "excluded by the namespace/pod/container filters");
            self.ignored.insert(fd.path, fd.key);
            return;
        }
        let (path, key) = (fd.path.clone(), fd.key);
        match TailFile::open(fd, target, meta, now) {
            Ok(Some(f)) => {
                if self.add(f, waits_for) {
                    self.by_path.insert(path, key);
                }
            }
            Ok(None) => {}
            Err(e) => self.note_error(&path, &e),
        }
    }

    /// Registers a freshly opened file; false if that file is open already.
    fn add(&mut self, mut f: TailFile, waits_for: Option<FileKey>) -> bool {
        if self.files.contains_key(&f.key) {
            return false;
        }
        f.start_at_end = self.first_run && !self.scanned_once && self.cfg.start_at_first_run == StartAt::End;
        // A finished file back under a live path (renamed back) goes on from where it was.
        f.resume = self.resume.remove(&f.key).or_else(|| self.finished.remove(&f.key));
        f.waits_for = waits_for;
        tracing::debug!(file = %f.path.display(), dev = f.key.dev, inode = f.key.ino, "tailing");
        self.files.insert(f.key, f);
        true
    }

    fn detach(&mut self, key: FileKey, now: Instant) {
        if self.by_path.values().any(|k| *k == key) {
            return;
        }
        if let Some(f) = self.files.get_mut(&key) {
            if f.detached.is_none() {
                f.detached = Some(now);
                f.drained = false;
                f.at_eof = false;
            }
        }
    }

    fn check_truncation(&mut self, key: FileKey, len: u64, pipeline: &mut Pipeline, batch: &mut Batch) {
        let Some(f) = self.files.get_mut(&key) else {
            return;
        };
        let Some((fp, lines)) = f.established.as_mut() else {
            return;
        };
        let from = lines.read_offset();
        let shrank = len < from;
        if !shrank && fp.matches(&f.file).unwrap_or(true) {
            return;
        }
        tracing::info!(file = %f.path.display(), from, to = len, "file truncated in place (copytruncate): reading from the start");
        metrics().truncations.inc();
        if self.copies.len() >= 1024 {
            self.copies.clear();
        }
        self.copies.insert(*fp, lines.complete_offset());
        // The copy, if it was made beside the file, is found at this scan's listing.
        if let Some(dir) = f.target.parent() {
            self.dirs.remove(dir);
        }
        pipeline.flush_all(lines, batch);
        f.established = None;
        f.at_eof = false;
    }

    /// Reads a bounded amount from one file, once its predecessor is drained
    /// and it has a fingerprint. True if data was read.
    fn read_file(&mut self, key: FileKey, pipeline: &mut Pipeline, batch: &mut Batch, now: Instant) -> bool {
        if let Some(pred) = self.files.get(&key).and_then(|f| f.waits_for) {
            if self.files.get(&pred).is_some_and(|p| !p.drained) {
                return false;
            }
            self.files.get_mut(&key).expect("present").waits_for = None;
        }
        let f = self.files.get_mut(&key).expect("present");
        if f.established.is_none() && !f.establish(&self.cfg, pipeline, now) {
            // A rotated-away file with nothing readable must not hold up its successor.
            if f.detached.is_some() {
                f.drained = true;
                f.at_eof = true;
            }
            return false;
        }
        f.read_turn(pipeline, batch, now, self.cfg.batch_max_documents)
    }

    /// Closes a rotated file. Still on disk (renamed beside its successor), it
    /// stays in the checkpoint as finished, so that it is never read again;
    /// deleted, it is forgotten. Closed before its end, the rest is counted lost.
    fn close(&mut self, key: FileKey, pipeline: &mut Pipeline, batch: &mut Batch, now: Instant) {
        let f = self.files.remove(&key).expect("present");
        let end = f.read_offset();
        let stat = f.file.metadata().ok();
        if !f.drained {
            metrics().files_closed_unread.inc();
            self.lost(
                &f.target,
                end,
                Some(stat.as_ref().map_or(end, |m| m.len())),
                "rotated_max_open reached before the rotated file was read to its end",
            );
        }
        let fingerprint = f.established.as_ref().map(|(fp, _)| *fp);
        if let Some((_, lines)) = f.established {
            pipeline.finish(lines, now, batch);
        }
        tracing::debug!(file = %f.target.display(), "closed");
        let on_disk = stat.is_some_and(|m| m.nlink() > 0);
        let found = if on_disk { f.target.parent().and_then(|dir| beside(dir, key)) } else { None };
        match (fingerprint, found) {
            (Some(fingerprint), Some(target)) => {
                let e = Entry {
                    dev: key.dev,
                    ino: key.ino,
                    fingerprint,
                    offset: end,
                    path: f.path,
                    target,
                    finished: true,
                };
                self.finished.insert(key, e.clone());
                batch.updates.push(Update::Position(e));
            }
            _ => batch.updates.push(Update::Forget(key)),
        }
    }

    /// Counts and reports lines that will never be read: `from..to` of `file`
    /// (`to` None: the file's size is unknown). Warnings are throttled.
    fn lost(&self, file: &Path, from: u64, to: Option<u64>, why: &str) {
        if to.is_some_and(|to| to <= from) {
            return;
        }
        metrics().files_lost.inc();
        if let Some(to) = to {
            metrics().bytes_lost.inc_by(to - from);
        }
        let Some(suppressed) = self.loss_log.check() else { return };
        match to {
            Some(to) => tracing::warn!(file = %file.display(), from, to, bytes = to - from, suppressed,
                "container log lines LOST: {why}; bytes {from}..{to} of the file were never read \
                 (counted in klg_containers_bytes_lost_total)"),
            None => tracing::warn!(file = %file.display(), from, suppressed,
                "container log lines may be LOST: {why}; whatever it held after byte {from} was never read \
                 (its size is unknown; counted in klg_containers_files_lost_total)"),
        }
    }

    /// A path that cannot be listed or opened: warned (throttled) and counted
    /// once when it starts failing; retried at every scan.
    ///
    /// A path that vanished between its listing and its opening was renamed or
    /// removed under the tailer (a rotation racing the listing) and is no
    /// error: nothing is lost by it — the next listing finds the file where it
    /// went (or as a rotated sibling), and a file gone before its end is
    /// counted by the loss counters.
    fn note_error(&mut self, path: &Path, e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::NotFound {
            return;
        }
        self.failing_now.insert(path.to_path_buf());
        if self.failing.contains_key(path) {
            return;
        }
        self.failing.insert(path.to_path_buf(), e.to_string());
        metrics().file_errors.inc();
        if let Some(suppressed) = self.error_log.check() {
            tracing::warn!(file = %path.display(), suppressed,
                "cannot read container log path: {e}; other files are not affected, it is tried again at every poll");
        }
    }
}
