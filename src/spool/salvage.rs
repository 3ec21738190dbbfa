//! `kube-log-gateway spool salvage FILE`: what can still be read from a spool
//! file that was set aside as damaged, delivered to Elasticsearch.
//!
//! The file itself is never written: it is copied first (redb may repair a
//! file it opens), and the copy is read entry by entry, each read under
//! `catch_unwind`, because the damage that made the gateway set the file aside
//! can make the storage library panic. Every entry that decodes is delivered
//! through the ordinary sink; an entry that does not is reported with its id.
//! Reading stops at the first part of the file that cannot be read at all, and
//! the report says after which entry.
//!
//! Every document keeps the `_id` it was given when it was received, so
//! documents already in Elasticsearch come back as 409 "already there" and are
//! counted as duplicates: running the command twice, or on a file whose
//! entries were partly delivered before the damage, stores nothing twice.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use redb::Database;

use super::damaged::panic_message;
use super::entry::decode;
use super::{open_database, ENTRIES};
use crate::document::Document;
use crate::sink::Sink;

#[derive(Debug, thiserror::Error)]
pub enum SalvageError {
    #[error("spool salvage: cannot copy {file} to {copy}: {source}")]
    Copy { file: PathBuf, copy: PathBuf, source: std::io::Error },
    #[error("spool salvage: {file} cannot be opened, nothing can be read from it: {message}")]
    Unreadable { file: PathBuf, message: String },
    #[error("spool salvage: the sink stopped before every document was delivered")]
    Cancelled,
}

/// What a salvage read and delivered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SalvageReport {
    /// Entries read and decoded (each one acknowledged webhook request).
    pub entries: u64,
    /// Their documents, and what Elasticsearch did with them.
    pub documents: u64,
    pub created: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
    /// Entries whose bytes did not decode: (id, why).
    pub undecodable: Vec<(u64, String)>,
    /// Where reading stopped early, if it did: (last id read, why).
    pub stopped: Option<(Option<u64>, String)>,
}

/// Entries read per read transaction.
const CHUNK: usize = 64;

/// Copies `file` into `work_dir`, reads every entry that can be read from the
/// copy and delivers it with `sink`. The copy is removed afterwards.
pub async fn salvage(file: &Path, work_dir: &Path, sink: &Sink) -> Result<SalvageReport, SalvageError> {
    let copy = work_dir.join(format!("salvage-{}.redb", std::process::id()));
    std::fs::copy(file, &copy).map_err(|source| SalvageError::Copy {
        file: file.to_path_buf(),
        copy: copy.clone(),
        source,
    })?;
    let result = salvage_copy(file, &copy, sink).await;
    let _ = std::fs::remove_file(&copy);
    result
}

/// Opens the copy. A file cut short (the usual damage) is shorter than its
/// header says, which the storage library refuses; the copy is then extended
/// with zeros (a sparse file) so that the pages that survived can be read.
fn open_copy(file: &Path, copy: &Path) -> Result<Database, SalvageError> {
    let try_open = || match catch_unwind(AssertUnwindSafe(|| open_database(copy))) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!("the storage library panicked: {}", panic_message(&panic))),
    };
    let first = match try_open() {
        Ok(db) => return Ok(db),
        Err(message) => message,
    };
    let unreadable = |message: String| SalvageError::Unreadable { file: file.to_path_buf(), message };
    let len = std::fs::metadata(copy).map_err(|e| unreadable(format!("{first}; {e}")))?.len();
    for factor in [2, 4, 16] {
        let padded = std::fs::OpenOptions::new().write(true).open(copy).and_then(|f| f.set_len(len * factor));
        padded.map_err(|e| unreadable(format!("{first}; extending the copy: {e}")))?;
        if let Ok(db) = try_open() {
            tracing::warn!(file = %file.display(), "spool salvage: the file is shorter than its header says; reading what is left");
            return Ok(db);
        }
    }
    Err(unreadable(first))
}

async fn salvage_copy(file: &Path, copy: &Path, sink: &Sink) -> Result<SalvageReport, SalvageError> {
    let db = open_copy(file, copy)?;
    let mut report = SalvageReport::default();
    let mut next = 0u64;
    let mut last_read: Option<u64> = None;
    loop {
        let chunk = match read_chunk(&db, next) {
            Ok(chunk) => chunk,
            Err(why) => {
                tracing::error!(file = %file.display(), after_id = ?last_read, "spool salvage: the rest of the file cannot be read: {why}");
                report.stopped = Some((last_read, why));
                break;
            }
        };
        let Some(&(last_id, _)) = chunk.last() else { break };
        for (id, raw) in chunk {
            match decode(&raw) {
                Ok(docs) => deliver(sink, docs, &mut report).await?,
                Err(why) => {
                    tracing::error!(file = %file.display(), id, "spool salvage: entry does not decode, skipped: {why}");
                    report.undecodable.push((id, why));
                }
            }
        }
        last_read = Some(last_id);
        next = last_id + 1;
    }
    Ok(report)
}

/// Up to [`CHUNK`] entries with ids ≥ `from`, raw; any error or panic of the
/// storage library as text.
fn read_chunk(db: &Database, from: u64) -> Result<Vec<(u64, Vec<u8>)>, String> {
    #[allow(clippy::result_large_err)] // redb's own error, on this one-off path only
    let read = || -> Result<Vec<(u64, Vec<u8>)>, redb::Error> {
        let tx = db.begin_read()?;
        let table = tx.open_table(ENTRIES)?;
        let mut out = Vec::new();
        for item in table.range(from..)?.take(CHUNK) {
            let (k, v) = item?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    };
    match catch_unwind(AssertUnwindSafe(read)) {
        Ok(Ok(chunk)) => Ok(chunk),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!("the storage library panicked: {}", panic_message(&panic))),
    }
}

async fn deliver(sink: &Sink, docs: Vec<Document>, report: &mut SalvageReport) -> Result<(), SalvageError> {
    let n = docs.len() as u64;
    let delivered = sink.deliver(docs).await.map_err(|_| SalvageError::Cancelled)?;
    report.entries += 1;
    report.documents += n;
    report.created += delivered.created as u64;
    report.duplicates += delivered.duplicates as u64;
    report.dead_lettered += delivered.dead_lettered as u64;
    Ok(())
}
