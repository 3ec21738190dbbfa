//! How many bulk workers may be busy at once: a fixed number, or an AIMD
//! controller that finds it (Vector's "adaptive request concurrency").
//!
//! The limit starts at `adaptive.initial` and stays within
//! `[1, max_in_flight]`. Every completed bulk attempt reports its round trip
//! time and what the [`policy`](super::policy) made of the answer
//! ([`Pressure`]). Once per window (about one average round trip):
//!
//! * back-pressure in the window (a whole-request 429/503, a per-item 429, a
//!   transport error or timeout), or a round trip well above the moving
//!   average (`mean + rtt_deviation_scale × deviation`), multiplies the limit
//!   by `decrease_ratio` (at least −1, never below 1);
//! * otherwise, if the limit was actually used (workers busy reached it) and
//!   the round trip was not above that threshold, the limit grows by one.
//!
//! At most one change per window: a burst of 429s from one overloaded moment
//! costs one decrease, not one per request. A decrease cancels nothing: busy
//! workers keep their slot until their batch is final, and no new one starts
//! until fewer than the new limit are busy.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::policy::Pressure;
use crate::sink::config::{AdaptiveConfig, ConcurrencyMode, ElasticsearchConfig};
use crate::telemetry;

/// The AIMD controller's parameters (`elasticsearch.adaptive.*`, and
/// `elasticsearch.max_in_flight` as the upper bound).
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub initial: usize,
    pub max: usize,
    pub decrease_ratio: f64,
    pub ewma_alpha: f64,
    pub rtt_deviation_scale: f64,
}

impl Params {
    pub fn new(adaptive: &AdaptiveConfig, max_in_flight: usize) -> Params {
        Params {
            initial: adaptive.initial.clamp(1, max_in_flight),
            max: max_in_flight,
            decrease_ratio: adaptive.decrease_ratio,
            ewma_alpha: adaptive.ewma_alpha,
            rtt_deviation_scale: adaptive.rtt_deviation_scale,
        }
    }
}

/// An exponentially weighted moving average of round trips, with its
/// deviation (the square root of the weighted variance).
#[derive(Debug, Clone, Copy)]
struct Ewma {
    mean: f64,
    variance: f64,
}

impl Ewma {
    fn update(&mut self, x: f64, alpha: f64) {
        let diff = x - self.mean;
        self.mean += alpha * diff;
        self.variance = (1.0 - alpha) * (self.variance + alpha * diff * diff);
    }

    fn threshold(&self, scale: f64) -> f64 {
        self.mean + scale * self.variance.sqrt()
    }
}

/// The AIMD state machine, without clocks or tasks: it is told the time.
#[derive(Debug)]
pub struct Aimd {
    params: Params,
    limit: usize,
    /// The average round trip of past windows.
    past: Option<Ewma>,
    /// When the current window ends; `None` until the first answer.
    window_end: Option<Instant>,
    /// Round trips of normal answers in the current window.
    rtt_sum: f64,
    rtt_count: u32,
    back_pressure: bool,
    reached_limit: bool,
}

impl Aimd {
    pub fn new(params: Params) -> Aimd {
        Aimd {
            params,
            limit: params.initial.clamp(1, params.max),
            past: None,
            window_end: None,
            rtt_sum: 0.0,
            rtt_count: 0,
            back_pressure: false,
            reached_limit: false,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A worker started; `busy` of them now, itself included.
    pub fn started(&mut self, busy: usize) {
        if busy >= self.limit {
            self.reached_limit = true;
        }
    }

    /// A bulk attempt that took `rtt` ended at `now`, with `busy` workers
    /// still holding a slot. Returns the limit, changed or not.
    pub fn completed(&mut self, now: Instant, rtt: Duration, pressure: Pressure, busy: usize) -> usize {
        let rtt = rtt.as_secs_f64();
        match pressure {
            Pressure::Normal => {
                self.rtt_sum += rtt;
                self.rtt_count += 1;
                if self.past.is_none() {
                    self.past = Some(Ewma { mean: rtt, variance: 0.0 });
                }
            }
            Pressure::Back => self.back_pressure = true,
            Pressure::Unrelated => return self.limit,
        }
        // The first answer ends the first window: it gives the first average.
        if matches!(self.window_end, Some(end) if now < end) {
            return self.limit;
        }
        self.end_window(now, rtt, busy);
        self.limit
    }

    fn window(past: Option<Ewma>, rtt: f64) -> Duration {
        Duration::from_secs_f64(past.map_or(rtt, |p| p.mean).max(0.0))
    }

    fn end_window(&mut self, now: Instant, last_rtt: f64, busy: usize) {
        let current = (self.rtt_count > 0).then(|| self.rtt_sum / f64::from(self.rtt_count));
        let threshold = self.past.map(|p| p.threshold(self.params.rtt_deviation_scale));
        let slow = matches!((current, threshold), (Some(c), Some(t)) if c > t);
        if self.back_pressure || slow {
            let decreased = (self.limit as f64 * self.params.decrease_ratio) as usize;
            self.limit = decreased.min(self.limit - 1).max(1);
        } else if self.reached_limit && current.is_some() && self.limit < self.params.max {
            self.limit += 1;
        }
        if let (Some(c), Some(past)) = (current, self.past.as_mut()) {
            past.update(c, self.params.ewma_alpha);
        }
        self.window_end = Some(now + Self::window(self.past, last_rtt));
        self.rtt_sum = 0.0;
        self.rtt_count = 0;
        self.back_pressure = false;
        // Workers busy all through the next window use the limit without starting.
        self.reached_limit = busy >= self.limit;
    }
}

/// The slots bulk workers hold while their batch is not final: a counter
/// against a limit, fixed or adaptive.
pub struct Concurrency {
    state: Mutex<State>,
    /// Woken when a slot is freed or the limit grows.
    changed: Notify,
}

struct State {
    busy: usize,
    limit: Limit,
}

enum Limit {
    Fixed(usize),
    Adaptive(Aimd),
}

impl Limit {
    fn value(&self) -> usize {
        match self {
            Limit::Fixed(n) => *n,
            Limit::Adaptive(aimd) => aimd.limit(),
        }
    }
}

impl Concurrency {
    pub fn new(es: &ElasticsearchConfig) -> Arc<Concurrency> {
        let limit = match es.concurrency {
            ConcurrencyMode::Fixed => Limit::Fixed(es.max_in_flight),
            ConcurrencyMode::Adaptive => Limit::Adaptive(Aimd::new(Params::new(&es.adaptive, es.max_in_flight))),
        };
        telemetry::metrics().es_concurrency_limit.set(limit.value() as i64);
        Arc::new(Concurrency { state: Mutex::new(State { busy: 0, limit }), changed: Notify::new() })
    }

    pub fn limit(&self) -> usize {
        self.state.lock().expect("concurrency poisoned").limit.value()
    }

    /// Waits for a free slot; held until the [`Slot`] is dropped.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        self.until(|state| {
            if state.busy >= state.limit.value() {
                return false;
            }
            state.busy += 1;
            if let Limit::Adaptive(aimd) = &mut state.limit {
                aimd.started(state.busy);
            }
            true
        })
        .await;
        Slot { owner: self.clone() }
    }

    /// Waits until no worker holds a slot.
    pub fn idle(&self) -> impl Future<Output = ()> + '_ {
        self.until(|state| state.busy == 0)
    }

    async fn until(&self, mut ready: impl FnMut(&mut State) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before checking, so a wake-up in between is not lost.
            changed.as_mut().enable();
            if ready(&mut self.state.lock().expect("concurrency poisoned")) {
                return;
            }
            changed.await;
        }
    }

    /// One bulk attempt's round trip and what the policy made of its answer.
    pub fn record(&self, rtt: Duration, pressure: Pressure) {
        let mut state = self.state.lock().expect("concurrency poisoned");
        let busy = state.busy;
        if let Limit::Adaptive(aimd) = &mut state.limit {
            let before = aimd.limit();
            let after = aimd.completed(Instant::now(), rtt, pressure, busy);
            if after != before {
                telemetry::metrics().es_concurrency_limit.set(after as i64);
                if after > before {
                    self.changed.notify_waiters();
                }
            }
        }
    }
}

/// A busy worker's slot.
pub struct Slot {
    owner: Arc<Concurrency>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.owner.state.lock().expect("concurrency poisoned").busy -= 1;
        self.owner.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn params(initial: usize, max: usize, decrease_ratio: f64) -> Params {
        Params { initial, max, decrease_ratio, ewma_alpha: 0.4, rtt_deviation_scale: 2.5 }
    }

    /// Drives an [`Aimd`] through scripted windows: in each, `busy` workers
    /// start, then one answer per `pressure` arrives, each after a round trip
    /// of `rtt`, the last one just after the window's end.
    struct Script {
        aimd: Aimd,
        now: Instant,
    }

    impl Script {
        fn new(p: Params) -> Script {
            Script { aimd: Aimd::new(p), now: Instant::now() }
        }

        fn window(&mut self, busy: usize, rtt: Duration, pressure: &[Pressure]) -> usize {
            for b in 1..=busy {
                self.aimd.started(b);
            }
            for (i, p) in pressure.iter().enumerate() {
                self.now += MS / 100;
                if i + 1 == pressure.len() {
                    if let Some(end) = self.aimd.window_end {
                        self.now = self.now.max(end + MS / 100);
                    }
                }
                self.aimd.completed(self.now, rtt, *p, busy);
            }
            self.aimd.limit()
        }

        fn fine(&mut self, busy: usize, rtt: Duration) -> usize {
            self.window(busy, rtt, &vec![Pressure::Normal; busy.max(1)])
        }
    }

    #[test]
    fn grows_by_one_per_window_to_the_max_when_fast_and_saturated() {
        let mut s = Script::new(params(1, 8, 0.9));
        let mut limits = Vec::new();
        for _ in 0..12 {
            let busy = s.aimd.limit();
            limits.push(s.fine(busy, 20 * MS));
        }
        assert_eq!(limits, [2, 3, 4, 5, 6, 7, 8, 8, 8, 8, 8, 8]);
    }

    #[test]
    fn does_not_grow_when_the_limit_is_not_used() {
        let mut s = Script::new(params(2, 8, 0.9));
        for _ in 0..20 {
            assert_eq!(s.fine(1, 20 * MS), 2, "one busy worker of two allowed");
        }
    }

    #[test]
    fn backs_off_multiplicatively_on_429s() {
        let mut s = Script::new(params(16, 16, 0.5));
        s.fine(16, 20 * MS);
        assert_eq!(s.aimd.limit(), 16, "at the max");
        let mut limits = Vec::new();
        for _ in 0..5 {
            let busy = s.aimd.limit();
            limits.push(s.window(busy, 20 * MS, &vec![Pressure::Back; busy]));
        }
        assert_eq!(limits, [8, 4, 2, 1, 1], "halves per window, never below 1");

        // With Vector's ratio: 10% off per window, at least one.
        let mut s = Script::new(params(10, 10, 0.9));
        let limits: Vec<usize> = (0..4).map(|_| s.window(10, 20 * MS, &[Pressure::Back])).collect();
        assert_eq!(limits, [9, 8, 7, 6]);
    }

    #[test]
    fn one_decrease_per_window_however_many_429s() {
        let mut s = Script::new(params(8, 8, 0.5));
        s.fine(8, 20 * MS);
        // Eight back-pressured answers within one round trip: one decrease.
        assert_eq!(s.window(8, 20 * MS, &[Pressure::Back; 8]), 4);
        // A per-item 429 mixed with normal answers still counts, once.
        assert_eq!(s.window(4, 20 * MS, &[Pressure::Normal, Pressure::Back, Pressure::Normal, Pressure::Back]), 2);
    }

    #[test]
    fn never_below_one() {
        let mut s = Script::new(params(1, 4, 0.1));
        for _ in 0..5 {
            assert_eq!(s.window(1, 20 * MS, &[Pressure::Back, Pressure::Back]), 1);
        }
    }

    #[test]
    fn a_round_trip_well_above_the_average_decreases_and_a_steady_one_does_not() {
        let mut s = Script::new(params(1, 8, 0.5));
        // RTT jitters between 18 and 22 ms: the deviation learns that.
        for i in 0..10 {
            let busy = s.aimd.limit();
            s.fine(busy, if i % 2 == 0 { 18 * MS } else { 22 * MS });
        }
        assert_eq!(s.aimd.limit(), 8, "jitter within the deviation is no reason to back off");
        // Ten times slower: Elasticsearch is queueing.
        assert_eq!(s.fine(8, 200 * MS), 4);
    }

    #[test]
    fn answers_unrelated_to_load_change_nothing() {
        let mut s = Script::new(params(3, 8, 0.5));
        for _ in 0..5 {
            assert_eq!(s.window(3, 20 * MS, &[Pressure::Unrelated; 3]), 3);
        }
    }

    fn es(mode: ConcurrencyMode, initial: usize, max: usize) -> ElasticsearchConfig {
        let mut es = ElasticsearchConfig { concurrency: mode, max_in_flight: max, ..Default::default() };
        es.adaptive.initial = initial;
        es
    }

    #[tokio::test]
    async fn a_decrease_waits_for_busy_workers_instead_of_cancelling_them() {
        let c = Concurrency::new(&es(ConcurrencyMode::Adaptive, 4, 4));
        let mut slots = Vec::new();
        for _ in 0..4 {
            slots.push(c.acquire().await);
        }
        // Back-pressure ends a first window at once (no past round trip yet: the window is 0).
        c.record(Duration::ZERO, Pressure::Back);
        assert_eq!(c.limit(), 3);
        // All four keep their slot; a fifth waits until only two are busy.
        let waiting = tokio::spawn({
            let c = c.clone();
            async move { c.acquire().await }
        });
        drop(slots.pop());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "three busy, limit three");
        drop(slots.pop());
        let slot = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        drop(slot);
        drop(slots);
        tokio::time::timeout(Duration::from_secs(5), c.idle()).await.unwrap();
    }

    #[tokio::test]
    async fn fixed_keeps_max_in_flight_whatever_the_answers() {
        let c = Concurrency::new(&es(ConcurrencyMode::Fixed, 1, 3));
        let _slots = [c.acquire().await, c.acquire().await, c.acquire().await];
        for _ in 0..10 {
            c.record(Duration::ZERO, Pressure::Back);
        }
        assert_eq!(c.limit(), 3);
    }
}
