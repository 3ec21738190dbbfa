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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{oneshot, Notify};

use crate::document::{Document, SourceKind};
use crate::telemetry;

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
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
    #[error("spool {path}: entry {id} is corrupt: {message}")]
    Corrupt { path: PathBuf, id: u64, message: String },
    #[error("spool is closed")]
    Closed,
}

/// One spooled batch: its key and its documents.
pub struct Entry {
    pub id: u64,
    pub docs: Vec<Document>,
    pub bytes: u64,
}

enum Op {
    Append { value: Vec<u8>, done: oneshot::Sender<Result<u64, SpoolError>> },
    Remove { id: u64, bytes: u64 },
}

struct Inner {
    db: Database,
    path: PathBuf,
    max_bytes: u64,
    /// Bytes committed or reserved by appends in flight.
    used: AtomicU64,
    entries: AtomicU64,
    next_id: AtomicU64,
    new_data: Notify,
}

#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
    // Unbounded is safe: appends are bounded by the byte reservation in
    // `append`, removals by the number of entries.
    ops: tokio::sync::mpsc::UnboundedSender<Op>,
}

impl Spool {
    /// Opens (or creates) `data_dir/spool.redb` and starts the writer thread.
    pub fn open(data_dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let path = data_dir.join("spool.redb");
        let storage = |e: &dyn std::fmt::Display| SpoolError::Storage { path: path.clone(), message: e.to_string() };
        std::fs::create_dir_all(data_dir).map_err(|e| storage(&e))?;
        let db = Database::builder().set_cache_size(16 * 1024 * 1024).create(&path).map_err(|e| storage(&e))?;
        let (used, entries, next_id) = {
            let tx = db.begin_write().map_err(|e| storage(&e))?;
            let stats = {
                let table = tx.open_table(ENTRIES).map_err(|e| storage(&e))?;
                let mut used = 0u64;
                for item in table.iter().map_err(|e| storage(&e))? {
                    let (_, v) = item.map_err(|e| storage(&e))?;
                    used += v.value().len() as u64;
                }
                let last = table.last().map_err(|e| storage(&e))?.map(|(k, _)| k.value());
                (used, table.len().map_err(|e| storage(&e))?, last.map_or(0, |k| k + 1))
            };
            tx.commit().map_err(|e| storage(&e))?;
            stats
        };
        if entries > 0 {
            tracing::info!(path = %path.display(), entries, bytes = used, "spool has entries from before; replaying them");
        }
        telemetry::metrics().spool_bytes.set(used as i64);
        telemetry::metrics().spool_entries.set(entries as i64);
        let inner = Arc::new(Inner {
            db,
            path,
            max_bytes,
            used: AtomicU64::new(used),
            entries: AtomicU64::new(entries),
            next_id: AtomicU64::new(next_id),
            new_data: Notify::new(),
        });
        let (ops, rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = inner.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer_loop(writer, rx))
            .map_err(|e| SpoolError::Storage { path: inner.path.clone(), message: e.to_string() })?;
        Ok(Spool { inner, ops })
    }

    pub fn used_bytes(&self) -> u64 {
        self.inner.used.load(Ordering::Relaxed)
    }

    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.entries.load(Ordering::Relaxed)
    }

    /// Commits `docs` as one entry, durably, and returns its id. `Full` if it
    /// would take the spool past `max_bytes`; nothing is written then.
    pub async fn append(&self, docs: &[Document]) -> Result<u64, SpoolError> {
        let value = encode(docs);
        let size = value.len() as u64;
        let before = self.inner.used.fetch_add(size, Ordering::AcqRel);
        if before + size > self.inner.max_bytes {
            self.inner.used.fetch_sub(size, Ordering::AcqRel);
            return Err(SpoolError::Full { used: before, max: self.inner.max_bytes });
        }
        let (done, rx) = oneshot::channel();
        let sent = self.ops.send(Op::Append { value, done }).is_ok();
        let result = if sent { rx.await.unwrap_or(Err(SpoolError::Closed)) } else { Err(SpoolError::Closed) };
        match result {
            Ok(id) => {
                self.inner.entries.fetch_add(1, Ordering::Relaxed);
                telemetry::metrics().spool_entries.inc();
                telemetry::metrics().spool_bytes.inc_by(size as i64);
                self.inner.new_data.notify_one();
                Ok(id)
            }
            Err(e) => {
                self.inner.used.fetch_sub(size, Ordering::AcqRel);
                Err(e)
            }
        }
    }

    /// Forgets a delivered entry.
    pub fn remove(&self, id: u64, bytes: u64) {
        let _ = self.ops.send(Op::Remove { id, bytes });
    }

    /// Up to `limit` entries with ids ≥ `from`, oldest first.
    pub fn read_from(&self, from: u64, limit: usize) -> Result<Vec<Entry>, SpoolError> {
        let storage =
            |e: &dyn std::fmt::Display| SpoolError::Storage { path: self.inner.path.clone(), message: e.to_string() };
        let tx = self.inner.db.begin_read().map_err(|e| storage(&e))?;
        let table = tx.open_table(ENTRIES).map_err(|e| storage(&e))?;
        let mut out = Vec::new();
        for item in table.range(from..).map_err(|e| storage(&e))?.take(limit) {
            let (k, v) = item.map_err(|e| storage(&e))?;
            let id = k.value();
            let raw = v.value();
            let docs =
                decode(raw).map_err(|message| SpoolError::Corrupt { path: self.inner.path.clone(), id, message })?;
            out.push(Entry { id, docs, bytes: raw.len() as u64 });
        }
        Ok(out)
    }

    /// Resolves when an append happened since the last call (or immediately if
    /// one happened before anyone waited).
    pub async fn new_data(&self) {
        self.inner.new_data.notified().await
    }
}

/// The single writer: takes every op waiting, applies them in one transaction,
/// commits once. Appends make the commit durable (fsync); a batch of only
/// removals commits with `Eventual` durability.
fn writer_loop(inner: Arc<Inner>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Op>) {
    while let Some(first) = rx.blocking_recv() {
        let mut ops = vec![first];
        while let Ok(op) = rx.try_recv() {
            ops.push(op);
            if ops.len() >= 1024 {
                break;
            }
        }
        let has_append = ops.iter().any(|op| matches!(op, Op::Append { .. }));
        let result = (|| -> Result<(Vec<u64>, u64), String> {
            let mut tx = inner.db.begin_write().map_err(|e| e.to_string())?;
            tx.set_durability(if has_append { Durability::Immediate } else { Durability::Eventual });
            let mut ids = Vec::new();
            let mut removed_bytes = 0;
            {
                let mut table = tx.open_table(ENTRIES).map_err(|e| e.to_string())?;
                for op in &ops {
                    match op {
                        Op::Append { value, .. } => {
                            let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
                            table.insert(id, value.as_slice()).map_err(|e| e.to_string())?;
                            ids.push(id);
                        }
                        Op::Remove { id, bytes } => {
                            if table.remove(id).map_err(|e| e.to_string())?.is_some() {
                                removed_bytes += bytes;
                            }
                        }
                    }
                }
            }
            tx.commit().map_err(|e| e.to_string())?;
            Ok((ids, removed_bytes))
        })();
        match result {
            Ok((ids, removed_bytes)) => {
                let mut ids = ids.into_iter();
                let mut removed = 0;
                for op in ops {
                    match op {
                        Op::Append { done, .. } => {
                            let _ = done.send(Ok(ids.next().expect("one id per append")));
                        }
                        Op::Remove { .. } => removed += 1,
                    }
                }
                if removed > 0 {
                    inner.used.fetch_sub(removed_bytes, Ordering::AcqRel);
                    inner.entries.fetch_sub(removed, Ordering::Relaxed);
                    telemetry::metrics().spool_bytes.dec_by(removed_bytes as i64);
                    telemetry::metrics().spool_entries.dec_by(removed as i64);
                }
            }
            Err(message) => {
                tracing::error!(path = %inner.path.display(), "spool commit failed: {message}");
                for op in ops {
                    if let Op::Append { done, .. } = op {
                        let _ =
                            done.send(Err(SpoolError::Storage { path: inner.path.clone(), message: message.clone() }));
                    }
                }
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

fn decode(raw: &[u8]) -> Result<Vec<Document>, String> {
    match raw.first() {
        Some(&FORMAT_LZ4) => {
            let plain = lz4_flex::decompress_size_prepended(&raw[1..]).map_err(|e| format!("LZ4: {e}"))?;
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
        let entries = spool.read_from(0, 10).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].docs, vec![doc(1), doc(2)]);
        spool.remove(a, entries[0].bytes);
        // Removal is applied by the writer thread; wait for it.
        for _ in 0..100 {
            if spool.entry_count() == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(spool.entry_count(), 1);
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
        let entries = reopened.read_from(0, 10).unwrap();
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
}
