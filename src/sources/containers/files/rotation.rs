//! What rotation leaves behind: checkpointed files rotated while the gateway
//! was down (orphans), rotated siblings the glob never showed, and finished
//! files swept from the checkpoint once they are gone.
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

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::tail_file::{head_fingerprint, TailFile};
use super::{DirSeen, Files, MTIME_SETTLE};
use crate::sources::containers::checkpoint::{Entry, Update};
use crate::sources::containers::config::StartAt;
use crate::sources::containers::discovery::{self, Found};
use crate::sources::containers::file_id::FileKey;
use crate::sources::containers::metadata::Metadata;
use crate::sources::containers::metrics::metrics;
use crate::sources::containers::pipeline::Batch;

impl Files {
    /// Checkpointed files that no glob matches any more were rotated while the
    /// gateway was down: find them beside their old target (same dev and inode,
    /// same fingerprint) and read them to the end. The rest are gone before they
    /// were read to their end: forgotten, and counted as (possibly) lost.
    pub(super) fn recover_orphans(&mut self, batch: &mut Batch, now: Instant) {
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
    pub(super) fn recover(&mut self, entry: Entry, path: PathBuf, now: Instant) {
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
    pub(super) fn dir_changed(&self, dir: &Path) -> bool {
        let mtime = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
        self.dirs.get(dir).is_none_or(|seen| !seen.settled || seen.mtime != mtime)
    }

    /// Lists `dir` for rotated siblings (`<live name>.*`) of its live files and
    /// opens those the checkpoint has not finished, chained in mtime order
    /// before the live file. Finished entries of `dir` that are gone are forgotten.
    pub(super) fn siblings(&mut self, dir: &Path, batch: &mut Batch, now: Instant) {
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
    pub(super) fn open_sibling(
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
    pub(super) fn chain(&mut self, dir: &Path) {
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
    pub(super) fn sweep_finished(&mut self, batch: &mut Batch) {
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
}

/// The file in `dir` with this (dev, inode), if any.
pub(super) fn beside(dir: &Path, key: FileKey) -> Option<PathBuf> {
    let rd = std::fs::read_dir(dir).ok()?;
    rd.flatten().map(|d| d.path()).find(|p| {
        !discovery::skipped_name(p) && std::fs::metadata(p).is_ok_and(|m| m.is_file() && FileKey::of(&m) == key)
    })
}
