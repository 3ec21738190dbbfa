//! Rate-limited logging: the first event is logged, then at most one line per
//! interval with the count of those not logged. A poison document repeated a
//! million times must not become a million log lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LogThrottle {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogThrottle {
    pub fn new(interval: Duration) -> Self {
        LogThrottle { interval, last: Mutex::new(None), suppressed: AtomicU64::new(0) }
    }

    /// `Some(n)` if this event should be logged now, where `n` events were
    /// suppressed since the last logged one; `None` to stay quiet.
    pub fn check(&self) -> Option<u64> {
        let mut last = self.last.lock().expect("log throttle poisoned");
        let now = Instant::now();
        match *last {
            Some(t) if now.duration_since(t) < self.interval => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_interval_and_counts_the_rest() {
        let t = LogThrottle::new(Duration::from_millis(50));
        assert_eq!(t.check(), Some(0));
        assert_eq!(t.check(), None);
        assert_eq!(t.check(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(t.check(), Some(2));
    }
}
