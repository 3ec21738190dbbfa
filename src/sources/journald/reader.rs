//! One journal directory, read through libsystemd's sd-journal API.
//!
//! The `sd_journal` handle is not `Send`: a [`JournalReader`] is created and
//! used on one thread only. It filters in libsystemd (field matches use the
//! journal's own indexes, so sparse units cost nothing per skipped entry),
//! reads the few fields a document needs straight from the mapped journal
//! files, and normalizes them on the same thread.
//!
//! It also watches the journal's own numbering. journald removes whole files,
//! oldest first, when the journal reaches its size limit; if the gateway has
//! not read them yet (Elasticsearch down for longer than the journal holds),
//! those entries are gone. Between two entries read, a sequence number that no
//! longer exists in the journal is such an entry: each one is counted in
//! `klg_journald_entries_lost_total` and a warning names the range.
//!
//! A file leaves the handle's view only when libsystemd processes the
//! directory's changes (in `sd_journal_wait`) or when the handle is
//! reopened; a deleted file still open is read to its end. So the walk that
//! tells a removed entry from one of another unit (skipped by the filter)
//! runs only when a number is skipped after such a moment, not per entry.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use systemd::journal::{Journal, JournalWaitResult, OpenDirectoryOptions};

use super::config::{StartAt, DEFAULT_REOPEN_EVERY};
use super::cursor::SeqPosition;
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

/// Journal entries found missing between two entries read: removed from the
/// journal before the gateway read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The sequence-number id both entries (and the missing ones) belong to.
    pub seqnum_id: String,
    /// The first and last missing sequence number (inclusive).
    pub first: u64,
    pub last: u64,
    /// How many numbers in between are missing (entries of any unit).
    pub lost: u64,
    /// The cursor of the entry read (or saved) before the gap.
    pub after: String,
    /// The cursor of the first entry read after it.
    pub resumed_at: String,
}

/// The last entry read of one sequence-number id, and the view of the journal
/// (see [`JournalReader::view`]) it was read in.
#[derive(Debug, Clone)]
struct LastRead {
    pos: SeqPosition,
    cursor: String,
    view: u64,
}

/// Sequence-number ids remembered at once. journald keeps one id for as long
/// as any of its files remains, so there is one in practice; copied journals
/// bring their own.
const MAX_SEQNUM_IDS: usize = 16;

pub struct JournalReader {
    journal: Journal,
    dir: PathBuf,
    units: Vec<String>,
    identifiers: Vec<String>,
    entry: RawEntry,
    /// Entries read since the handle was (re)opened.
    since_open: u64,
    reopen_every: u64,
    /// Bumped whenever files may have left the handle's view: when it is
    /// (re)opened and when `sd_journal_wait` reports removed or added files.
    view: u64,
    /// The last entry read per sequence-number id (or the saved cursor).
    last_read: Vec<LastRead>,
    /// Where entries found lost are counted (`klg_journald_entries_lost_total`).
    lost: Counter,
    last_gap: Option<Gap>,
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
            view: 0,
            last_read: Vec::new(),
            lost: super::metrics::metrics().entries_lost.clone(),
            last_gap: None,
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

    /// Counts lost entries in `counter` instead of the process-wide
    /// `klg_journald_entries_lost_total` (tests that read a journal directly).
    pub fn set_lost_counter(&mut self, counter: Counter) {
        self.lost = counter;
    }

    /// The most recent gap found, if any.
    pub fn last_gap(&self) -> Option<&Gap> {
        self.last_gap.as_ref()
    }

    /// Drops the handle (unmapping every window) and continues after the
    /// cursor of the last entry read.
    fn reopen(&mut self) -> Result<(), ReaderError> {
        self.journal = Self::open_handle(&self.dir)?;
        self.set_matches(None)?;
        self.since_open = 0;
        self.view += 1;
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
        // The saved cursor is the last entry delivered: numbers missing after
        // it, when reading resumes, were removed while the gateway was away.
        self.last_read.clear();
        if let Some(pos) = saved.and_then(SeqPosition::from_cursor) {
            self.last_read.push(LastRead { pos, cursor: saved.unwrap_or_default().to_string(), view: self.view });
        }
        self.view += 1;
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
            self.check_continuity()?;
            out.push(normalizer.normalize(&self.entry));
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
        if let JournalWaitResult::Invalidate = self.journal.wait(Some(timeout)).map_err(self.err("sd_journal_wait"))? {
            // Files were added or removed: the next skipped number may be a lost entry.
            self.view += 1;
        }
        Ok(())
    }

    /// Compares the entry just loaded with the last one read of its
    /// sequence-number id. A skipped number is normal (an entry of another
    /// unit); after a change of view it may be a removed entry, so the
    /// journal between the two is walked unfiltered and every number that no
    /// longer exists is counted and reported.
    fn check_continuity(&mut self) -> Result<(), ReaderError> {
        let Some(pos) = SeqPosition::from_cursor(&self.entry.cursor) else { return Ok(()) };
        let known = self.last_read.iter().position(|l| l.pos.id == pos.id);
        if let Some(i) = known {
            let last = &self.last_read[i];
            if last.view != self.view && pos.num > last.pos.num.saturating_add(1) {
                let (after, from) = (last.cursor.clone(), last.pos.num);
                if let Some(gap) = self.find_gap(&after, from, &pos)? {
                    self.report(gap);
                }
            }
        }
        let read = LastRead { pos, cursor: self.entry.cursor.clone(), view: self.view };
        match known {
            Some(i) => self.last_read[i] = read,
            None => {
                if self.last_read.len() == MAX_SEQNUM_IDS {
                    self.last_read.remove(0);
                }
                self.last_read.push(read);
            }
        }
        Ok(())
    }

    /// Walks every entry (no filter) from `after` (number `from`) to the
    /// entry just loaded (`to`), noting which numbers of `to.id` in between
    /// still exist; then puts the handle back on the entry just loaded.
    fn find_gap(&mut self, after: &str, from: u64, to: &SeqPosition) -> Result<Option<Gap>, ReaderError> {
        let resumed_at = self.entry.cursor.clone();
        let mut missing = Missing::after(from);
        let walked = walk_present(&mut self.journal, after, to, &mut missing);
        // Back onto the entry just loaded, with the filter, whatever the walk did.
        self.set_matches(None)?;
        self.journal.seek_cursor(resumed_at.as_str()).map_err(self.err("sd_journal_seek_cursor"))?;
        self.journal.next().map_err(self.err("sd_journal_next"))?;
        walked.map_err(self.err("walking the journal between two entries read"))?;
        missing.present(to.num);
        Ok((missing.lost > 0).then(|| Gap {
            seqnum_id: to.id.clone(),
            first: missing.first,
            last: missing.last,
            lost: missing.lost,
            after: after.to_string(),
            resumed_at,
        }))
    }

    fn report(&mut self, gap: Gap) {
        self.lost.inc_by(gap.lost);
        tracing::warn!(
            directory = %self.dir.display(),
            seqnum_id = %gap.seqnum_id,
            first_seqnum_lost = gap.first,
            last_seqnum_lost = gap.last,
            entries_lost = gap.lost,
            units = ?self.units,
            identifiers = ?self.identifiers,
            after_cursor = %gap.after,
            resumed_at_cursor = %gap.resumed_at,
            "journal entries were removed by journald (rotated and vacuumed) before the gateway read them: \
             they are lost; the count is of entries of any unit, the journal no longer says which were of \
             the units and identifiers read here; keep a journal large enough for the outage to survive \
             (SystemMaxUse, see docs/journald.md)"
        );
        self.last_gap = Some(gap);
    }
}

/// The numbers missing after `prev`, noted as the present ones come in order.
struct Missing {
    prev: u64,
    first: u64,
    last: u64,
    lost: u64,
}

impl Missing {
    fn after(prev: u64) -> Missing {
        Missing { prev, first: 0, last: 0, lost: 0 }
    }

    /// `num` exists: every number between the previous present one and it does not.
    fn present(&mut self, num: u64) {
        if num > self.prev.saturating_add(1) {
            if self.lost == 0 {
                self.first = self.prev + 1;
            }
            self.last = num - 1;
            self.lost += num - self.prev - 1;
        }
        self.prev = self.prev.max(num);
    }
}

/// Notes in `missing` every entry of `to.id` numbered between `after`'s and
/// `to`'s that the journal still holds, of any unit.
fn walk_present(journal: &mut Journal, after: &str, to: &SeqPosition, missing: &mut Missing) -> systemd::Result<()> {
    journal.match_flush()?;
    // Lands on `after` if it still exists, else on the first entry after its place.
    journal.seek_cursor(after)?;
    while journal.next()? > 0 {
        let Some(p) = SeqPosition::from_cursor(&journal.cursor()?) else { continue };
        if p.id != to.id || p.num <= missing.prev {
            continue;
        }
        if p.num >= to.num {
            break;
        }
        missing.present(p.num);
    }
    Ok(())
}

/// This machine's boot id as journald writes it in `_BOOT_ID` (32 hex digits).
/// In a pod this is the host's: the kernel is shared.
pub fn current_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().replace('-', "")).unwrap_or_default()
}
