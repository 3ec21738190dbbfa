//! Which failures are worth another attempt, and how long to wait before it.
//!
//! Whole-request failures (connection refused, timeout, 429, 5xx) and per-item
//! 429/5xx are retried for as long as it takes: the spool, the journal and the
//! log files are the buffers, so waiting loses nothing. Only per-item 4xx
//! (other than 409) are final, and those go to the dead-letter index.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;

use super::config::RetryConfig;

/// How a whole bulk request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFailure {
    /// Connection refused/reset, DNS, TLS, timeout: try the next URL.
    Transport(String),
    /// The node answered with this status for the whole request.
    Status { status: u16, body: String },
    /// 200 but not a bulk response we can read.
    Malformed(String),
}

/// What to do after a whole-request failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Wait, then send the same documents again (to the next URL if `failover`).
    Retry { failover: bool },
    /// The body is too large for the node: send it in two halves.
    Split,
}

impl RequestFailure {
    pub fn action(&self) -> Action {
        match self {
            RequestFailure::Transport(_) => Action::Retry { failover: true },
            RequestFailure::Status { status: 413, .. } => Action::Split,
            // 5xx from one node says little about the others.
            RequestFailure::Status { status, .. } if *status >= 500 => Action::Retry { failover: true },
            // 429 (cluster busy), 401/403 (credentials being rotated), 404 (a proxy
            // in the way): nothing a different attempt of ours would fix, but also
            // nothing worth losing documents over. Retry and log loudly.
            RequestFailure::Status { .. } => Action::Retry { failover: false },
            RequestFailure::Malformed(_) => Action::Retry { failover: true },
        }
    }
}

impl std::fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestFailure::Transport(e) => write!(f, "transport error: {e}"),
            RequestFailure::Status { status, body } => write!(f, "HTTP {status}: {body}"),
            RequestFailure::Malformed(e) => write!(f, "{e}"),
        }
    }
}

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
    fn classification() {
        assert_eq!(RequestFailure::Transport("refused".into()).action(), Action::Retry { failover: true });
        assert_eq!(
            RequestFailure::Status { status: 503, body: String::new() }.action(),
            Action::Retry { failover: true }
        );
        assert_eq!(
            RequestFailure::Status { status: 429, body: String::new() }.action(),
            Action::Retry { failover: false }
        );
        assert_eq!(RequestFailure::Status { status: 413, body: String::new() }.action(), Action::Split);
        assert_eq!(
            RequestFailure::Status { status: 401, body: String::new() }.action(),
            Action::Retry { failover: false }
        );
    }

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
