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
//! A file's bytes go to the [`Pipeline`] once the file has a fingerprint (its
//! first line is complete); this module only says when and from which offset.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::checkpoint::{Entry, Update};
use super::config::{ContainersConfig, StartAt};
use super::discovery::{self, Filters, Found};
use super::file_id::{FileKey, Fingerprint};
use super::metadata::Metadata;
use super::metrics::metrics;
use super::pipeline::{Batch, Lines, Pipeline};

/// How many buffer-fulls one file may read per step before the others get a turn.
const READS_PER_TURN: usize = 8;

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
    /// Opens the listed file; None if it cannot be opened or is no longer the
    /// file that was listed (the path was replaced in between).
    fn open(fd: Found, target: PathBuf, meta: Metadata, now: Instant) -> Option<TailFile> {
        let file = match File::open(&target) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(file = %fd.path.display(), "cannot open container log: {e}");
                return None;
            }
        };
        let key = FileKey::of(&file.metadata().ok()?);
        (key == fd.key).then(|| TailFile {
            key,
            file,
            path: fd.path,
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
        })
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
    first_run: bool,
    scanned_once: bool,
}

impl Files {
    /// `resume` is the loaded checkpoint, None on the very first run.
    pub(super) fn new(cfg: ContainersConfig, resume: Option<BTreeMap<FileKey, Entry>>) -> Files {
        Files {
            filters: Filters::new(&cfg),
            cfg,
            files: BTreeMap::new(),
            by_path: HashMap::new(),
            ignored: HashMap::new(),
            first_run: resume.is_none(),
            resume: resume.unwrap_or_default(),
            scanned_once: false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.files.len()
    }

    /// Re-lists the globs and applies what changed: new files, rotations,
    /// deletions, truncations (whose pending pieces go out through `pipeline`).
    pub(super) fn scan(&mut self, pipeline: &mut Pipeline, batch: &mut Batch, now: Instant) {
        let found = discovery::list(&self.cfg.paths);
        let mut seen: HashSet<PathBuf> = HashSet::with_capacity(found.len());
        for fd in found {
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
                    self.detach(old, now);
                    self.open(fd, Some(old), now);
                }
                None => self.open(fd, None, now),
            }
        }
        let gone: Vec<(PathBuf, FileKey)> =
            self.by_path.iter().filter(|(p, _)| !seen.contains(*p)).map(|(p, k)| (p.clone(), *k)).collect();
        for (path, key) in gone {
            self.by_path.remove(&path);
            self.detach(key, now);
        }
        self.ignored.retain(|p, _| seen.contains(p));
        if !self.scanned_once {
            self.scanned_once = true;
            self.recover_orphans(batch, now);
        }
    }

    /// Gives every file a turn at reading. True if any data was read.
    pub(super) fn read(&mut self, pipeline: &mut Pipeline, batch: &mut Batch, now: Instant) -> bool {
        let keys: Vec<FileKey> = self.files.keys().copied().collect();
        let mut busy = false;
        for key in keys {
            busy |= self.read_file(key, pipeline, batch, now);
        }
        busy
    }

    /// Sends dangling partial messages that waited long enough, and closes
    /// rotated files that are done.
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
    }

    /// Checkpointed files that no glob matches any more were rotated while the
    /// gateway was down: find them beside their old target (same dev and inode,
    /// same fingerprint) and read them to the end. The rest are gone: forget them.
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
                None => batch.updates.push(Update::Forget(entry.key())),
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
        if !TailFile::open(found, path, meta, now).is_some_and(|f| self.add(f, None)) {
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
        if TailFile::open(fd, target, meta, now).is_some_and(|f| self.add(f, waits_for)) {
            self.by_path.insert(path, key);
        }
    }

    /// Registers a freshly opened file; false if that file is open already.
    fn add(&mut self, mut f: TailFile, waits_for: Option<FileKey>) -> bool {
        if self.files.contains_key(&f.key) {
            return false;
        }
        f.start_at_end = self.first_run && !self.scanned_once && self.cfg.start_at_first_run == StartAt::End;
        f.resume = self.resume.remove(&f.key);
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

    fn close(&mut self, key: FileKey, pipeline: &mut Pipeline, batch: &mut Batch, now: Instant) {
        let f = self.files.remove(&key).expect("present");
        if !f.drained {
            metrics().files_closed_unread.inc();
            tracing::warn!(file = %f.target.display(), read_to = f.read_offset(),
                "closing a rotated file before its end: rotated_max_open reached (the rest is lost)");
        }
        if let Some((_, lines)) = f.established {
            pipeline.finish(lines, now, batch);
        }
        tracing::debug!(file = %f.target.display(), "closed");
        batch.updates.push(Update::Forget(key));
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
