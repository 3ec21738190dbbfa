//! One open file and where it stands in its life: waiting for its first
//! complete line (its fingerprint), being read, detached after rotation,
//! drained. The registry ([`super::Files`]) decides when; this reads.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::READS_PER_TURN;
use crate::sources::containers::checkpoint::Entry;
use crate::sources::containers::config::ContainersConfig;
use crate::sources::containers::discovery::Found;
use crate::sources::containers::file_id::{FileKey, Fingerprint};
use crate::sources::containers::metadata::Metadata;
use crate::sources::containers::pipeline::{Batch, Lines, Pipeline};

/// One open file and where it stands in its life: waiting for its first line,
/// being read, detached after rotation, drained.
pub(super) struct TailFile {
    pub(super) key: FileKey,
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) target: PathBuf,
    pub(super) meta: Metadata,
    pub(super) opened: Instant,
    /// Set once the file has a fingerprint (its first line is complete).
    pub(super) established: Option<(Fingerprint, Lines)>,
    pub(super) resume: Option<Entry>,
    pub(super) start_at_end: bool,
    /// Rotated away or deleted at this time: read to the end, then close.
    pub(super) detached: Option<Instant>,
    /// A read after detaching returned no data.
    pub(super) drained: bool,
    /// The path's previous file; this one waits until it is drained.
    pub(super) waits_for: Option<FileKey>,
    pub(super) at_eof: bool,
    pub(super) last_data: Instant,
}

impl TailFile {
    /// Opens the listed file; Ok(None) if it is no longer the file that was
    /// listed (the path was replaced in between).
    pub(super) fn open(fd: Found, target: PathBuf, meta: Metadata, now: Instant) -> std::io::Result<Option<TailFile>> {
        let file = File::open(&target)?;
        let key = FileKey::of(&file.metadata()?);
        Ok((key == fd.key).then(|| TailFile::new(key, file, fd.path, target, meta, now)))
    }

    pub(super) fn new(
        key: FileKey,
        file: File,
        path: PathBuf,
        target: PathBuf,
        meta: Metadata,
        now: Instant,
    ) -> TailFile {
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

    pub(super) fn mtime(&self) -> Option<SystemTime> {
        self.file.metadata().and_then(|m| m.modified()).ok()
    }

    pub(super) fn entry(&self) -> Option<Entry> {
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

    pub(super) fn read_offset(&self) -> u64 {
        self.established.as_ref().map_or(0, |(_, lines)| lines.read_offset())
    }

    /// Gives the file its fingerprint and start offset, once its first line is
    /// complete (or it has waited `partial_flush_timeout` for one). False: not yet.
    pub(super) fn establish(&mut self, cfg: &ContainersConfig, pipeline: &Pipeline, now: Instant) -> bool {
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
    pub(super) fn read_turn(
        &mut self,
        pipeline: &mut Pipeline,
        batch: &mut Batch,
        now: Instant,
        batch_max: usize,
    ) -> bool {
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

/// The fingerprint of a file's head as [`TailFile::establish`] takes it.
pub(super) fn head_fingerprint(file: &File, len: u64, max: usize) -> Option<Fingerprint> {
    match Fingerprint::read(file, max) {
        Ok(Some(fp)) => Some(fp),
        Ok(None) if len > 0 => Fingerprint::read(file, len as usize).ok().flatten(),
        _ => None,
    }
}

/// The offset just after the file's last newline (start at the end, whole lines only).
pub(super) fn end_of_last_line(file: &File) -> std::io::Result<u64> {
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
