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
//! Rotated siblings: a file can be created and rotated away between two
//! listings (a starved poll, two rotations in one interval, the gateway down),
//! so the glob never shows it. The kubelet keeps rotated files beside the live
//! one (`<dir>/0.log.<timestamp>`), so the directory of every live file is
//! listed too — on a rotation, at start-up, and whenever its mtime changed —
//! and a sibling `<live name>.*` that the checkpoint has not finished is opened,
//! detached, and read to its end before its successor (mtime order). A file
//! read to its end stays in the checkpoint as `finished` while it is on disk.
//! Whatever is lost anyway (a rotated file closed or gone before its end) is
//! counted in `klg_containers_bytes_lost_total` / `files_lost_total` and logged.
//!
//! A file's bytes go to the [`Pipeline`] once the file has a fingerprint (its
//! first line is complete); this module only says when and from which offset.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::checkpoint::{Entry, Update};
use super::config::{ContainersConfig, StartAt};
use super::discovery::{self, Filters, Found};
use super::file_id::{FileKey, Fingerprint};
use super::metadata::Metadata;
use super::metrics::metrics;
use super::pipeline::{Batch, Lines, Pipeline};
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

/// One open file and where it stands in its life: waiting for its first line,
/// being read, detached after rotation, drained.
struct TailFile {
    key: FileKey,
    file: File,
    path: PathBuf,
    target: PathBuf,
    meta: Metadata,
    opened: Instant,
    /// Set once the file has a fingerprint (its first line is complete).
    established: Option<(Fingerprint, Lines)>,
    resume: Option<Entry>,
    start_at_end: bool,
    /// Rotated away or deleted at this time: read to the end, then close.
    detached: Option<Instant>,
    /// A read after detaching returned no data.
    drained: bool,
    /// The path's previous file; this one waits until it is drained.
    waits_for: Option<FileKey>,
    at_eof: bool,
    last_data: Instant,
}

impl TailFile {
    /// Opens the listed file; Ok(None) if it is no longer the file that was
    /// listed (the path was replaced in between).
    fn open(fd: Found, target: PathBuf, meta: Metadata, now: Instant) -> std::io::Result<Option<TailFile>> {
        let file = File::open(&target)?;
        let key = FileKey::of(&file.metadata()?);
        Ok((key == fd.key).then(|| TailFile::new(key, file, fd.path, target, meta, now)))
    }

    fn new(key: FileKey, file: File, path: PathBuf, target: PathBuf, meta: Metadata, now: Instant) -> TailFile {
        TailFile {
            key,
            file,
            path,
            target,
            meta,
            opened: now,
            established: None,
            resume: None,
            start_at_end: false,
            detached: None,
            drained: false,
            waits_for: None,
            at_eof: false,
            last_data: now,
        }
    }

    fn mtime(&self) -> Option<SystemTime> {
        self.file.metadata().and_then(|m| m.modified()).ok()
    }

    fn entry(&self) -> Option<Entry> {
        let (fp, lines) = self.established.as_ref()?;
        Some(Entry {
            dev: self.key.dev,
            ino: self.key.ino,
            fingerprint: *fp,
            offset: lines.resume_offset(),
            path: self.path.clone(),
            target: self.target.clone(),
            finished: false,
        })
    }

    fn read_offset(&self) -> u64 {
        self.established.as_ref().map_or(0, |(_, lines)| lines.read_offset())
    }

    /// Gives the file its fingerprint and start offset, once its first line is
    /// complete (or it has waited `partial_flush_timeout` for one). False: not yet.
    fn establish(&mut self, cfg: &ContainersConfig, pipeline: &Pipeline, now: Instant) -> bool {
        let fp = match Fingerprint::read(&self.file, cfg.fingerprint_bytes) {
            Ok(Some(fp)) => fp,
            Ok(None) => {
                let len = self.file.metadata().map(|m| m.len()).unwrap_or(0);
                // Nobody writes to a rotated file any more: take what it has now.
                let waited = self.detached.is_some() || now.duration_since(self.opened) >= cfg.partial_flush_timeout;
                if len == 0 || !waited {
                    return false;
                }
                // A lone unterminated first line: fingerprint what there is.
                match Fingerprint::read(&self.file, len as usize) {
                    Ok(Some(fp)) => fp,
                    _ => return false,
                }
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), "cannot read: {e}");
                return false;
            }
        };
        let mut fingerprint = fp;
        let mut offset = 0;
        if let Some(entry) = self.resume.take() {
            if entry.fingerprint.matches(&self.file).unwrap_or(false) {
                fingerprint = entry.fingerprint;
                offset = entry.offset;
            } else {
                tracing::info!(file = %self.path.display(), "inode reused by a new file: reading it from the start");
            }
        } else if self.start_at_end {
            offset = end_of_last_line(&self.file).unwrap_or(0);
        }
        let lines = pipeline.start(self.key, fingerprint, &self.path, self.meta.clone(), offset);
        self.established = Some((fingerprint, lines));
        true
    }

    /// Reads up to [`READS_PER_TURN`] buffer-fulls through the pipeline, or
    /// until the batch is full. True if data was read.
    fn read_turn(&mut self, pipeline: &mut Pipeline, batch: &mut Batch, now: Instant, batch_max: usize) -> bool {
        let mut busy = false;
        for _ in 0..READS_PER_TURN {
            let Some((_, lines)) = self.established.as_mut() else {
                break;
            };
            match pipeline.read(lines, &self.file, now, batch) {
                Ok(0) => {
                    self.at_eof = true;
                    if self.detached.is_some() {
                        self.drained = true;
                    }
                    break;
                }
                Ok(_) => {
                    busy = true;
                    self.at_eof = false;
                    self.last_data = now;
                    if let Some(e) = self.entry() {
                        batch.position(e);
                    }
                    if batch.docs.len() >= batch_max {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %self.path.display(), "read error, will retry: {e}");
                    break;
                }
            }
        }
        busy
    }
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

    /// Checkpointed files that no glob matches any more were rotated while the
    /// gateway was down: find them beside their old target (same dev and inode,
    /// same fingerprint) and read them to the end. The rest are gone before they
    /// were read to their end: forgotten, and counted as (possibly) lost.
    fn recover_orphans(&mut self, batch: &mut Batch, now: Instant) {
        let orphans: Vec<Entry> = std::mem::take(&mut self.resume).into_values().collect();
        for entry in orphans {
            if self.files.contains_key(&entry.key()) {
                continue;
            }
            // A file the filters exclude now is not read, rotated or not.
            let excluded = self.ignored.values().any(|k| *k == entry.key());
            let found = entry.target.parent().filter(|_| !excluded).and_then(|dir| beside(dir, entry.key()));
            match found {
                Some(path) => self.recover(entry, path, now),
                None => {
                    if !excluded {
                        self.lost(
                            &entry.target,
                            entry.offset,
                            None,
                            "the file was deleted or compressed while the gateway was down",
                        );
                    }
                    batch.updates.push(Update::Forget(entry.key()));
                }
            }
        }
    }

    /// Opens an orphan found at `path`, detached: it is read to its end, before
    /// the file now at its old path.
    fn recover(&mut self, entry: Entry, path: PathBuf, now: Instant) {
        tracing::info!(file = %path.display(), "reading a file rotated while the gateway was down");
        let key = entry.key();
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let meta = Metadata::from_paths(&entry.path, Some(&path));
        let old_path = entry.path.clone();
        self.resume.insert(key, entry);
        let found = Found { path: old_path.clone(), key, len };
        let opened = match TailFile::open(found, path.clone(), meta, now) {
            Ok(f) => f,
            Err(e) => {
                self.note_error(&path, &e);
                None
            }
        };
        if !opened.is_some_and(|f| self.add(f, None)) {
            return;
        }
        self.detach(key, now);
        // The file now at the old path was written after this one.
        if let Some(newer) = self.by_path.get(&old_path).copied().filter(|k| *k != key) {
            if let Some(f) = self.files.get_mut(&newer) {
                f.waits_for = Some(key);
            }
        }
    }

    /// Has `dir` changed (a file created, renamed or removed) since its siblings were listed?
    fn dir_changed(&self, dir: &Path) -> bool {
        let mtime = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
        self.dirs.get(dir).is_none_or(|seen| !seen.settled || seen.mtime != mtime)
    }

    /// Lists `dir` for rotated siblings (`<live name>.*`) of its live files and
    /// opens those the checkpoint has not finished, chained in mtime order
    /// before the live file. Finished entries of `dir` that are gone are forgotten.
    fn siblings(&mut self, dir: &Path, batch: &mut Batch, now: Instant) {
        let mut bases: Vec<(OsString, PathBuf)> = Vec::new();
        for (path, key) in &self.by_path {
            if let Some(f) = self.files.get(key) {
                if f.target.parent() == Some(dir) {
                    if let Some(name) = f.target.file_name() {
                        bases.push((name.to_os_string(), path.clone()));
                    }
                }
            }
        }
        let mtime = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    self.note_error(dir, &e);
                }
                self.dirs.remove(dir);
                return;
            }
        };
        let settled =
            mtime.and_then(|m| SystemTime::now().duration_since(m).ok()).is_some_and(|age| age >= MTIME_SETTLE);
        self.dirs.insert(dir.to_path_buf(), DirSeen { mtime, settled });
        let mut present = HashSet::new();
        let mut candidates = Vec::new();
        for path in rd.flatten().map(|d| d.path()) {
            if discovery::skipped_name(&path) {
                continue;
            }
            let Ok(m) = std::fs::metadata(&path) else { continue };
            if !m.is_file() {
                continue;
            }
            let key = FileKey::of(&m);
            present.insert(key);
            let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
            let live = bases.iter().find(|(base, _)| {
                let base = base.as_bytes();
                name.len() > base.len() + 1 && name.starts_with(base) && name[base.len()] == b'.'
            });
            if let Some((_, live_path)) = live {
                if !self.files.contains_key(&key) {
                    candidates.push((m.modified().ok(), key, path, live_path.clone(), m.len()));
                }
            }
        }
        let gone: Vec<FileKey> = self
            .finished
            .iter()
            .filter(|(k, e)| e.target.parent() == Some(dir) && !present.contains(k))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            self.finished.remove(&k);
            batch.updates.push(Update::Forget(k));
        }
        candidates.sort_by_key(|(mtime, key, ..)| (*mtime, *key));
        let mut opened = false;
        for (_, key, path, live_path, len) in candidates {
            opened |= self.open_sibling(key, path, live_path, len, batch, now);
        }
        if opened {
            self.chain(dir);
        }
    }

    /// Opens one rotated sibling, detached, unless the checkpoint finished it
    /// (or the very first run starts at the end). True if it was opened.
    fn open_sibling(
        &mut self,
        key: FileKey,
        path: PathBuf,
        live_path: PathBuf,
        len: u64,
        batch: &mut Batch,
        now: Instant,
    ) -> bool {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                self.note_error(&path, &e);
                return false;
            }
        };
        if file.metadata().map(|m| FileKey::of(&m)).ok() != Some(key) {
            return false; // replaced in between: the next listing sees the new one
        }
        if let Some(done) = self.finished.get(&key) {
            if done.fingerprint.matches(&file).unwrap_or(true) {
                return false;
            }
            self.finished.remove(&key); // the inode was reused by another file
        }
        let head = head_fingerprint(&file, len, self.cfg.fingerprint_bytes);
        if let Some(fp) = head {
            if let Some(offset) = self.copies.remove(&fp) {
                // The copy of a file truncated in place: what was read of the
                // original is shipped; the rest is only here.
                tracing::info!(file = %path.display(), from = offset, "reading the copy of a copytruncated file from where the original was read to");
                let copy = Entry {
                    dev: key.dev,
                    ino: key.ino,
                    fingerprint: fp,
                    offset,
                    path: live_path.clone(),
                    target: path.clone(),
                    finished: false,
                };
                self.resume.insert(key, copy);
            } else if self.files.values().any(|f| f.established.as_ref().is_some_and(|(own, _)| *own == fp)) {
                // A copy of a file being read, not yet truncated: its lines
                // come from the original; looked at again once it is truncated.
                return false;
            }
        }
        let resumed = self.resume.contains_key(&key);
        if !resumed && self.first_run && !self.scanned_once && self.cfg.start_at_first_run == StartAt::End {
            // Older than the gateway's first start, which was told to skip what is there.
            if let Some(fingerprint) = head {
                let e = Entry {
                    dev: key.dev,
                    ino: key.ino,
                    fingerprint,
                    offset: len,
                    path: live_path,
                    target: path,
                    finished: true,
                };
                self.finished.insert(key, e.clone());
                batch.updates.push(Update::Position(e));
            }
            return false;
        }
        if resumed {
            tracing::info!(file = %path.display(), "reading a file rotated while the gateway was down (or a copy)");
        } else {
            tracing::info!(file = %path.display(), bytes = len, "reading a rotated file that was never read (found beside the live one)");
        }
        metrics().siblings_opened.inc();
        let meta = Metadata::from_paths(&live_path, Some(&path));
        let f = TailFile::new(key, file, live_path, path, meta, now);
        if !self.add(f, None) {
            return false;
        }
        self.detach(key, now);
        true
    }

    /// Orders the files of `dir`: rotated ones by mtime, each waiting for the
    /// one before, and the live ones after the newest rotated one.
    fn chain(&mut self, dir: &Path) {
        let mut rotated = Vec::new();
        let mut live = Vec::new();
        for (key, f) in &self.files {
            if f.target.parent() != Some(dir) {
                continue;
            }
            match f.detached {
                Some(_) if !f.drained => rotated.push((f.mtime(), *key)),
                Some(_) => {}
                None => live.push(*key),
            }
        }
        rotated.sort();
        let mut before = None;
        for (_, key) in rotated {
            self.files.get_mut(&key).expect("present").waits_for = before;
            before = Some(key);
        }
        for key in live {
            self.files.get_mut(&key).expect("present").waits_for = before;
        }
    }

    /// Forgets finished files that are gone from disk (their directory is not
    /// listed any more: the pod was deleted); follows those that were renamed.
    fn sweep_finished(&mut self, batch: &mut Batch) {
        let mut gone = Vec::new();
        let mut moved = Vec::new();
        for (key, e) in &self.finished {
            if std::fs::metadata(&e.target).is_ok_and(|m| FileKey::of(&m) == *key) {
                continue;
            }
            match e.target.parent().and_then(|dir| beside(dir, *key)) {
                Some(path) => moved.push((*key, path)),
                None => gone.push(*key),
            }
        }
        for key in gone {
            self.finished.remove(&key);
            batch.updates.push(Update::Forget(key));
        }
        for (key, path) in moved {
            let e = self.finished.get_mut(&key).expect("present");
            e.target = path;
            batch.updates.push(Update::Position(e.clone()));
        }
        let live = self.live_dirs();
        self.dirs.retain(|d, _| live.contains(d));
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
    fn note_error(&mut self, path: &Path, e: &std::io::Error) {
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

/// The fingerprint of a file's head as [`TailFile::establish`] takes it.
fn head_fingerprint(file: &File, len: u64, max: usize) -> Option<Fingerprint> {
    match Fingerprint::read(file, max) {
        Ok(Some(fp)) => Some(fp),
        Ok(None) if len > 0 => Fingerprint::read(file, len as usize).ok().flatten(),
        _ => None,
    }
}

/// The file in `dir` with this (dev, inode), if any.
fn beside(dir: &Path, key: FileKey) -> Option<PathBuf> {
    let rd = std::fs::read_dir(dir).ok()?;
    rd.flatten().map(|d| d.path()).find(|p| {
        !discovery::skipped_name(p) && std::fs::metadata(p).is_ok_and(|m| m.is_file() && FileKey::of(&m) == key)
    })
}

/// The offset just after the file's last newline (start at the end, whole lines only).
fn end_of_last_line(file: &File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}
