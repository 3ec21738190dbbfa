//! Moves spooled entries to the sink, oldest first, several at a time, and
//! removes each entry only once the sink reports every document in it final.

use futures::stream::{FuturesUnordered, StreamExt};

use super::Spool;
use crate::shutdown::Shutdown;
use crate::sink::Sink;

/// Runs until shutdown. On `stopping`, no new entries are taken and the ones in
/// flight are given until `aborted` to finish; what is left stays spooled and is
/// replayed on the next start.
pub async fn run(spool: Spool, sink: Sink, max_in_flight: usize, shutdown: Shutdown) {
    let mut next = 0u64;
    let mut in_flight = FuturesUnordered::new();
    loop {
        if !shutdown.is_stopping() && in_flight.len() < max_in_flight {
            let room = max_in_flight - in_flight.len();
            let read = {
                let spool = spool.clone();
                tokio::task::spawn_blocking(move || spool.read_from(next, room)).await
            };
            match read {
                Ok(Ok(entries)) => {
                    for entry in entries {
                        next = entry.id + 1;
                        let sink = sink.clone();
                        in_flight.push(async move {
                            let result = sink.deliver(entry.docs).await;
                            (entry.id, entry.bytes, result)
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
            Some((id, bytes, result)) = in_flight.next(), if !in_flight.is_empty() => match result {
                Ok(report) => {
                    tracing::debug!(id, ?report, "spool entry delivered");
                    spool.remove(id, bytes);
                }
                Err(cancelled) => {
                    tracing::info!(id, "{cancelled}; the entry stays in the spool");
                    return;
                }
            },
            _ = spool.new_data(), if in_flight.len() < max_in_flight && !shutdown.is_stopping() => {}
            _ = shutdown.stopping(), if !shutdown.is_stopping() => {}
            _ = shutdown.aborted() => return,
        }
    }
}
