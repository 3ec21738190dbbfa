//! A spool file that cannot be opened never stops the gateway.
//!
//! redb checks its file when it opens it and when it reads it; a damaged file
//! (truncated by a full or failing disk, overwritten, half-copied) makes it
//! return `Corrupted`, fail to read past the end of the file, or panic inside
//! the library. Before, the gateway then exited at every start and the webhook
//! stayed down, with every acknowledged batch in the file stuck behind it.
//!
//! Now the open and a first read of every entry run under `catch_unwind`. A
//! file that fails either way is renamed to `spool.redb.damaged-<unix
//! seconds>` next to it (kept, never deleted), an error is logged naming both
//! paths, `klg_spool_files_set_aside_total` counts it, and a fresh spool is
//! created: the gateway serves again. What can still be read from the file is
//! recovered into Elasticsearch with `kube-log-gateway spool salvage FILE`
//! (see [`super::salvage`]); the documents' deterministic `_id`s make that
//! exactly once, however often it runs.
//!
//! Errors that are not damage — another process holds the file, permission
//! denied, a full disk — still stop the start with a message naming the file:
//! moving a good spool aside for those would only hide it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use redb::{Database, ReadableTable};

use super::{open_database, scan, ENTRIES};
use crate::telemetry;

/// What a healthy open found: the database and (bytes, entries, next id).
pub(super) type Opened = (Database, (u64, u64, u64));

/// Why a spool file could not be opened.
#[derive(Debug)]
pub(super) enum OpenFailure {
    /// The file is damaged: moving it aside and starting afresh is right.
    Damaged(String),
    /// Anything else (locked, permissions, disk full): not the file's fault.
    Other(String),
}

fn set_aside_counter() -> &'static Counter {
    static COUNTER: OnceLock<Counter> = OnceLock::new();
    COUNTER.get_or_init(|| {
        let c = Counter::default();
        telemetry::register(|r| {
            r.register(
                "spool_files_set_aside",
                "Spool files that could not be opened or read (damaged) and were renamed to spool.redb.damaged-<time>; a fresh spool replaced them",
                c.clone(),
            )
        });
        c
    })
}

/// Registers `klg_spool_files_set_aside_total` (at 0) before anything happens.
pub(super) fn register_metrics() {
    let _ = set_aside_counter();
}

/// Opens `path` (creating it if missing), creates the entries table and reads
/// every entry once, all under `catch_unwind`.
pub(super) fn try_open(path: &Path) -> Result<Opened, OpenFailure> {
    #[allow(clippy::result_large_err)] // redb's own error, on the cold start-up path only
    let attempt = catch_unwind(AssertUnwindSafe(|| -> Result<Opened, redb::Error> {
        let db = open_database(path)?;
        let tx = db.begin_write()?;
        tx.open_table(ENTRIES)?;
        tx.commit()?;
        let counts = scan(&db)?;
        read_every_entry(&db)?;
        Ok((db, counts))
    }));
    match attempt {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(e)) if is_damage(&e) => Err(OpenFailure::Damaged(e.to_string())),
        Ok(Err(e)) => Err(OpenFailure::Other(e.to_string())),
        Err(panic) => Err(OpenFailure::Damaged(format!("the storage library panicked: {}", panic_message(&panic)))),
    }
}

/// Touches every stored value, so that a damaged page fails here, at start,
/// rather than in the drainer later.
#[allow(clippy::result_large_err)] // redb's own error, on the cold start-up path only
fn read_every_entry(db: &Database) -> Result<(), redb::Error> {
    let tx = db.begin_read()?;
    let table = tx.open_table(ENTRIES)?;
    for item in table.iter()? {
        let (_, v) = item?;
        std::hint::black_box(v.value().len());
    }
    Ok(())
}

fn is_damage(e: &redb::Error) -> bool {
    match e {
        redb::Error::Corrupted(_) => true,
        redb::Error::Io(io) => {
            matches!(io.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData)
        }
        _ => false,
    }
}

/// The text of a panic payload.
pub(super) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Renames the damaged `path` to `<path>.damaged-<unix seconds>` (a free
/// name), fsyncs the directory, logs and counts it. Returns the new name.
pub(super) fn set_aside(path: &Path, why: &str) -> std::io::Result<PathBuf> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "spool.redb".into());
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut aside = dir.join(format!("{name}.damaged-{now}"));
    let mut n = 1;
    while aside.exists() {
        aside = dir.join(format!("{name}.damaged-{now}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &aside)?;
    std::fs::File::open(dir)?.sync_all()?;
    set_aside_counter().inc();
    tracing::error!(
        path = %path.display(),
        moved_to = %aside.display(),
        "THE SPOOL FILE IS DAMAGED ({why}): it was moved aside and a fresh spool started, so the webhook serves \
         again. The batches acknowledged into the old file are not delivered yet: recover what can be read with \
         `kube-log-gateway spool salvage {} --config <this config>` (safe to run more than once)",
        aside.display()
    );
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::super::{Spool, SpoolError};
    use super::*;
    use crate::document::{Document, SourceKind};

    fn docs(n: usize) -> Vec<Document> {
        (0..n)
            .map(|i| Document {
                index: "audit-2026.01.01".into(),
                id: format!("id-{i}"),
                body: bytes::Bytes::from(format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 700))),
                source: SourceKind::Audit,
            })
            .collect()
    }

    /// A spool file with `entries` entries, closed.
    async fn spool_file(dir: &Path, entries: usize) -> PathBuf {
        let spool = Spool::open(dir, 1 << 30).unwrap();
        for _ in 0..entries {
            spool.append(&docs(50)).await.unwrap();
        }
        drop(spool);
        let path = dir.join("spool.redb");
        // The writer thread lets go of the file once it sees the last handle gone.
        for _ in 0..200 {
            if try_open(&path).is_ok() {
                return path;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the spool file stays locked");
    }

    #[tokio::test]
    async fn a_truncated_or_garbage_spool_file_is_set_aside_and_a_fresh_spool_opens() {
        for damage in ["truncated", "garbage"] {
            let dir = tempfile::tempdir().unwrap();
            let path = spool_file(dir.path(), 40).await;
            let original = std::fs::read(&path).unwrap();
            match damage {
                "truncated" => std::fs::write(&path, &original[..original.len() / 2]).unwrap(),
                _ => {
                    let garbage: Vec<u8> = (0..original.len()).map(|i| (i * 7919 % 251) as u8).collect();
                    std::fs::write(&path, garbage).unwrap()
                }
            }
            let damaged_bytes = std::fs::read(&path).unwrap();
            let Err(OpenFailure::Damaged(why)) = try_open(&path) else { panic!("{damage}: opened") };
            eprintln!("{damage}: {why}");
            let before = set_aside_counter().get();
            let spool = Spool::open(dir.path(), 1 << 30).unwrap();
            assert_eq!(spool.entry_count(), 0, "{damage}");
            spool.append(&docs(1)).await.unwrap();
            assert_eq!(spool.entry_count(), 1);
            assert!(set_aside_counter().get() > before);
            let aside: Vec<PathBuf> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("spool.redb.damaged-"))
                .collect();
            assert_eq!(aside.len(), 1, "{damage}: {aside:?}");
            assert_eq!(std::fs::read(&aside[0]).unwrap(), damaged_bytes, "{damage}: kept as it was");
        }
    }

    #[tokio::test]
    async fn a_spool_file_that_is_not_damaged_but_locked_is_not_moved() {
        let dir = tempfile::tempdir().unwrap();
        let _spool = Spool::open(dir.path(), 1 << 30).unwrap();
        match Spool::open(dir.path(), 1 << 30) {
            Err(SpoolError::Storage { message, .. }) => assert!(message.contains("already open"), "{message}"),
            Ok(_) => panic!("opened twice"),
            Err(e) => panic!("{e}"),
        }
        assert!(dir.path().join("spool.redb").exists());
    }
}
