//! Graceful shutdown in two steps.
//!
//! SIGTERM *begins* shutdown: listeners stop accepting, sources stop reading,
//! in-flight work is allowed to finish. When the grace period runs out the
//! shutdown *aborts*: whatever is still waiting on Elasticsearch is abandoned,
//! which is safe because nothing unacknowledged was ever removed from the spool
//! or moved a checkpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct Shutdown {
    stop: CancellationToken,
    abort: CancellationToken,
    /// Set when the abort came from the grace period running out (or a second
    /// signal), not from the end of an orderly stop: only then is work that is
    /// still open worth a warning.
    forced: Arc<AtomicBool>,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stop taking new work.
    pub fn begin(&self) {
        self.stop.cancel();
    }

    /// Give up on work in flight.
    pub fn abort(&self) {
        self.stop.cancel();
        self.abort.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    pub fn is_aborted(&self) -> bool {
        self.abort.is_cancelled()
    }

    /// Gives up on work in flight because the grace period is over (or a
    /// second signal came): [`is_forced`](Self::is_forced) tells it apart
    /// from an abort at the end of an orderly stop.
    pub fn force(&self) {
        self.forced.store(true, Ordering::SeqCst);
        self.abort();
    }

    /// Whether the abort was [`force`](Self::force)d.
    pub fn is_forced(&self) -> bool {
        self.forced.load(Ordering::SeqCst)
    }

    pub async fn stopping(&self) {
        self.stop.cancelled().await
    }

    pub async fn aborted(&self) {
        self.abort.cancelled().await
    }

    /// Begins on SIGTERM or SIGINT, aborts `grace` later (or on a second signal).
    pub fn on_signals(&self, grace: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(grace = ?grace, "shutdown requested: no new work, flushing");
            this.begin();
            tokio::select! {
                _ = tokio::time::sleep(grace) => tracing::warn!("grace period over: what is left stays spooled"),
                _ = wait_for_signal() => tracing::warn!("second signal: stopping now"),
            }
            this.force();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orderly_abort_is_not_a_forced_one() {
        let s = Shutdown::new();
        s.abort();
        assert!(s.is_aborted() && s.is_stopping() && !s.is_forced());
        let s = Shutdown::new();
        s.clone().force();
        assert!(s.is_aborted() && s.is_forced());
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// On SIGTERM: time to finish in-flight requests and flush; the rest stays spooled.
    #[serde(default = "defaults::grace_period", with = "humantime_serde")]
    pub grace_period: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_period: defaults::grace_period() }
    }
}

mod defaults {
    use std::time::Duration;
    pub fn grace_period() -> Duration {
        Duration::from_secs(20)
    }
}
