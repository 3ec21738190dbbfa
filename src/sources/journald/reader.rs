//! One journal directory, read through libsystemd's sd-journal API.
//!
//! The `sd_journal` handle is not `Send`: a [`JournalReader`] is created and
//! used on one thread only. It filters in libsystemd (field matches use the
//! journal's own indexes, so sparse units cost nothing per skipped entry),
//! reads the few fields a document needs straight from the mapped journal
//! files, and normalizes them on the same thread.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use systemd::journal::{Journal, OpenDirectoryOptions};

use super::config::{StartAt, DEFAULT_REOPEN_EVERY};
use super::document::JournaldNormalizer;
use super::entry::RawEntry;
use crate::document::Document;

#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("cannot open journal directory {dir}: {source}")]
    Open { dir: PathBuf, source: systemd::Error },
    #[error("journal directory {dir}: {op} failed: {source}")]
    Journal { dir: PathBuf, op: &'static str, source: systemd::Error },
}

/// How the reader was positioned, for the start-up log line and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartedFrom {
    /// Just after the saved cursor.
    Cursor,
    /// The saved cursor's entry is gone (vacuumed) or the cursor is invalid:
    /// from the oldest entry.
    CursorLost,
    /// The oldest entry of the current boot.
    Boot,
    /// `start_at: boot`, but the journal has no matching entry of the current
    /// boot (e.g. copied journal files): from the oldest entry.
    BootNotFoundHead,
    Head,
    Tail,
    Since,
}

pub struct JournalReader {
    journal: Journal,
    dir: PathBuf,
    units: Vec<String>,
    identifiers: Vec<String>,
    entry: RawEntry,
    /// Entries read since the handle was (re)opened.
    since_open: u64,
    reopen_every: u64,
}

impl JournalReader {
    /// Opens every journal file in `dir` (and its machine-id subdirectories),
    /// filtered to `units` OR `identifiers`.
    pub fn open(dir: &Path, units: &[String], identifiers: &[String]) -> Result<Self, ReaderError> {
        let journal = Self::open_handle(dir)?;
        let mut reader = JournalReader {
            journal,
            dir: dir.to_path_buf(),
            units: units.to_vec(),
            identifiers: identifiers.to_vec(),
            entry: RawEntry::default(),
            since_open: 0,
            reopen_every: DEFAULT_REOPEN_EVERY,
        };
        reader.set_matches(None)?;
        Ok(reader)
    }

    fn open_handle(dir: &Path) -> Result<Journal, ReaderError> {
        let mut journal = OpenDirectoryOptions::default()
            .open_directory(dir.as_os_str().as_encoded_bytes())
            .map_err(|source| ReaderError::Open { dir: dir.to_path_buf(), source })?;
        // 0 = no limit: large compressed MESSAGE values come back whole, not cut at 64 KiB.
        journal.set_data_threshold(0).map_err(|source| ReaderError::Journal {
            dir: dir.to_path_buf(),
            op: "sd_journal_set_data_threshold",
            source,
        })?;
        Ok(journal)
    }

    /// Overrides [`DEFAULT_REOPEN_EVERY`] (the `reopen_every` key; tests use a tiny value).
    pub fn set_reopen_every(&mut self, entries: u64) {
        self.reopen_every = entries.max(1);
    }

    /// Drops the handle (unmapping every window) and continues after the
    /// cursor of the last entry read.
    fn reopen(&mut self) -> Result<(), ReaderError> {
        self.journal = Self::open_handle(&self.dir)?;
        self.set_matches(None)?;
        self.since_open = 0;
        let cursor = self.entry.cursor.clone();
        self.journal.seek_cursor(cursor.as_str()).map_err(self.err("sd_journal_seek_cursor"))?;
        if self.journal.next().map_err(self.err("sd_journal_next"))? > 0
            && self.journal.test_cursor(cursor.as_str()).unwrap_or(false)
        {
            return Ok(());
        }
        // The last entry is gone already (vacuumed this very moment): the
        // first entry after its place is the next one to read.
        self.journal.seek_cursor(cursor.as_str()).map_err(self.err("sd_journal_seek_cursor"))?;
        Ok(())
    }

    fn err(&self, op: &'static str) -> impl FnOnce(systemd::Error) -> ReaderError + '_ {
        move |source| ReaderError::Journal { dir: self.dir.clone(), op, source }
    }

    /// (unit₁ OR unit₂ … [AND extra]) OR (identifier₁ OR … [AND extra]).
    fn set_matches(&mut self, extra: Option<(&str, &str)>) -> Result<(), ReaderError> {
        let j = &mut self.journal;
        let result = (|| -> systemd::Result<()> {
            j.match_flush()?;
            let groups = [("_SYSTEMD_UNIT", &self.units), ("SYSLOG_IDENTIFIER", &self.identifiers)];
            let mut first = true;
            for (field, values) in groups {
                if values.is_empty() {
                    continue;
                }
                if !first {
                    j.match_or()?;
                }
                first = false;
                for v in values {
                    j.match_add(field, v.as_bytes())?;
                }
                if let Some((k, v)) = extra {
                    j.match_add(k, v.as_bytes())?;
                }
            }
            Ok(())
        })();
        result.map_err(|source| ReaderError::Journal { dir: self.dir.clone(), op: "sd_journal_add_match", source })
    }

    /// Positions the reader so that the next [`read_into`](Self::read_into)
    /// returns the first entry to ship.
    pub fn position(&mut self, saved: Option<&str>, start_at: StartAt) -> Result<StartedFrom, ReaderError> {
        if let Some(cursor) = saved {
            // seek_cursor only parses; next() lands on the cursor's entry if it
            // still exists (then it is skipped: it was delivered), or on the
            // first entry after where it was.
            if self.journal.seek_cursor(cursor).is_ok() {
                if self.journal.next().map_err(self.err("sd_journal_next"))? == 0 {
                    // Nothing at or after the cursor yet: stay there and follow.
                    self.journal.seek_cursor(cursor).map_err(self.err("sd_journal_seek_cursor"))?;
                    return Ok(StartedFrom::Cursor);
                }
                if self.journal.test_cursor(cursor).unwrap_or(false) {
                    return Ok(StartedFrom::Cursor);
                }
            }
            self.journal.seek_head().map_err(self.err("sd_journal_seek_head"))?;
            return Ok(StartedFrom::CursorLost);
        }
        match start_at {
            StartAt::Head => {
                self.journal.seek_head().map_err(self.err("sd_journal_seek_head"))?;
                Ok(StartedFrom::Head)
            }
            StartAt::Tail => {
                self.journal.seek_tail().map_err(self.err("sd_journal_seek_tail"))?;
                // Step onto the last entry, so that the next read returns only newer ones.
                self.journal.previous().map_err(self.err("sd_journal_previous"))?;
                Ok(StartedFrom::Tail)
            }
            StartAt::Since(ago) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                let from = now.saturating_sub(ago).as_micros() as u64;
                self.journal.seek_realtime_usec(from).map_err(self.err("sd_journal_seek_realtime_usec"))?;
                Ok(StartedFrom::Since)
            }
            StartAt::Boot => {
                let boot = current_boot_id();
                self.set_matches(Some(("_BOOT_ID", &boot)))?;
                self.journal.seek_head().map_err(self.err("sd_journal_seek_head"))?;
                let found = self.journal.next().map_err(self.err("sd_journal_next"))? > 0;
                let first =
                    if found { Some(self.journal.cursor().map_err(self.err("sd_journal_get_cursor"))?) } else { None };
                self.set_matches(None)?;
                match first {
                    Some(c) => {
                        self.journal.seek_cursor(c.as_str()).map_err(self.err("sd_journal_seek_cursor"))?;
                        Ok(StartedFrom::Boot)
                    }
                    None => {
                        self.journal.seek_head().map_err(self.err("sd_journal_seek_head"))?;
                        Ok(StartedFrom::BootNotFoundHead)
                    }
                }
            }
        }
    }

    /// Reads up to `max` matching entries into `out` as documents. Returns the
    /// cursor of the last one, or `None` if there was no new entry.
    pub fn read_into(
        &mut self,
        max: usize,
        normalizer: &mut JournaldNormalizer,
        ingested: &str,
        out: &mut Vec<Document>,
    ) -> Result<Option<String>, ReaderError> {
        if self.since_open >= self.reopen_every && !self.entry.cursor.is_empty() {
            self.reopen()?;
        }
        let mut any = false;
        for _ in 0..max {
            if self.journal.next().map_err(self.err("sd_journal_next"))? == 0 {
                break;
            }
            self.load_entry()?;
            out.push(normalizer.normalize(&self.entry, ingested));
            self.since_open += 1;
            any = true;
        }
        Ok(any.then(|| self.entry.cursor.clone()))
    }

    fn load_entry(&mut self) -> Result<(), ReaderError> {
        self.entry.clear();
        self.entry.realtime_usec = self.journal.timestamp_usec().map_err(self.err("sd_journal_get_realtime_usec"))?;
        self.entry.cursor = self.journal.cursor().map_err(self.err("sd_journal_get_cursor"))?;
        self.journal.restart_data();
        loop {
            match self.journal.enumerate_data() {
                Ok(Some(field)) => {
                    // A datum without `=` (never written by journald) names no field we use.
                    if let Some(value) = field.value() {
                        self.entry.set_name_value(field.name(), value);
                    }
                }
                Ok(None) => break,
                // A damaged or unreadable field (e.g. a compression the library
                // lacks): keep the entry with what could be read.
                Err(e) => {
                    tracing::debug!(dir = %self.dir.display(), "skipping an unreadable journal field: {e}");
                    break;
                }
            }
        }
        Ok(())
    }

    /// Blocks until the journal changes (new entries, new or rotated files)
    /// or `timeout` passes.
    pub fn wait(&mut self, timeout: Duration) -> Result<(), ReaderError> {
        self.journal.wait(Some(timeout)).map_err(self.err("sd_journal_wait"))?;
        Ok(())
    }
}

/// This machine's boot id as journald writes it in `_BOOT_ID` (32 hex digits).
/// In a pod this is the host's: the kernel is shared.
pub fn current_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().replace('-', "")).unwrap_or_default()
}
