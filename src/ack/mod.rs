//! Acknowledgement: a position in a source is safe once everything before it
//! is final.
//!
//! Two mechanisms carry that one rule, one per kind of source:
//!
//! * Pushed data (the audit webhook) is acknowledged to its client once it is in
//!   the spool; a spool entry is removed once every document in it is final
//!   (`spool::drain`).
//! * Pulled data (journald, container files) is never acknowledged to anyone: the
//!   source's own *position* (a journal cursor, file offsets) is saved once every
//!   batch up to it is final. That is [`deliver_in_order`] with a
//!   [`PositionFile`], here.
//!
//! `deliver_in_order` keeps several batches in flight but completes them in
//! order, folds each completed batch's position update into the source's
//! [`Positions`], and writes them with the one atomic [`PositionFile`] writer at
//! most every `save_interval` and when idle.
//!
//! The one shutdown rule: on `stopping` no new batch is taken; batches in flight
//! may finish until `aborted`. A batch that does not finish (the sink gave up at
//! shutdown) stops the loop: everything before it is saved, it and everything
//! after it are not, and are read again on the next start.

pub mod position_file;

use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{FuturesOrdered, StreamExt};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

pub use position_file::{PositionFile, PositionFileError};

use crate::shutdown::Shutdown;

/// A source's saved positions, changed only by batches that are final.
pub trait Positions {
    /// What one batch moves.
    type Update: Send + 'static;

    /// Applies the update of a batch that is final, as is every batch before it.
    fn apply(&mut self, update: Self::Update);

    /// The position file's content for the current state.
    fn encode(&self) -> Vec<u8>;
}

/// A batch for [`deliver_in_order`]: what to deliver and the update it makes safe.
pub struct Batch<T, U> {
    pub payload: T,
    pub update: U,
}

/// How [`deliver_in_order`] saves and counts.
pub struct Saving {
    pub file: PositionFile,
    /// The file is rewritten at most this often while batches complete (and
    /// always when idle and at the end).
    pub interval: Duration,
    /// Batches in flight at once.
    pub max_in_flight: usize,
    pub saves: Counter,
    pub save_errors: Counter,
}

/// Delivers batches from `rx` with `deliver`, in order, and saves `positions`
/// behind them (see the module docs for the rules). Returns the positions as
/// last applied once the channel is closed and drained, or at shutdown.
pub async fn deliver_in_order<T, P, F, Fut, E>(
    mut rx: mpsc::Receiver<Batch<T, P::Update>>,
    deliver: F,
    mut positions: P,
    saving: Saving,
    shutdown: Shutdown,
) -> P
where
    P: Positions,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut in_flight = FuturesOrdered::new();
    let mut saver = Saver { saving, dirty: false, last_save: Instant::now() };
    let mut tick = tokio::time::interval(saver.saving.interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut taking = true;
    while taking || !in_flight.is_empty() {
        tokio::select! {
            biased;
            Some((result, update)) = in_flight.next(), if !in_flight.is_empty() => match result {
                Ok(()) => {
                    positions.apply(update);
                    saver.dirty = true;
                    if saver.last_save.elapsed() >= saver.saving.interval {
                        saver.save(&positions);
                    }
                }
                Err(e) => {
                    tracing::info!("{e}; the position stays before this batch");
                    break;
                }
            },
            _ = shutdown.stopping(), if taking => taking = false,
            batch = rx.recv(), if taking && in_flight.len() < saver.saving.max_in_flight => match batch {
                Some(Batch { payload, update }) => {
                    let delivery = deliver(payload);
                    in_flight.push_back(async move { (delivery.await, update) });
                }
                None => taking = false,
            },
            _ = tick.tick() => saver.save(&positions),
            _ = shutdown.aborted() => break,
        }
    }
    saver.save(&positions);
    // Unblocks the producer if it is waiting on a full channel.
    rx.close();
    while rx.try_recv().is_ok() {}
    positions
}

struct Saver {
    saving: Saving,
    dirty: bool,
    last_save: Instant,
}

impl Saver {
    fn save<P: Positions>(&mut self, positions: &P) {
        if !self.dirty {
            return;
        }
        match self.saving.file.save(&positions.encode()) {
            Ok(()) => {
                self.dirty = false;
                self.last_save = Instant::now();
                self.saving.saves.inc();
            }
            Err(e) => {
                // Still dirty: the next tick tries again.
                self.saving.save_errors.inc();
                tracing::error!("{e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The newest finished batch number, saved as text.
    #[derive(Default)]
    struct Newest(Option<u32>);

    impl Positions for Newest {
        type Update = u32;
        fn apply(&mut self, update: u32) {
            self.0 = Some(update);
        }
        fn encode(&self) -> Vec<u8> {
            format!("{:?}", self.0).into_bytes()
        }
    }

    fn saving(dir: &std::path::Path) -> Saving {
        Saving {
            file: PositionFile::new(dir.join("pos"), "test position"),
            interval: Duration::from_secs(3600),
            max_in_flight: 4,
            saves: Counter::default(),
            save_errors: Counter::default(),
        }
    }

    #[tokio::test]
    async fn positions_advance_in_order_even_when_later_batches_finish_first() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel(8);
        let applied = Arc::new(Mutex::new(Vec::new()));
        for n in 0..4u32 {
            tx.send(Batch { payload: n, update: n }).await.unwrap();
        }
        drop(tx);
        let log = applied.clone();
        let deliver = move |n: u32| {
            let log = log.clone();
            async move {
                // Earlier batches take longer.
                tokio::time::sleep(Duration::from_millis(40 - 10 * n as u64)).await;
                log.lock().unwrap().push(n);
                Ok::<(), String>(())
            }
        };
        let end = deliver_in_order(rx, deliver, Newest::default(), saving(dir.path()), Shutdown::new()).await;
        assert_eq!(end.0, Some(3));
        assert_eq!(std::fs::read_to_string(dir.path().join("pos")).unwrap(), "Some(3)");
        assert_eq!(applied.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_batch_that_does_not_finish_holds_the_position_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel(8);
        for n in 0..3u32 {
            tx.send(Batch { payload: n, update: n }).await.unwrap();
        }
        drop(tx);
        let deliver = |n: u32| async move {
            if n == 1 {
                Err("the sink stopped".to_string())
            } else {
                Ok(())
            }
        };
        let end = deliver_in_order(rx, deliver, Newest::default(), saving(dir.path()), Shutdown::new()).await;
        assert_eq!(end.0, Some(0));
        assert_eq!(std::fs::read_to_string(dir.path().join("pos")).unwrap(), "Some(0)");
    }

    #[tokio::test]
    async fn stopping_takes_no_new_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel(8);
        tx.send(Batch { payload: 0u32, update: 0u32 }).await.unwrap();
        let shutdown = Shutdown::new();
        shutdown.begin();
        let end =
            deliver_in_order(rx, |_| async { Ok::<(), String>(()) }, Newest::default(), saving(dir.path()), shutdown)
                .await;
        assert_eq!(end.0, None);
        assert!(tx.is_closed());
    }
}
