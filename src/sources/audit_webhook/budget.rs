//! One byte budget for what the webhook's requests hold in memory at once:
//! their bodies (as read, and inflated for gzip) and the documents decoded
//! from them. Without it, memory grows with the number of concurrent uploads
//! (each 30 MB batch holds about 100 MB while it is decoded) until the pod is
//! killed for it, losing every request in flight.
//!
//! A request is charged before it holds the memory: its `Content-Length`
//! before reading, its bytes as they arrive when the length is not known
//! (chunked, or gzip, whose inflated size counts), then its decoded documents.
//! A charge that does not fit waits up to `server.memory_budget_wait` for
//! other requests to finish; past that the request is answered 503 with
//! `Retry-After`, which kube-apiserver retries. A charge is never more than
//! the whole budget, so a request larger than the budget is served when it is
//! alone (`server.max_body_bytes` is the bound for a single request).
//!
//! When a large charge is released, freed memory is handed back to the
//! operating system ([`return_freed_memory`]): glibc's malloc keeps it in its
//! arenas otherwise, and the pod's memory would stay at its peak.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

use crate::telemetry;

/// Charges of at least this many bytes give their memory back to the system
/// when released; smaller ones are reused by the next requests anyway.
pub const RETURN_MEMORY_FROM: u64 = 8 * 1024 * 1024;

/// The webhook budget's metrics (`klg_webhook_budget_*`).
pub struct BudgetMetrics {
    pub limit_bytes: Gauge,
    pub in_use_bytes: Gauge,
    pub peak_bytes: Gauge,
    pub waited: Counter,
    pub refused: Counter,
}

/// Registered with the process-wide registry on first use.
pub fn metrics() -> &'static BudgetMetrics {
    static METRICS: OnceLock<BudgetMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = BudgetMetrics {
            limit_bytes: Gauge::default(),
            in_use_bytes: Gauge::default(),
            peak_bytes: Gauge::default(),
            waited: Counter::default(),
            refused: Counter::default(),
        };
        telemetry::register(|r| {
            r.register("webhook_budget_limit_bytes", "server.memory_budget_bytes", m.limit_bytes.clone());
            r.register(
                "webhook_budget_in_use_bytes",
                "Bytes of request bodies and decoded documents the webhook's requests hold now",
                m.in_use_bytes.clone(),
            );
            r.register(
                "webhook_budget_peak_bytes",
                "The most bytes held at once since the start (never above the limit)",
                m.peak_bytes.clone(),
            );
            r.register(
                "webhook_budget_waited",
                "Requests that had to wait for memory held by other requests",
                m.waited.clone(),
            );
            r.register(
                "webhook_budget_refused",
                "Requests answered 503 with Retry-After because the budget stayed full for server.memory_budget_wait",
                m.refused.clone(),
            );
        });
        m
    })
}

/// The budget shared by all requests of one webhook.
pub struct Budget {
    limit: u64,
    wait: Duration,
    state: Mutex<State>,
    freed: Notify,
    trimming: AtomicBool,
}

#[derive(Default)]
struct State {
    in_use: u64,
    peak: u64,
}

/// The budget stayed full for the whole wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub wanted: u64,
    pub limit: u64,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the webhook's memory budget (server.memory_budget_bytes, {} bytes) is in use by other requests; \
             this one needs {} bytes: retry later",
            self.limit, self.wanted
        )
    }
}

impl Budget {
    pub fn new(limit: u64, wait: Duration) -> Arc<Budget> {
        metrics().limit_bytes.set(limit as i64);
        Arc::new(Budget {
            limit,
            wait,
            state: Mutex::new(State::default()),
            freed: Notify::new(),
            trimming: AtomicBool::new(false),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes charged now, over all requests.
    pub fn in_use(&self) -> u64 {
        self.state.lock().expect("budget lock").in_use
    }

    /// A request's charge, empty until it grows.
    pub fn charge(self: &Arc<Self>) -> Charge {
        Charge { budget: self.clone(), held: 0, waited: false }
    }

    /// Takes `more` bytes if they fit now.
    fn try_take(&self, more: u64) -> bool {
        let mut s = self.state.lock().expect("budget lock");
        if s.in_use + more > self.limit {
            return false;
        }
        s.in_use += more;
        s.peak = s.peak.max(s.in_use);
        let m = metrics();
        m.in_use_bytes.set(s.in_use as i64);
        if m.peak_bytes.get() < s.peak as i64 {
            m.peak_bytes.set(s.peak as i64);
        }
        true
    }

    fn give_back(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut s = self.state.lock().expect("budget lock");
        s.in_use -= bytes;
        metrics().in_use_bytes.set(s.in_use as i64);
        drop(s);
        self.freed.notify_waiters();
    }
}

/// What one request holds of the budget; released when dropped.
pub struct Charge {
    budget: Arc<Budget>,
    held: u64,
    waited: bool,
}

impl Charge {
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Grows this request's charge to `total` bytes (at most the whole
    /// budget), waiting up to the budget's wait for others to release theirs.
    pub async fn grow_to(&mut self, total: u64) -> Result<(), Refused> {
        let total = total.min(self.budget.limit);
        if total <= self.held {
            return Ok(());
        }
        let more = total - self.held;
        let deadline = tokio::time::Instant::now() + self.budget.wait;
        loop {
            // Registered before trying, so a release in between is not missed.
            let freed = self.budget.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.budget.try_take(more) {
                self.held = total;
                return Ok(());
            }
            if !self.waited {
                self.waited = true;
                metrics().waited.inc();
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                metrics().refused.inc();
                return Err(Refused { wanted: total, limit: self.budget.limit });
            }
        }
    }

    /// Gives back what is held over `total` bytes (a buffer that was dropped).
    pub fn shrink_to(&mut self, total: u64) {
        if total < self.held {
            self.budget.give_back(self.held - total);
            self.held = total;
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.budget.give_back(held);
        if held >= RETURN_MEMORY_FROM {
            self.budget.return_freed_memory();
        }
    }
}

impl Budget {
    /// Hands freed heap memory back to the operating system, on a blocking
    /// thread, one run at a time (a run covers every release before it).
    fn return_freed_memory(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.trimming.swap(true, Ordering::AcqRel) {
            return;
        }
        let budget = self.clone();
        runtime.spawn_blocking(move || {
            budget.trimming.store(false, Ordering::Release);
            return_freed_memory();
        });
    }
}

/// glibc keeps freed memory in its malloc arenas (one per thread that
/// allocated, up to eight per core); `malloc_trim` returns their free pages.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn return_freed_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators give freed memory back on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_freed_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn charges_share_the_limit_and_are_released_on_drop() {
        let b = Budget::new(100, 20 * MS);
        let mut one = b.charge();
        one.grow_to(60).await.unwrap();
        let mut two = b.charge();
        assert_eq!(two.grow_to(50).await, Err(Refused { wanted: 50, limit: 100 }));
        assert_eq!(two.held(), 0);
        two.grow_to(40).await.unwrap();
        assert_eq!(b.in_use(), 100);
        drop(one);
        assert_eq!(b.in_use(), 40);
        two.grow_to(90).await.unwrap();
        two.shrink_to(10);
        assert_eq!(b.in_use(), 10);
        drop(two);
        assert_eq!(b.in_use(), 0);
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_is_served_alone() {
        let b = Budget::new(100, 20 * MS);
        let mut big = b.charge();
        big.grow_to(500).await.unwrap();
        assert_eq!(big.held(), 100);
        let mut small = b.charge();
        assert!(small.grow_to(1).await.is_err());
        drop(big);
        small.grow_to(1).await.unwrap();
        let mut big = b.charge();
        // Not alone: it waits, and is refused, never served over the limit.
        assert!(big.grow_to(500).await.is_err());
        assert_eq!(b.in_use(), 1);
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_memory_released_during_its_wait() {
        let b = Budget::new(100, Duration::from_secs(30));
        let mut first = b.charge();
        first.grow_to(80).await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            let mut c = b2.charge();
            c.grow_to(50).await.map(|()| c.held())
        });
        // The waiter is parked on the budget before the release.
        while metrics().waited.get() == 0 {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert_eq!(waiter.await.unwrap(), Ok(50));
        assert_eq!(b.in_use(), 0);
    }

    #[tokio::test]
    async fn growing_in_steps_charges_only_the_difference() {
        let b = Budget::new(100, MS);
        let mut c = b.charge();
        for total in [10, 30, 30, 20, 70] {
            c.grow_to(total).await.unwrap();
        }
        assert_eq!((c.held(), b.in_use()), (70, 70));
        assert!(b.charge().grow_to(31).await.is_err());
    }

    #[test]
    fn the_refusal_names_the_setting() {
        let text = Refused { wanted: 7, limit: 5 }.to_string();
        assert!(text.contains("server.memory_budget_bytes, 5 bytes"), "{text}");
        assert!(text.contains("needs 7 bytes"), "{text}");
    }
}
