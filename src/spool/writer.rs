//! The spool's single writer thread: group commits, removals that ride along,
//! and recovery from I/O errors (reopen, probe until the disk takes writes).

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use redb::{Database, Durability, TableDefinition};
use tokio::sync::oneshot;

use super::{needs_reopen, open_database, scan, Inner, SpoolError, ENTRIES};
use crate::telemetry;

/// One key: written and removed while the spool cannot take writes, to find out
/// when it can again (see [`writer_loop`]).
const PROBE: TableDefinition<u64, &[u8]> = TableDefinition::new("probe");
const PROBE_BYTES: usize = 64 * 1024;
/// How often the writer thread tries again while the spool cannot take writes.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Where the writer thread answers an append.
type Done = oneshot::Sender<Result<u64, SpoolError>>;

pub(super) enum Op {
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
pub(super) fn writer_loop(inner: Arc<Inner>, rx: mpsc::Receiver<Op>) {
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
