//! How long to wait before another attempt. Whether there is one at all is the
//! [`policy`](super::policy)'s call; the answer there is almost always yes,
//! because the spool, the journal and the log files are the buffers, so waiting
//! loses nothing.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;

use crate::shutdown::Shutdown;
use crate::sink::config::RetryConfig;

/// Capped exponential backoff with full jitter: each wait is uniform in
/// `[0, min(max, initial × 2^n)]`. Full jitter spreads many gateways'
/// retries after an outage instead of having them return in lockstep.
/// `backon` provides the capped exponential schedule; the jitter is applied here
/// because backon's own jitter only adds to the delay.
pub struct Backoff {
    schedule: backon::ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    pub fn new(cfg: &RetryConfig) -> Self {
        Backoff {
            schedule: ExponentialBuilder::default()
                .with_min_delay(cfg.initial_backoff)
                .with_max_delay(cfg.max_backoff)
                .with_factor(2.0)
                .without_max_times()
                .build(),
            max: cfg.max_backoff,
        }
    }

    /// Sleeps for the next wait; `false` if the gateway aborted meanwhile
    /// (the caller stops trying).
    pub async fn wait(&mut self, shutdown: &Shutdown) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(self.next_delay()) => true,
            _ = shutdown.aborted() => false,
        }
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.schedule.next().unwrap_or(self.max).min(self.max);
        let nanos = ceiling.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let cfg = RetryConfig { initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(1) };
        let mut b = Backoff::new(&cfg);
        let delays: Vec<Duration> = (0..50).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        // With full jitter, 50 draws are not all equal.
        assert!(delays.windows(2).any(|w| w[0] != w[1]));
        // The first draw is bounded by the initial delay.
        let mut b = Backoff::new(&cfg);
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
