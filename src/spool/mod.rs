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
mod damaged;
pub mod drain;
pub mod entry;
mod made_under;
mod quarantine;
pub mod salvage;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{oneshot, Notify};

use crate::document::Document;
use crate::telemetry;
use damaged::OpenFailure;
pub use entry::decode;
use entry::{encode, EntryWriter};
pub use made_under::Changed;
use writer::{writer_loop, Op};

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");

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
        damaged::register_metrics();
        let (db, (used, entries, next_id)) = match damaged::try_open(&path) {
            Ok(opened) => opened,
            Err(OpenFailure::Other(message)) => return Err(storage(&message)),
            Err(OpenFailure::Damaged(why)) => {
                damaged::set_aside(&path, &why)
                    .map_err(|e| storage(&format!("damaged ({why}); moving it aside: {e}")))?;
                damaged::try_open(&path).map_err(|f| match f {
                    OpenFailure::Damaged(m) | OpenFailure::Other(m) => storage(&format!("a fresh spool: {m}")),
                })?
            }
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::document::SourceKind;

    fn doc(i: usize) -> Document {
        Document {
            index: "audit-2026.01.01".into(),
            id: format!("id-{i}"),
            body: Bytes::from(format!("{{\"n\":{i}}}")),
            source: SourceKind::Audit,
        }
    }

    /// Opens the spool of `dir` again once the writer thread of the last
    /// (dropped) handle has let go of the file, which it does when it sees
    /// the handle gone.
    pub(super) async fn reopen(dir: &Path) -> Spool {
        let mut reopened = Spool::open(dir, 1 << 20);
        for _ in 0..200 {
            if reopened.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            reopened = Spool::open(dir, 1 << 20);
        }
        reopened.unwrap()
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
        let reopened = reopen(dir.path()).await;
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
