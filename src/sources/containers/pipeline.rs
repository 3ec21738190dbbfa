//! The line pipeline: the bytes of one file → complete lines → parsed (CRI or
//! docker, detected from the first line) → reassembled messages → documents,
//! collected with the checkpoint updates they make safe in a [`Batch`].
//!
//! It knows nothing of rotation or which files are open: the file registry
//! (`files.rs`) hands it one file's `Lines` and that file's handle, and
//! everything flows one way from here to [`super::format`],
//! [`super::reassembly`] and [`super::document`].
//!
//! Memory: one read buffer shared by all files (`Pipeline` owns it); per file
//! only the bytes of an incomplete last line and its pending partial messages
//! (each capped at `max_message_bytes`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::checkpoint::{Entry, Update};
use super::config::ContainersConfig;
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

    /// Records how far a file is safely read; consecutive positions of one file
    /// collapse into the last.
    pub(super) fn position(&mut self, entry: Entry) {
        if let Some(Update::Position(last)) = self.updates.last_mut() {
            if last.key() == entry.key() {
                *last = entry;
                return;
            }
        }
        self.updates.push(Update::Position(entry));
    }
}

/// One file's place in the pipeline: where reading stands, its line format and
/// its pending partial messages. Made once the file has a fingerprint.
pub(super) struct Lines {
    ctx: FileContext,
    format: Option<Format>,
    /// Next byte to read.
    read_offset: u64,
    /// Bytes read but not yet a complete line; they start at `read_offset - carry.len()`.
    carry: Vec<u8>,
    reasm: Reassembler,
    /// Inside a physical line longer than any message may be, which started at
    /// this offset: its head went out (cut), the rest up to its newline is dropped.
    discarding: Option<u64>,
}

impl Lines {
    pub(super) fn read_offset(&self) -> u64 {
        self.read_offset
    }

    /// The end of the last complete line read.
    pub(super) fn complete_offset(&self) -> u64 {
        self.read_offset - self.carry.len() as u64
    }

    /// Where a restart may resume: past the last complete line, but never past
    /// the start of a pending message.
    pub(super) fn resume_offset(&self) -> u64 {
        let safe = self.reasm.safe_offset(self.read_offset - self.carry.len() as u64);
        // Mid-way through an over-long line: a restart sends its head again (same _id).
        self.discarding.map_or(safe, |start| safe.min(start))
    }

    /// Reads up to `size` new bytes into `buf`, after the carry. 0 = at the end.
    fn read_chunk(&mut self, file: &File, buf: &mut Vec<u8>, size: usize) -> std::io::Result<usize> {
        buf.clear();
        buf.extend_from_slice(&self.carry);
        let c = buf.len();
        buf.resize(c + size, 0);
        let n = loop {
            match file.read_at(&mut buf[c..], self.read_offset) {
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
            self.read_offset += n as u64;
            self.carry.clear();
        }
        Ok(n)
    }
}

/// The time documents are stamped with as ingested, taken once per step.
struct Ingested {
    text: String,
    time: DateTime<Utc>,
}

impl Ingested {
    fn now() -> Ingested {
        Ingested { text: ingested_now(), time: Utc::now() }
    }
}

/// What turns any file's bytes into documents: the limits, the normalizer,
/// the shared read buffer and the current ingest time.
pub(super) struct Pipeline {
    read_buffer_bytes: usize,
    max_message_bytes: usize,
    partial_flush_timeout: Duration,
    normalizer: ContainerNormalizer,
    buf: Vec<u8>,
    ingested: Ingested,
}

impl Pipeline {
    pub(super) fn new(cfg: &ContainersConfig, normalizer: ContainerNormalizer) -> Pipeline {
        Pipeline {
            read_buffer_bytes: cfg.read_buffer_bytes,
            max_message_bytes: cfg.max_message_bytes,
            partial_flush_timeout: cfg.partial_flush_timeout,
            normalizer,
            buf: Vec::with_capacity(cfg.read_buffer_bytes),
            ingested: Ingested::now(),
        }
    }

    /// Documents from now on are stamped as ingested now.
    pub(super) fn stamp_ingested(&mut self) {
        self.ingested = Ingested::now();
    }

    /// A file's lines from `offset` on; `key`, `fingerprint`, `path` and `meta`
    /// are what every document from it repeats.
    pub(super) fn start(
        &self,
        key: FileKey,
        fingerprint: Fingerprint,
        path: &Path,
        meta: Metadata,
        offset: u64,
    ) -> Lines {
        Lines {
            ctx: self.normalizer.file_context(key, fingerprint, path, meta),
            format: None,
            read_offset: offset,
            carry: Vec::new(),
            reasm: Reassembler::new(self.max_message_bytes),
            discarding: None,
        }
    }

    /// Reads one buffer-full of `file` and turns its complete lines into
    /// documents. 0 = nothing more to read for now.
    pub(super) fn read(
        &mut self,
        lines: &mut Lines,
        file: &File,
        now: Instant,
        batch: &mut Batch,
    ) -> std::io::Result<usize> {
        let n = lines.read_chunk(file, &mut self.buf, self.read_buffer_bytes)?;
        if n > 0 {
            metrics().bytes_read.inc_by(n as u64);
            self.split(lines, now, batch);
        }
        Ok(n)
    }

    /// Sends the pending messages whose last piece is older than
    /// `partial_flush_timeout`, flagged partial. True if any was sent.
    pub(super) fn flush_expired(&mut self, lines: &mut Lines, now: Instant, batch: &mut Batch) -> bool {
        if !lines.reasm.has_pending() {
            return false;
        }
        let expired = lines.reasm.flush_expired(now, self.partial_flush_timeout);
        let mut cx = self.context(batch);
        for rec in &expired {
            metrics().partial_flushed.inc();
            cx.emit(&lines.ctx, rec);
        }
        !expired.is_empty()
    }

    /// Sends every pending message, flagged partial: no more pieces will come
    /// (the file was truncated or is closing).
    pub(super) fn flush_all(&mut self, lines: &mut Lines, batch: &mut Batch) {
        let mut cx = self.context(batch);
        for rec in lines.reasm.flush_all() {
            metrics().partial_flushed.inc();
            cx.emit(&lines.ctx, &rec);
        }
    }

    /// The file is closing: its unterminated last line (the writer died
    /// mid-line) is a dangling piece too, sent with the pending ones.
    pub(super) fn finish(&mut self, mut lines: Lines, now: Instant, batch: &mut Batch) {
        let carry = std::mem::take(&mut lines.carry);
        if !carry.is_empty() {
            let offset = lines.read_offset - carry.len() as u64;
            let fmt = *lines.format.get_or_insert_with(|| Format::detect(&carry));
            match format::parse(fmt, &carry) {
                Ok(mut piece) => {
                    piece.partial = true;
                    lines.reasm.push(piece, offset, now);
                }
                Err(_) => self.context(batch).line(&mut lines, &carry, offset, now),
            }
        }
        self.flush_all(&mut lines, batch);
    }

    fn context<'a>(&'a mut self, batch: &'a mut Batch) -> LineContext<'a> {
        LineContext { normalizer: &mut self.normalizer, ingested: &self.ingested, batch }
    }

    /// Splits the buffer (which starts at the file's `read_offset` before this
    /// read, carry included) into lines; the incomplete rest is carried over.
    fn split(&mut self, lines: &mut Lines, now: Instant, batch: &mut Batch) {
        let Pipeline { read_buffer_bytes, max_message_bytes, normalizer, buf, ingested, .. } = self;
        let mut cx = LineContext { normalizer, ingested, batch };
        let base = lines.read_offset - buf.len() as u64;
        let mut start = 0;
        let mut count = 0u64;
        if lines.discarding.is_some() {
            // The rest of an over-long line: dropped up to its newline, counted as cut.
            match memchr::memchr(b'\n', buf) {
                Some(nl) => {
                    metrics().cut_bytes.inc_by(nl as u64);
                    lines.discarding = None;
                    count += 1;
                    start = nl + 1;
                }
                None => {
                    metrics().cut_bytes.inc_by(buf.len() as u64);
                    return;
                }
            }
        }
        let skip = start;
        for nl in memchr::memchr_iter(b'\n', &buf[skip..]).map(|i| i + skip) {
            cx.line(lines, &buf[start..nl], base + start as u64, now);
            count += 1;
            start = nl + 1;
        }
        // A line longer than any message may be: its head is sent now (cut), and
        // the rest up to its newline is dropped as it is read, never buffered.
        let head = *max_message_bytes + 64 * 1024;
        if buf.len() - start > head {
            cx.line(lines, &buf[start..start + head], base + start as u64, now);
            metrics().cut_bytes.inc_by((buf.len() - start - head) as u64);
            lines.discarding = Some(base + start as u64);
            start = buf.len();
        }
        lines.carry.extend_from_slice(&buf[start..]);
        if lines.carry.capacity() > 4 * *read_buffer_bytes && lines.carry.len() < *read_buffer_bytes {
            lines.carry.shrink_to_fit();
        }
        metrics().lines_read.inc_by(count);
        metrics().cut_bytes.inc_by(lines.reasm.take_cut_bytes());
    }
}

/// The way from one line to the batch, for the length of one call: what
/// every line needs besides its own file's [`Lines`].
struct LineContext<'a> {
    normalizer: &'a mut ContainerNormalizer,
    ingested: &'a Ingested,
    batch: &'a mut Batch,
}

impl LineContext<'_> {
    /// One complete line that starts at `offset`: parsed and reassembled, or
    /// sent as it is, flagged invalid.
    fn line(&mut self, lines: &mut Lines, text: &[u8], offset: u64, now: Instant) {
        if text.is_empty() {
            return;
        }
        let fmt = *lines.format.get_or_insert_with(|| Format::detect(text));
        match format::parse(fmt, text) {
            Ok(parsed) => {
                if let Some(rec) = lines.reasm.push(parsed, offset, now) {
                    self.emit(&lines.ctx, &rec);
                }
            }
            Err(e) => {
                metrics().invalid_lines.inc();
                let rec = Record {
                    offset,
                    time_text: self.ingested.text.as_str().into(),
                    time: self.ingested.time,
                    stream: None,
                    message: text.into(),
                    flags: Flags { invalid: true, ..Flags::default() },
                    error: Some(e.to_string()),
                };
                self.emit(&lines.ctx, &rec);
            }
        }
    }

    fn emit(&mut self, ctx: &FileContext, rec: &Record<'_>) {
        if rec.flags.cut {
            metrics().cut_messages.inc();
        }
        metrics().messages.inc();
        let doc = self.normalizer.normalize(ctx, rec);
        self.batch.bytes += doc.body.len();
        self.batch.docs.push(doc);
    }
}
