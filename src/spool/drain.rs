//! Moves spooled entries to the sink, oldest first, several at a time, and
//! removes each entry only once the sink reports every document in it final.
//!
//! An entry in flight is held in memory, decoded, until the sink has it all
//! delivered, which takes as long as the server is away. So what is in flight
//! is bounded by entries and by bytes ([`InFlight`]): a few large webhook
//! batches (kube-apiserver sends up to 400 events of whole objects) must not
//! take more memory than many small ones. One entry always goes, whatever its
//! size, or it could never be delivered.
//!
//! An entry that does not decode is quarantined (its bytes kept in a file,
//! the entry removed) instead of being read again forever: one bad entry must
//! not stop the delivery of everything behind it.

use std::collections::HashSet;

use futures::stream::{FuturesUnordered, StreamExt};

use super::{CorruptEntry, Entry, Spool};
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::telemetry;

/// How much may be handed to the sink at once (`spool.max_in_flight_entries`,
/// `spool.max_in_flight_bytes`).
#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    pub entries: usize,
    pub bytes: u64,
}

/// The bytes of an entry's documents: what it holds in memory while in flight.
fn entry_bytes(entry: &Entry) -> u64 {
    entry.docs.iter().map(|d| (d.body.len() + d.index.len() + d.id.len()) as u64).sum()
}

/// Runs until shutdown. On `stopping`, no new entries are taken and the ones in
/// flight are given until `aborted` to finish; what is left stays spooled and is
/// replayed on the next start.
pub async fn run(spool: Spool, sink: Sink, limit: InFlight, shutdown: Shutdown) {
    let mut next = 0u64;
    let mut generation = spool.generation();
    let mut in_flight = FuturesUnordered::new();
    let mut in_flight_ids = HashSet::new();
    let mut in_flight_bytes = 0u64;
    let gauges = (&telemetry::metrics().spool_in_flight_entries, &telemetry::metrics().spool_in_flight_bytes);
    loop {
        // The database was reopened after an I/O error: removals that had not
        // reached the disk are undone, so read again from the start (skipping
        // what is already in flight; a resend is a 409).
        let now = spool.generation();
        if now != generation {
            generation = now;
            next = 0;
        }
        let room_left = in_flight.len() < limit.entries && in_flight_bytes < limit.bytes;
        if !shutdown.is_stopping() && room_left {
            let room = limit.entries - in_flight.len();
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
                        if in_flight_ids.contains(&entry.id) {
                            next = entry.id + 1;
                            continue;
                        }
                        let bytes = entry_bytes(&entry);
                        if !in_flight.is_empty() && in_flight_bytes + bytes > limit.bytes {
                            // Read again once something in flight is delivered.
                            break;
                        }
                        next = entry.id + 1;
                        in_flight_ids.insert(entry.id);
                        in_flight_bytes += bytes;
                        let sink = sink.clone();
                        in_flight.push(async move {
                            let result = sink.deliver(entry.docs).await;
                            (entry.id, bytes, result)
                        });
                    }
                    gauges.0.set(in_flight.len() as i64);
                    gauges.1.set(in_flight_bytes as i64);
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
            Some((id, bytes, result)) = in_flight.next(), if !in_flight.is_empty() => {
                in_flight_ids.remove(&id);
                in_flight_bytes -= bytes;
                gauges.0.set(in_flight.len() as i64);
                gauges.1.set(in_flight_bytes as i64);
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
            _ = spool.new_data(), if room_left && !shutdown.is_stopping() => {}
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
