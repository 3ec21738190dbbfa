//! Moves spooled entries to the sink, oldest first, several at a time, and
//! removes each entry only once the sink reports every document in it final.
//!
//! An entry that does not decode is quarantined (its bytes kept in a file,
//! the entry removed) instead of being read again forever: one bad entry must
//! not stop the delivery of everything behind it.

use std::collections::HashSet;

use futures::stream::{FuturesUnordered, StreamExt};

use super::{CorruptEntry, Spool};
use crate::shutdown::Shutdown;
use crate::sink::Sink;

/// Runs until shutdown. On `stopping`, no new entries are taken and the ones in
/// flight are given until `aborted` to finish; what is left stays spooled and is
/// replayed on the next start.
pub async fn run(spool: Spool, sink: Sink, max_in_flight: usize, shutdown: Shutdown) {
    let mut next = 0u64;
    let mut generation = spool.generation();
    let mut in_flight = FuturesUnordered::new();
    let mut in_flight_ids = HashSet::new();
    loop {
        // The database was reopened after an I/O error: removals that had not
        // reached the disk are undone, so read again from the start (skipping
        // what is already in flight; a resend is a 409).
        let now = spool.generation();
        if now != generation {
            generation = now;
            next = 0;
        }
        if !shutdown.is_stopping() && in_flight.len() < max_in_flight {
            let room = max_in_flight - in_flight.len();
            let read = {
                let spool = spool.clone();
                tokio::task::spawn_blocking(move || spool.read_from(next, room)).await
            };
            match read {
                Ok(Ok(entries)) => {
                    for entry in entries {
                        let entry = match entry {
                            Ok(entry) => entry,
                            Err(corrupt) => {
                                next = corrupt.id + 1;
                                quarantine(&spool, corrupt).await;
                                continue;
                            }
                        };
                        next = entry.id + 1;
                        if !in_flight_ids.insert(entry.id) {
                            continue;
                        }
                        let sink = sink.clone();
                        in_flight.push(async move {
                            let result = sink.deliver(entry.docs).await;
                            (entry.id, result)
                        });
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!("reading the spool: {e}");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => tracing::error!("spool reader task failed: {e}"),
            }
        }
        if shutdown.is_stopping() && in_flight.is_empty() {
            return;
        }
        tokio::select! {
            Some((id, result)) = in_flight.next(), if !in_flight.is_empty() => {
                in_flight_ids.remove(&id);
                match result {
                    Ok(report) => {
                        tracing::debug!(id, ?report, "spool entry delivered");
                        spool.remove(id);
                    }
                    Err(cancelled) => {
                        tracing::info!(id, "{cancelled}; the entry stays in the spool");
                        return;
                    }
                }
            }
            _ = spool.new_data(), if in_flight.len() < max_in_flight && !shutdown.is_stopping() => {}
            _ = shutdown.stopping(), if !shutdown.is_stopping() => {}
            _ = shutdown.aborted() => return,
        }
    }
}

/// Moves a corrupt entry out of the way. If even that fails (the disk is
/// full), the entry stays in the spool and is tried again on the next start;
/// delivery goes on past it either way.
async fn quarantine(spool: &Spool, corrupt: CorruptEntry) {
    let id = corrupt.id;
    let spool = spool.clone();
    match tokio::task::spawn_blocking(move || spool.quarantine(&corrupt)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::error!(id, "{e}; the entry stays in the spool and is skipped until the next start")
        }
        Err(e) => tracing::error!(id, "spool quarantine task failed: {e}"),
    }
}
