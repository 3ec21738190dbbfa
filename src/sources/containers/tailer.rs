//! The read loop: files → lines → messages → documents, in batches that carry
//! the checkpoint updates they make safe.
//!
//! It runs on one blocking thread and owns every open file. Per step it
//! re-lists the globs when due (rotation, new and deleted files, truncation),
//! reads each file a bounded amount (fairness), and does housekeeping (dangling
//! partials, closing rotated files).
//!
//! Rotation: a path that resolves to a new (dev, inode) *detaches* the old
//! file, which stays open and is read to its end; the new file is read only once
//! the old one has been drained. A detached file is closed when it has been at EOF
//! for `rotated_grace`, and in any case after `rotated_max_open`, so a rotated
//! file never pins disk space for long. Copytruncate (the file shrank below the read
//! offset, or its head no longer matches the fingerprint) restarts at offset 0.
//!
//! Memory: one shared read buffer; per file only the bytes of an incomplete last
//! line and pending partial messages (each capped at `max_message_bytes`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::checkpoint::{Entry, Update};
use super::config::{ContainersConfig, StartAt};
use super::discovery::{self, Filters, Found, Wakeup};
use super::document::{ContainerNormalizer, FileContext};
use super::file_id::{FileKey, Fingerprint};
use super::format::{self, Format};
use super::metadata::Metadata;
use super::metrics::metrics;
use super::reassembly::{Flags, Reassembler, Record};
use crate::document::time::ingested_now;
use crate::document::Document;

/// Documents plus the checkpoint updates they make safe.
#[derive(Debug, Default)]
pub struct Batch {
    pub docs: Vec<Document>,
    pub updates: Vec<Update>,
    pub bytes: usize,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty() && self.updates.is_empty()
    }

    fn position(&mut self, entry: Entry) {
        if let Some(Update::Position(last)) = self.updates.last_mut() {
            if last.key() == entry.key() {
                *last = entry;
                return;
            }
        }
        self.updates.push(Update::Position(entry));
    }
}

/// How many buffer-fulls one file may read per step before the others get a turn.
const READS_PER_TURN: usize = 8;

struct TailFile {
    key: FileKey,
    file: File,
    path: PathBuf,
    target: PathBuf,
    meta: Metadata,
    opened: Instant,
    /// Set once the file has a fingerprint (its first line is complete).
    ctx: Option<(Fingerprint, FileContext)>,
    format: Option<Format>,
    /// Next byte to read.
    read_offset: u64,
    /// Bytes read but not yet a complete line; they start at `read_offset - carry.len()`.
    carry: Vec<u8>,
    reasm: Reassembler,
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
    fn read_to(&self) -> u64 {
        self.read_offset - self.carry.len() as u64
    }

    fn entry(&self) -> Option<Entry> {
        let (fp, _) = self.ctx.as_ref()?;
        Some(Entry {
            dev: self.key.dev,
            ino: self.key.ino,
            fingerprint: *fp,
            offset: self.reasm.safe_offset(self.read_to()),
            path: self.path.clone(),
            target: self.target.clone(),
        })
    }
}

pub struct Tailer {
    cfg: ContainersConfig,
    filters: Filters,
    normalizer: ContainerNormalizer,
    files: BTreeMap<FileKey, TailFile>,
    by_path: HashMap<PathBuf, FileKey>,
    /// Paths the filters excluded, with the file they pointed to then.
    ignored: HashMap<PathBuf, FileKey>,
    resume: BTreeMap<FileKey, Entry>,
    first_run: bool,
    scanned_once: bool,
    last_scan: Option<Instant>,
    buf: Vec<u8>,
    ingested: String,
    ingested_time: DateTime<Utc>,
}

impl Tailer {
    /// `resume` is the loaded checkpoint, None on the very first run.
    pub fn new(
        cfg: ContainersConfig,
        normalizer: ContainerNormalizer,
        resume: Option<BTreeMap<FileKey, Entry>>,
    ) -> Tailer {
        Tailer {
            filters: Filters::new(&cfg),
            buf: Vec::with_capacity(cfg.read_buffer_bytes),
            cfg,
            normalizer,
            files: BTreeMap::new(),
            by_path: HashMap::new(),
            ignored: HashMap::new(),
            first_run: resume.is_none(),
            resume: resume.unwrap_or_default(),
            scanned_once: false,
            last_scan: None,
            ingested: ingested_now(),
            ingested_time: Utc::now(),
        }
    }

    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// Reads until stopped: `send` gets each batch (false = the receiver is gone),
    /// `stop` is polled between steps.
    pub fn run(mut self, wakeup: &Wakeup, mut send: impl FnMut(Batch) -> bool, stop: impl Fn() -> bool) {
        let mut batch = Batch::default();
        while !stop() {
            let busy = self.step(&mut batch, Instant::now(), false);
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
            self.scan(batch, now);
            self.last_scan = Some(now);
        }
        self.ingested = ingested_now();
        self.ingested_time = Utc::now();
        let before = batch.docs.len();
        let mut busy = false;
        let keys: Vec<FileKey> = self.files.keys().copied().collect();
        for key in keys {
            busy |= self.read_file(key, batch, now);
        }
        self.housekeeping(batch, now);
        metrics().files_open.set(self.files.len() as i64);
        busy || batch.docs.len() > before
    }

    fn scan(&mut self, batch: &mut Batch, now: Instant) {
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
                Some(k) if k == fd.key => self.check_truncation(k, fd.len, batch),
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
            let found =
                entry.target.parent().filter(|_| !excluded).and_then(|dir| std::fs::read_dir(dir).ok()).and_then(
                    |rd| {
                        rd.flatten().map(|d| d.path()).find(|p| {
                            !discovery::skipped_name(p)
                                && std::fs::metadata(p).is_ok_and(|m| m.is_file() && FileKey::of(&m) == entry.key())
                        })
                    },
                );
            match found {
                Some(path) => {
                    tracing::info!(file = %path.display(), "reading a file rotated while the gateway was down");
                    let key = entry.key();
                    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    let meta = Metadata::from_paths(&entry.path, Some(&path));
                    self.resume.insert(key, entry.clone());
                    if self.open_with(Found { path: entry.path.clone(), key, len }, path, meta, None, now) {
                        self.detach(key, now);
                        // The file now at the old path was written after this one.
                        if let Some(newer) = self.by_path.get(&entry.path).copied().filter(|k| *k != key) {
                            if let Some(f) = self.files.get_mut(&newer) {
                                f.waits_for = Some(key);
                            }
                        }
                    }
                }
                None => batch.updates.push(Update::Forget(entry.key())),
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
        if self.open_with(fd, target, meta, waits_for, now) {
            self.by_path.insert(path, key);
        }
    }

    /// Opens and registers the file; false if it could not be opened or is no
    /// longer the file that was listed.
    fn open_with(
        &mut self,
        fd: Found,
        target: PathBuf,
        meta: Metadata,
        waits_for: Option<FileKey>,
        now: Instant,
    ) -> bool {
        let file = match File::open(&target) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(file = %fd.path.display(), "cannot open container log: {e}");
                return false;
            }
        };
        // The path may have been replaced between the listing and the open.
        let key = match file.metadata() {
            Ok(m) => FileKey::of(&m),
            Err(_) => return false,
        };
        if key != fd.key || self.files.contains_key(&key) {
            return false;
        }
        let start_at_end = self.first_run && !self.scanned_once && self.cfg.start_at_first_run == StartAt::End;
        tracing::debug!(file = %fd.path.display(), dev = key.dev, inode = key.ino, "tailing");
        self.files.insert(
            key,
            TailFile {
                key,
                file,
                path: fd.path,
                target,
                meta,
                opened: now,
                ctx: None,
                format: None,
                read_offset: 0,
                carry: Vec::new(),
                reasm: Reassembler::new(self.cfg.max_message_bytes),
                resume: self.resume.remove(&key),
                start_at_end,
                detached: None,
                drained: false,
                waits_for,
                at_eof: false,
                last_data: now,
            },
        );
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

    fn check_truncation(&mut self, key: FileKey, len: u64, batch: &mut Batch) {
        let Some(f) = self.files.get_mut(&key) else {
            return;
        };
        let shrank = len < f.read_offset;
        let rewritten = !shrank && f.ctx.as_ref().is_some_and(|(fp, _)| !fp.matches(&f.file).unwrap_or(true));
        if !(shrank || rewritten) {
            return;
        }
        tracing::info!(file = %f.path.display(), from = f.read_offset, to = len, "file truncated in place (copytruncate): reading from the start");
        metrics().truncations.inc();
        if let Some((_, ctx)) = &f.ctx {
            for rec in f.reasm.flush_all() {
                metrics().partial_flushed.inc();
                emit(&mut self.normalizer, ctx, &rec, &self.ingested, batch);
            }
        }
        f.read_offset = 0;
        f.carry.clear();
        f.ctx = None;
        f.format = None;
        f.at_eof = false;
    }

    /// Reads a bounded amount from one file. True if data was read.
    fn read_file(&mut self, key: FileKey, batch: &mut Batch, now: Instant) -> bool {
        if let Some(pred) = self.files.get(&key).and_then(|f| f.waits_for) {
            if self.files.get(&pred).is_some_and(|p| !p.drained) {
                return false;
            }
            self.files.get_mut(&key).expect("present").waits_for = None;
        }
        let Tailer { cfg, normalizer, files, buf, ingested, ingested_time, .. } = self;
        let f = files.get_mut(&key).expect("present");
        if f.ctx.is_none() && !establish(cfg, normalizer, f, now) {
            // A rotated-away file with nothing readable must not hold up its successor.
            if f.detached.is_some() {
                f.drained = true;
                f.at_eof = true;
            }
            return false;
        }
        let mut busy = false;
        for _ in 0..READS_PER_TURN {
            match read_chunk(f, buf, cfg.read_buffer_bytes) {
                Ok(0) => {
                    f.at_eof = true;
                    if f.detached.is_some() {
                        f.drained = true;
                    }
                    break;
                }
                Ok(n) => {
                    busy = true;
                    f.at_eof = false;
                    f.last_data = now;
                    metrics().bytes_read.inc_by(n as u64);
                    process(cfg, normalizer, f, buf, now, ingested, *ingested_time, batch);
                    if let Some(e) = f.entry() {
                        batch.position(e);
                    }
                    if batch.docs.len() >= cfg.batch_max_documents {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %f.path.display(), "read error, will retry: {e}");
                    break;
                }
            }
        }
        busy
    }

    fn housekeeping(&mut self, batch: &mut Batch, now: Instant) {
        let mut close = Vec::new();
        for (key, f) in self.files.iter_mut() {
            if f.at_eof && f.reasm.has_pending() {
                if let Some((_, ctx)) = &f.ctx {
                    let expired = f.reasm.flush_expired(now, self.cfg.partial_flush_timeout);
                    if !expired.is_empty() {
                        for rec in &expired {
                            metrics().partial_flushed.inc();
                            emit(&mut self.normalizer, ctx, rec, &self.ingested, batch);
                        }
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
            let mut f = self.files.remove(&key).expect("present");
            if !f.drained {
                metrics().files_closed_unread.inc();
                tracing::warn!(file = %f.target.display(), read_to = f.read_offset,
                    "closing a rotated file before its end: rotated_max_open reached (the rest is lost)");
            }
            if f.ctx.is_some() {
                // An unterminated last line (the writer died mid-line) is a dangling piece too.
                let carry = std::mem::take(&mut f.carry);
                if !carry.is_empty() {
                    let offset = f.read_to() - carry.len() as u64;
                    let fmt = *f.format.get_or_insert_with(|| Format::detect(&carry));
                    match format::parse(fmt, &carry) {
                        Ok(mut piece) => {
                            piece.partial = true;
                            f.reasm.push(piece, offset, now);
                        }
                        Err(_) => line(
                            &mut self.normalizer,
                            &mut f,
                            &carry,
                            offset,
                            now,
                            &self.ingested,
                            self.ingested_time,
                            batch,
                        ),
                    }
                }
                let (_, ctx) = f.ctx.as_ref().expect("checked");
                for rec in f.reasm.flush_all() {
                    metrics().partial_flushed.inc();
                    emit(&mut self.normalizer, ctx, &rec, &self.ingested, batch);
                }
            }
            tracing::debug!(file = %f.target.display(), "closed");
            batch.updates.push(Update::Forget(key));
        }
    }
}

/// Gives the file its fingerprint and start offset, once its first line is
/// complete (or it has waited `partial_flush_timeout` for one). False: not yet.
fn establish(cfg: &ContainersConfig, normalizer: &ContainerNormalizer, f: &mut TailFile, now: Instant) -> bool {
    let fp = match Fingerprint::read(&f.file, cfg.fingerprint_bytes) {
        Ok(Some(fp)) => fp,
        Ok(None) => {
            let len = f.file.metadata().map(|m| m.len()).unwrap_or(0);
            // Nobody writes to a rotated file any more: take what it has now.
            let waited = f.detached.is_some() || now.duration_since(f.opened) >= cfg.partial_flush_timeout;
            if len == 0 || !waited {
                return false;
            }
            // A lone unterminated first line: fingerprint what there is.
            match Fingerprint::read(&f.file, len as usize) {
                Ok(Some(fp)) => fp,
                _ => return false,
            }
        }
        Err(e) => {
            tracing::warn!(file = %f.path.display(), "cannot read: {e}");
            return false;
        }
    };
    let mut fingerprint = fp;
    let mut offset = 0;
    if let Some(entry) = f.resume.take() {
        if entry.fingerprint.matches(&f.file).unwrap_or(false) {
            fingerprint = entry.fingerprint;
            offset = entry.offset;
        } else {
            tracing::info!(file = %f.path.display(), "inode reused by a new file: reading it from the start");
        }
    } else if f.start_at_end {
        offset = end_of_last_line(&f.file).unwrap_or(0);
    }
    f.read_offset = offset;
    let ctx = normalizer.file_context(f.key, fingerprint, &f.path, f.meta.clone());
    f.ctx = Some((fingerprint, ctx));
    true
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

/// `buf` = the file's carry + up to `size` new bytes.
fn read_chunk(f: &mut TailFile, buf: &mut Vec<u8>, size: usize) -> std::io::Result<usize> {
    buf.clear();
    buf.extend_from_slice(&f.carry);
    let c = buf.len();
    buf.resize(c + size, 0);
    let n = loop {
        match f.file.read_at(&mut buf[c..], f.read_offset) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    let n = match n {
        Ok(n) => n,
        Err(e) => {
            buf.truncate(c);
            return Err(e);
        }
    };
    buf.truncate(c + n);
    if n > 0 {
        f.read_offset += n as u64;
        f.carry.clear();
    }
    Ok(n)
}

/// Splits `buf` (which starts at `f.read_to()` before this read) into lines.
#[allow(clippy::too_many_arguments)]
fn process(
    cfg: &ContainersConfig,
    normalizer: &mut ContainerNormalizer,
    f: &mut TailFile,
    buf: &[u8],
    now: Instant,
    ingested: &str,
    ingested_time: DateTime<Utc>,
    batch: &mut Batch,
) {
    let base = f.read_offset - buf.len() as u64;
    let mut start = 0;
    let mut lines = 0u64;
    for nl in memchr::memchr_iter(b'\n', buf) {
        line(normalizer, f, &buf[start..nl], base + start as u64, now, ingested, ingested_time, batch);
        lines += 1;
        start = nl + 1;
    }
    // A "line" longer than any message may be is handled now rather than buffered without bound.
    if buf.len() - start > cfg.max_message_bytes + 64 * 1024 {
        line(normalizer, f, &buf[start..], base + start as u64, now, ingested, ingested_time, batch);
        lines += 1;
        start = buf.len();
    }
    f.carry.extend_from_slice(&buf[start..]);
    if f.carry.capacity() > 4 * cfg.read_buffer_bytes && f.carry.len() < cfg.read_buffer_bytes {
        f.carry.shrink_to_fit();
    }
    metrics().lines_read.inc_by(lines);
    metrics().cut_bytes.inc_by(f.reasm.take_cut_bytes());
}

#[allow(clippy::too_many_arguments)]
fn line(
    normalizer: &mut ContainerNormalizer,
    f: &mut TailFile,
    text: &[u8],
    offset: u64,
    now: Instant,
    ingested: &str,
    ingested_time: DateTime<Utc>,
    batch: &mut Batch,
) {
    if text.is_empty() {
        return;
    }
    let fmt = *f.format.get_or_insert_with(|| Format::detect(text));
    let (_, ctx) = f.ctx.as_ref().expect("established before reading");
    match format::parse(fmt, text) {
        Ok(parsed) => {
            if let Some(rec) = f.reasm.push(parsed, offset, now) {
                emit(normalizer, ctx, &rec, ingested, batch);
            }
        }
        Err(e) => {
            metrics().invalid_lines.inc();
            let rec = Record {
                offset,
                time_text: ingested.into(),
                time: ingested_time,
                stream: None,
                message: text.into(),
                flags: Flags { invalid: true, ..Flags::default() },
                error: Some(e.to_string()),
            };
            emit(normalizer, ctx, &rec, ingested, batch);
        }
    }
}

fn emit(normalizer: &mut ContainerNormalizer, ctx: &FileContext, rec: &Record<'_>, ingested: &str, batch: &mut Batch) {
    if rec.flags.cut {
        metrics().cut_messages.inc();
    }
    metrics().messages.inc();
    let doc = normalizer.normalize(ctx, rec, ingested);
    batch.bytes += doc.body.len();
    batch.docs.push(doc);
}
