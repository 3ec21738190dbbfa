//! The durable spool between the webhook and the sink.
//!
//! kube-apiserver drops an audit batch for good after a few failed attempts, so
//! the webhook must answer fast and never lose what it acknowledged. Each
//! request's normalized documents become one spool entry, committed with fsync
//! before the 2xx; the drainer hands entries to the sink and removes an entry
//! only when every document in it is delivered or dead-lettered.
//!
//! Storage is redb (copy-on-write B-trees with checksummed commits: a crash
//! leaves the last committed state). One writer thread does all writes and
//! *group-commits*: appends that arrive while a commit is running share the next
//! one, so many concurrent requests cost one fsync. Removals ride along with
//! `Durability::Eventual`: losing one in a crash only means a resend, which the
//! deterministic `_id`s turn into 409s.

pub mod config;
pub mod drain;
pub mod entry;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{oneshot, Notify};

use crate::document::{Document, SourceKind};
use crate::telemetry;
use entry::EntryWriter;

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// One key: written and removed while the spool cannot take writes, to find out
/// when it can again (see [`writer_loop`]).
const PROBE: TableDefinition<u64, &[u8]> = TableDefinition::new("probe");
const PROBE_BYTES: usize = 64 * 1024;
/// How often the writer thread tries again while the spool cannot take writes.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Entry formats: 1 = the plain encoding below; 2 = format 1, LZ4-compressed.
/// JSON documents compress about 5×, which cuts the bytes written and fsynced
/// per acknowledged batch — the webhook's main cost — and lets the same
/// `spool.max_bytes` hold about five times as many events.
const FORMAT: u8 = 1;
const FORMAT_LZ4: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool is full ({used} of {max} bytes used; spool.max_bytes)")]
    Full { used: u64, max: u64 },
    #[error("spool {path}: {message}")]
    Storage { path: PathBuf, message: String },
    #[error("spool is closed")]
    Closed,
}

/// One spooled batch: its key and its documents.
pub struct Entry {
    pub id: u64,
    pub docs: Vec<Document>,
    pub bytes: u64,
}

/// An entry whose bytes do not decode: it cannot be delivered, and must not
/// hold up the entries behind it. See [`Spool::quarantine`].
pub struct CorruptEntry {
    pub id: u64,
    pub raw: Vec<u8>,
    pub message: String,
}

/// One entry as read: decoded, or corrupt with its raw bytes.
pub type Read = Result<Entry, CorruptEntry>;

/// Where the writer thread answers an append.
type Done = oneshot::Sender<Result<u64, SpoolError>>;

enum Op {
    Append {
        value: Vec<u8>,
        done: Done,
    },
    Remove {
        id: u64,
    },
    /// A reader hit an I/O error: reopen the database if it is poisoned.
    Check,
}

struct Inner {
    /// `None` while the writer thread reopens it after an I/O error. Readers
    /// hold the read lock for the whole of a read transaction: redb locks the
    /// file, and a transaction left open would keep the new handle out.
    db: RwLock<Option<Database>>,
    path: PathBuf,
    data_dir: PathBuf,
    max_bytes: u64,
    /// Bytes of committed entries. Only the writer thread changes it (and the
    /// two gauges), at commit time, so neither depends on a request surviving
    /// until its append returns.
    committed: AtomicU64,
    /// Bytes reserved by appends not yet committed or refused.
    reserved: AtomicU64,
    entries: AtomicU64,
    next_id: AtomicU64,
    new_data: Notify,
    /// Why the last durable write failed; `None` once one succeeds.
    write_error: Mutex<Option<String>>,
    /// Bumped each time the database is reopened: a reopened file may hold
    /// again entries whose removal had not reached the disk.
    generation: AtomicU64,
}

#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
    // Unbounded is safe: appends are bounded by the byte reservation in
    // `append`, removals by the number of entries.
    ops: mpsc::Sender<Op>,
}

impl Spool {
    /// Opens (or creates) `data_dir/spool.redb` and starts the writer thread.
    pub fn open(data_dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let path = data_dir.join("spool.redb");
        let storage = |e: &dyn std::fmt::Display| SpoolError::Storage { path: path.clone(), message: e.to_string() };
        std::fs::create_dir_all(data_dir).map_err(|e| storage(&e))?;
        let db = open_database(&path).map_err(|e| storage(&e))?;
        let (used, entries, next_id) = {
            let tx = db.begin_write().map_err(|e| storage(&e))?;
            tx.open_table(ENTRIES).map_err(|e| storage(&e))?;
            tx.commit().map_err(|e| storage(&e))?;
            scan(&db).map_err(|e| storage(&e))?
        };
        if entries > 0 {
            tracing::info!(path = %path.display(), entries, bytes = used, "spool has entries from before; replaying them");
        }
        telemetry::metrics().spool_bytes.set(used as i64);
        telemetry::metrics().spool_entries.set(entries as i64);
        let inner = Arc::new(Inner {
            db: RwLock::new(Some(db)),
            path,
            data_dir: data_dir.to_path_buf(),
            max_bytes,
            committed: AtomicU64::new(used),
            reserved: AtomicU64::new(0),
            entries: AtomicU64::new(entries),
            next_id: AtomicU64::new(next_id),
            new_data: Notify::new(),
            write_error: Mutex::new(None),
            generation: AtomicU64::new(0),
        });
        let (ops, rx) = mpsc::channel();
        let writer = inner.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer_loop(writer, rx))
            .map_err(|e| SpoolError::Storage { path: inner.path.clone(), message: e.to_string() })?;
        Ok(Spool { inner, ops })
    }

    /// Bytes committed plus bytes reserved by appends in flight.
    pub fn used_bytes(&self) -> u64 {
        self.inner.committed.load(Ordering::Acquire) + self.inner.reserved.load(Ordering::Acquire)
    }

    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.entries.load(Ordering::Relaxed)
    }

    /// Why the spool cannot take writes now (the last durable write failed and
    /// no write succeeded since), or `None`.
    pub fn write_error(&self) -> Option<String> {
        self.inner.write_error.lock().expect("spool state poisoned").clone()
    }

    /// Changes each time the database was reopened after an I/O error; the
    /// drainer then reads again from the start.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Commits `docs` as one entry, durably, and returns its id. `Full` if it
    /// would take the spool past `max_bytes`; nothing is written then.
    ///
    /// Everything after the commit — counting, waking the drainer — happens in
    /// the writer thread, so a caller dropped while waiting (a client that
    /// hung up) leaves the accounting right.
    pub async fn append(&self, docs: &[Document]) -> Result<u64, SpoolError> {
        self.append_value(encode(docs)).await
    }

    /// [`append`](Self::append) for an entry whose documents were written into
    /// it as they were made (the webhook): the same entry bytes, one copy less.
    pub async fn append_entry(&self, entry: EntryWriter) -> Result<u64, SpoolError> {
        self.append_value(entry.finish()).await
    }

    async fn append_value(&self, value: Vec<u8>) -> Result<u64, SpoolError> {
        let size = value.len() as u64;
        let reserved = self.inner.reserved.fetch_add(size, Ordering::AcqRel);
        let used = self.inner.committed.load(Ordering::Acquire) + reserved;
        if used + size > self.inner.max_bytes {
            self.inner.reserved.fetch_sub(size, Ordering::AcqRel);
            return Err(SpoolError::Full { used, max: self.inner.max_bytes });
        }
        let (done, rx) = oneshot::channel();
        if self.ops.send(Op::Append { value, done }).is_err() {
            self.inner.reserved.fetch_sub(size, Ordering::AcqRel);
            return Err(SpoolError::Closed);
        }
        // From here the writer thread owns the reservation.
        rx.await.unwrap_or(Err(SpoolError::Closed))
    }

    /// Forgets a delivered entry.
    pub fn remove(&self, id: u64) {
        let _ = self.ops.send(Op::Remove { id });
    }

    /// Up to `limit` entries with ids ≥ `from`, oldest first. An entry that
    /// does not decode comes back as `Err` with its raw bytes, in its place.
    pub fn read_from(&self, from: u64, limit: usize) -> Result<Vec<Read>, SpoolError> {
        let guard = self.inner.db.read().expect("spool database lock poisoned");
        let Some(db) = guard.as_ref() else {
            return Err(self.storage("the database is being reopened after an I/O error".into()));
        };
        #[allow(clippy::result_large_err)] // redb's own error, on the cold I/O-error path only
        let result = (|| -> Result<_, redb::Error> {
            let tx = db.begin_read()?;
            let table = tx.open_table(ENTRIES)?;
            let mut out = Vec::new();
            for item in table.range(from..)?.take(limit) {
                let (k, v) = item?;
                let id = k.value();
                let raw = v.value();
                out.push(match decode(raw) {
                    Ok(docs) => Ok(Entry { id, docs, bytes: raw.len() as u64 }),
                    Err(message) => Err(CorruptEntry { id, raw: raw.to_vec(), message }),
                });
            }
            Ok(out)
        })();
        drop(guard);
        result.map_err(|e| {
            if needs_reopen(&e) {
                let _ = self.ops.send(Op::Check);
            }
            self.storage(e.to_string())
        })
    }

    /// Takes an undecodable entry out of the way of the others: writes its raw
    /// bytes to `data_dir/quarantine/<id>.bin` (fsynced), removes it from the
    /// spool and counts it in `klg_spool_entries_quarantined_total`. Returns
    /// the file. On error the entry stays in the spool.
    pub fn quarantine(&self, entry: &CorruptEntry) -> Result<PathBuf, SpoolError> {
        let dir = self.inner.data_dir.join("quarantine");
        let file = write_quarantine_file(&dir, entry.id, &entry.raw)
            .map_err(|e| self.storage(format!("cannot quarantine entry {} in {}: {e}", entry.id, dir.display())))?;
        telemetry::metrics().spool_entries_quarantined.inc();
        tracing::error!(
            id = entry.id,
            file = %file.display(),
            bytes = entry.raw.len(),
            "spool entry is corrupt ({}); its bytes are kept in the file and it is removed from the spool, \
             the entries behind it are delivered",
            entry.message
        );
        self.remove(entry.id);
        Ok(file)
    }

    /// Resolves when an append happened since the last call (or immediately if
    /// one happened before anyone waited).
    pub async fn new_data(&self) {
        self.inner.new_data.notified().await
    }

    fn storage(&self, message: String) -> SpoolError {
        SpoolError::Storage { path: self.inner.path.clone(), message }
    }
}

fn open_database(path: &Path) -> Result<Database, redb::DatabaseError> {
    Database::builder().set_cache_size(16 * 1024 * 1024).create(path)
}

/// (bytes, entries, next id) of what is committed.
#[allow(clippy::result_large_err)] // redb's own error, on the cold I/O-error path only
fn scan(db: &Database) -> Result<(u64, u64, u64), redb::Error> {
    let tx = db.begin_read()?;
    let table = tx.open_table(ENTRIES)?;
    let mut used = 0u64;
    for item in table.iter()? {
        let (_, v) = item?;
        used += v.value().len() as u64;
    }
    let last = table.last()?.map(|(k, _)| k.value());
    Ok((used, table.len()?, last.map_or(0, |k| k + 1)))
}

/// redb refuses every transaction after an I/O error ("Previous I/O error
/// occurred. Please close and re-open the database"): the handle must be
/// dropped and the file opened again, which brings back the last commit.
fn needs_reopen(e: &redb::Error) -> bool {
    matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo)
}

/// `dir/<id>.bin`, or `dir/<id>-<n>.bin` if a file with other bytes is already
/// there (an id used again after a restart). The same bytes again — the
/// removal of a quarantined entry was lost in a crash — reuse the file.
fn write_quarantine_file(dir: &Path, id: u64, raw: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    for n in 0u32.. {
        let name = if n == 0 { format!("{id}.bin") } else { format!("{id}-{n}.bin") };
        let path = dir.join(name);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(raw)?;
                f.sync_all()?;
                std::fs::File::open(dir)?.sync_all()?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if std::fs::read(&path)? == raw {
                    return Ok(path);
                }
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("u32 suffixes exhausted")
}

/// What one transaction did.
struct Applied {
    ids: Vec<u64>,
    removed: u64,
    removed_bytes: u64,
}

/// Applies appends and removals in one transaction, or, with `probe` and
/// nothing else to do, writes and fsyncs a probe value.
#[allow(clippy::result_large_err)] // redb's own error, on the cold I/O-error path only
fn apply(
    inner: &Inner,
    db: &Database,
    appends: &[&[u8]],
    removes: &[u64],
    probe: bool,
) -> Result<Applied, redb::Error> {
    let mut tx = db.begin_write()?;
    let durable = !appends.is_empty() || probe;
    tx.set_durability(if durable { Durability::Immediate } else { Durability::Eventual });
    let mut applied = Applied { ids: Vec::with_capacity(appends.len()), removed: 0, removed_bytes: 0 };
    {
        let mut table = tx.open_table(ENTRIES)?;
        // Ids are taken only for a commit that succeeds, so none is skipped.
        let first = inner.next_id.load(Ordering::Relaxed);
        for (i, value) in appends.iter().enumerate() {
            let id = first + i as u64;
            table.insert(id, *value)?;
            applied.ids.push(id);
        }
        for id in removes {
            if let Some(old) = table.remove(id)? {
                applied.removed += 1;
                applied.removed_bytes += old.value().len() as u64;
            }
        }
    }
    if probe {
        let mut table = tx.open_table(PROBE)?;
        table.insert(0, vec![0u8; PROBE_BYTES].as_slice())?;
    }
    tx.commit()?;
    if probe {
        // Give the space back; if this fails the next probe overwrites it.
        #[allow(clippy::result_large_err)] // redb's own error, on the cold I/O-error path only
        let _ = (|| -> Result<(), redb::Error> {
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::Eventual);
            tx.open_table(PROBE)?.remove(0)?;
            tx.commit()?;
            Ok(())
        })();
    }
    Ok(applied)
}

/// Drops the database handle and opens the file again (redb recovers the last
/// commit), then recounts what is in it.
fn reopen(inner: &Inner) -> Result<(), String> {
    let mut db = inner.db.write().expect("spool database lock poisoned");
    drop(db.take());
    let fresh = open_database(&inner.path).map_err(|e| format!("cannot reopen after an I/O error: {e}"))?;
    let (bytes, entries, next_id) = scan(&fresh).map_err(|e| format!("cannot read after reopening: {e}"))?;
    *db = Some(fresh);
    drop(db);
    inner.committed.store(bytes, Ordering::Release);
    inner.entries.store(entries, Ordering::Relaxed);
    inner.next_id.fetch_max(next_id, Ordering::Relaxed);
    telemetry::metrics().spool_bytes.set(bytes as i64);
    telemetry::metrics().spool_entries.set(entries as i64);
    inner.generation.fetch_add(1, Ordering::AcqRel);
    telemetry::metrics().spool_reopens.inc();
    inner.new_data.notify_one();
    tracing::warn!(path = %inner.path.display(), entries, bytes, "spool database reopened after an I/O error");
    Ok(())
}

fn set_write_error(inner: &Inner, error: Option<String>) {
    let mut state = inner.write_error.lock().expect("spool state poisoned");
    match (&*state, &error) {
        (None, Some(e)) => tracing::error!(path = %inner.path.display(), "the spool cannot take writes: {e}"),
        (Some(_), None) => tracing::info!(path = %inner.path.display(), "the spool takes writes again"),
        _ => {}
    }
    *state = error;
}

/// One transaction, reopening the database first if an earlier error closed
/// it, and closing it if this one fails with an I/O error (redb then refuses
/// every later transaction until the file is opened again).
fn commit(inner: &Inner, appends: &[&[u8]], removes: &[u64], probe: bool) -> Result<Applied, String> {
    if inner.db.read().expect("spool database lock poisoned").is_none() {
        reopen(inner)?;
    }
    let result = {
        let db = inner.db.read().expect("spool database lock poisoned");
        let db = db.as_ref().expect("opened above; only the writer thread closes it");
        apply(inner, db, appends, removes, probe)
    };
    result.map_err(|e| {
        if needs_reopen(&e) {
            drop(inner.db.write().expect("spool database lock poisoned").take());
        }
        e.to_string()
    })
}

/// The single writer: takes every op waiting, applies them in one transaction,
/// commits once. Appends make the commit durable (fsync); a batch of only
/// removals commits with `Eventual` durability.
///
/// After an I/O error (a full disk) it drops the database handle and opens the
/// file again, keeps the removals that failed for the next transaction, and,
/// while nothing succeeds, tries a small durable write every `PROBE_INTERVAL`
/// so that `write_error` (and `/readyz`) clears once there is room again.
fn writer_loop(inner: Arc<Inner>, rx: mpsc::Receiver<Op>) {
    let mut pending_removes: Vec<u64> = Vec::new();
    let mut closing = false;
    while !closing {
        let unhealthy = inner.write_error.lock().expect("spool state poisoned").is_some();
        let first = if unhealthy || !pending_removes.is_empty() {
            match rx.recv_timeout(PROBE_INTERVAL) {
                Ok(op) => Some(op),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    closing = true;
                    None
                }
            }
        } else {
            match rx.recv() {
                Ok(op) => Some(op),
                Err(_) => return,
            }
        };
        let mut appends: Vec<(Vec<u8>, Done)> = Vec::new();
        let mut removes = std::mem::take(&mut pending_removes);
        let mut check = false;
        let mut take = |op| match op {
            Op::Append { value, done } => appends.push((value, done)),
            Op::Remove { id } => removes.push(id),
            Op::Check => check = true,
        };
        if let Some(op) = first {
            take(op);
            for _ in 1..1024 {
                match rx.try_recv() {
                    Ok(op) => take(op),
                    Err(_) => break,
                }
            }
        }
        let probe = appends.is_empty() && (unhealthy || check);
        if appends.is_empty() && removes.is_empty() && !probe {
            continue;
        }
        let values: Vec<&[u8]> = appends.iter().map(|(v, _)| v.as_slice()).collect();
        let reserved: u64 = values.iter().map(|v| v.len() as u64).sum();
        let result = commit(&inner, &values, &removes, probe);
        match result {
            Ok(applied) => {
                // Only this thread changes `committed`, `entries`, `next_id`
                // and the two gauges. Committed first, reservation released
                // second: `used_bytes` never dips below the truth.
                let bytes = (inner.committed.load(Ordering::Acquire) + reserved).saturating_sub(applied.removed_bytes);
                inner.committed.store(bytes, Ordering::Release);
                inner.reserved.fetch_sub(reserved, Ordering::AcqRel);
                let entries =
                    (inner.entries.load(Ordering::Relaxed) + applied.ids.len() as u64).saturating_sub(applied.removed);
                inner.entries.store(entries, Ordering::Relaxed);
                inner.next_id.fetch_add(applied.ids.len() as u64, Ordering::Relaxed);
                telemetry::metrics().spool_bytes.set(bytes as i64);
                telemetry::metrics().spool_entries.set(entries as i64);
                if !appends.is_empty() || probe {
                    set_write_error(&inner, None);
                }
                if !appends.is_empty() {
                    inner.new_data.notify_one();
                }
                for ((_, done), id) in appends.into_iter().zip(applied.ids) {
                    let _ = done.send(Ok(id));
                }
            }
            Err(message) => {
                inner.reserved.fetch_sub(reserved, Ordering::AcqRel);
                set_write_error(&inner, Some(message.clone()));
                tracing::error!(path = %inner.path.display(), appends = appends.len(), removals = removes.len(), "spool commit failed: {message}");
                for (_, done) in appends {
                    let _ = done.send(Err(SpoolError::Storage {
                        path: inner.path.clone(),
                        message: format!("{message}; nothing was written"),
                    }));
                }
                // Removals are tried again with the next transaction.
                pending_removes = removes;
            }
        }
    }
}

/// `[format u8][count u32]` then per document
/// `[source u8][index len u16][index][id len u16][id][body len u32][body]`.
fn encode(docs: &[Document]) -> Vec<u8> {
    let plain = encode_plain(docs);
    let mut out = Vec::with_capacity(plain.len() / 4);
    out.push(FORMAT_LZ4);
    out.extend_from_slice(&lz4_flex::compress_prepend_size(&plain));
    out
}

fn encode_plain(docs: &[Document]) -> Vec<u8> {
    let size: usize = docs.iter().map(|d| 9 + d.index.len() + d.id.len() + d.body.len()).sum();
    let mut out = Vec::with_capacity(5 + size);
    out.put_u8(FORMAT);
    out.put_u32(docs.len() as u32);
    for d in docs {
        out.put_u8(d.source.to_byte());
        out.put_u16(d.index.len() as u16);
        out.put_slice(d.index.as_bytes());
        out.put_u16(d.id.len() as u16);
        out.put_slice(d.id.as_bytes());
        out.put_u32(d.body.len() as u32);
        out.put_slice(&d.body);
    }
    out
}

/// An entry's documents from its stored bytes (either format), or why they
/// do not decode. Public for the sink path's bench (benches/sink_path.rs),
/// which reads entries back as the drainer does.
pub fn decode(raw: &[u8]) -> Result<Vec<Document>, String> {
    match raw.first() {
        Some(&FORMAT_LZ4) => {
            // The size prefix of garbage could ask for gigabytes; LZ4 expands
            // at most 255×, so anything beyond that is corruption.
            let compressed = &raw[1..];
            let claimed = compressed.get(..4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            if compressed.len() < 4 || claimed > (compressed.len() - 4).saturating_mul(255) + 16 {
                return Err(format!("LZ4: implausible uncompressed size {claimed} for {} bytes", compressed.len()));
            }
            let plain = lz4_flex::decompress_size_prepended(compressed).map_err(|e| format!("LZ4: {e}"))?;
            decode_plain(Bytes::from(plain))
        }
        _ => decode_plain(Bytes::copy_from_slice(raw)),
    }
}

fn decode_plain(all: Bytes) -> Result<Vec<Document>, String> {
    let mut buf = all.clone();
    let need = |buf: &Bytes, n: usize, what: &str| {
        if buf.remaining() < n {
            Err(format!("truncated at {what}"))
        } else {
            Ok(())
        }
    };
    need(&buf, 5, "header")?;
    let format = buf.get_u8();
    if format != FORMAT {
        return Err(format!("unknown format {format}"));
    }
    let count = buf.get_u32() as usize;
    let mut docs = Vec::with_capacity(count.min(100_000));
    for _ in 0..count {
        need(&buf, 3, "source")?;
        let source = SourceKind::from_byte(buf.get_u8()).ok_or("unknown source")?;
        let n = buf.get_u16() as usize;
        need(&buf, n + 2, "index")?;
        let index = String::from_utf8(buf.split_to(n).to_vec()).map_err(|_| "index is not UTF-8")?;
        let n = buf.get_u16() as usize;
        need(&buf, n + 4, "id")?;
        let id = String::from_utf8(buf.split_to(n).to_vec()).map_err(|_| "id is not UTF-8")?;
        let n = buf.get_u32() as usize;
        need(&buf, n, "body")?;
        let body = buf.split_to(n);
        docs.push(Document { index, id, body, source });
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(i: usize) -> Document {
        Document {
            index: "audit-2026.01.01".into(),
            id: format!("id-{i}"),
            body: Bytes::from(format!("{{\"n\":{i}}}")),
            source: SourceKind::Audit,
        }
    }

    fn read(spool: &Spool) -> Vec<Entry> {
        spool.read_from(0, 10).unwrap().into_iter().map(|e| e.unwrap_or_else(|c| panic!("{}", c.message))).collect()
    }

    async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
        for _ in 0..400 {
            if ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[test]
    fn encoding_round_trips_and_detects_truncation() {
        let docs: Vec<Document> = (0..3).map(doc).collect();
        let raw = encode(&docs);
        assert_eq!(raw[0], FORMAT_LZ4);
        assert_eq!(decode(&raw).unwrap(), docs);
        assert!(decode(&raw[..raw.len() - 1]).unwrap_err().starts_with("LZ4"));
        let plain = encode_plain(&docs);
        assert_eq!(decode(&plain).unwrap(), docs);
        assert!(decode(&plain[..plain.len() - 1]).unwrap_err().starts_with("truncated"));
    }

    #[tokio::test]
    async fn append_read_remove_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let a = spool.append(&[doc(1), doc(2)]).await.unwrap();
        let b = spool.append(&[doc(3)]).await.unwrap();
        assert!(b > a);
        let entries = read(&spool);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].docs, vec![doc(1), doc(2)]);
        spool.remove(a);
        // Removal is applied by the writer thread; wait for it.
        wait_for("the removal", || spool.entry_count() == 1).await;
        drop(spool);
        // The writer thread lets go of the file once it sees the last handle gone.
        let mut reopened = Spool::open(dir.path(), 1 << 20);
        for _ in 0..200 {
            if reopened.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            reopened = Spool::open(dir.path(), 1 << 20);
        }
        let reopened = reopened.unwrap();
        let entries = read(&reopened);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].docs, vec![doc(3)]);
        assert_eq!(reopened.used_bytes(), entries[0].bytes);
        // New ids continue after the old ones.
        let c = reopened.append(&[doc(4)]).await.unwrap();
        assert!(c > b);
    }

    #[tokio::test]
    async fn full_spool_refuses_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 100).unwrap();
        let big: Vec<Document> = (0..20).map(doc).collect();
        match spool.append(&big).await {
            Err(SpoolError::Full { max: 100, .. }) => {}
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert_eq!(spool.entry_count(), 0);
        assert_eq!(spool.used_bytes(), 0);
        assert!(spool.read_from(0, 10).unwrap().is_empty());
    }

    #[test]
    fn garbage_never_decodes_and_never_asks_for_gigabytes() {
        assert!(decode(&[FORMAT_LZ4, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap_err().contains("implausible"));
        assert!(decode(&[FORMAT_LZ4, 1]).is_err());
        assert!(decode(b"garbage").is_err());
        assert!(decode(&[]).is_err());
    }

    #[tokio::test]
    async fn a_corrupt_entry_is_returned_in_place_and_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let a = spool.append(&[doc(1)]).await.unwrap();
        let b = spool.append(&[doc(2)]).await.unwrap();
        let c = spool.append(&[doc(3)]).await.unwrap();
        // Overwrite b's value the way a bad disk or a bug would.
        {
            let db = spool.inner.db.read().unwrap();
            let tx = db.as_ref().unwrap().begin_write().unwrap();
            tx.open_table(ENTRIES).unwrap().insert(b, b"\x02garbage-garbage".as_slice()).unwrap();
            tx.commit().unwrap();
        }
        let read = spool.read_from(0, 10).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].as_ref().ok().unwrap().id, a);
        assert_eq!(read[2].as_ref().ok().unwrap().id, c);
        let Err(corrupt) = &read[1] else { panic!("b decoded") };
        assert_eq!(corrupt.id, b);
        let before = telemetry::metrics().spool_entries_quarantined.get();
        let file = spool.quarantine(corrupt).unwrap();
        assert_eq!(file, dir.path().join("quarantine").join(format!("{b}.bin")));
        assert_eq!(std::fs::read(&file).unwrap(), b"\x02garbage-garbage");
        assert!(telemetry::metrics().spool_entries_quarantined.get() > before);
        // Quarantining the same bytes again (a removal lost in a crash) reuses the file.
        assert_eq!(spool.quarantine(corrupt).unwrap(), file);
        wait_for("the removal", || spool.entry_count() == 2).await;
        let ids: Vec<u64> = read_ids(&spool);
        assert_eq!(ids, vec![a, c]);
    }

    fn read_ids(spool: &Spool) -> Vec<u64> {
        read(spool).iter().map(|e| e.id).collect()
    }

    #[tokio::test]
    async fn an_append_whose_caller_gives_up_is_still_counted() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        // Poll the append once (it is then queued to the writer) and drop it.
        let docs = [doc(1), doc(2)];
        let mut fut = Box::pin(spool.append(&docs));
        let _ = futures::poll!(&mut fut);
        drop(fut);
        wait_for("the commit", || spool.entry_count() == 1).await;
        let entries = read(&spool);
        assert_eq!(entries.len(), 1);
        assert_eq!(spool.used_bytes(), entries[0].bytes);
        spool.remove(entries[0].id);
        wait_for("the removal", || spool.entry_count() == 0).await;
        assert_eq!(spool.used_bytes(), 0);
    }
}
