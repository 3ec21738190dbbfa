//! One global limit on documents per second toward Elasticsearch (governor),
//! shared by every bulk worker; off unless configured.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Documents per second toward Elasticsearch, shared by every bulk worker.
pub struct DocLimiter {
    limiter: DefaultDirectRateLimiter,
    burst: NonZeroU32,
}

impl DocLimiter {
    pub fn new(per_second: NonZeroU32) -> Self {
        DocLimiter { limiter: RateLimiter::direct(Quota::per_second(per_second)), burst: per_second }
    }

    /// Waits until `n` documents may be sent.
    pub async fn until_ready(&self, mut n: usize) {
        while n > 0 {
            let chunk = n.min(self.burst.get() as usize);
            let chunk_nz = NonZeroU32::new(chunk as u32).expect("chunk > 0");
            let _ = self.limiter.until_n_ready(chunk_nz).await;
            n -= chunk;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn doc_limiter_spreads_large_batches() {
        let l = DocLimiter::new(NonZeroU32::new(1000).unwrap());
        let start = std::time::Instant::now();
        l.until_ready(1500).await; // one burst now, 500 more after ~0.5 s
        assert!(start.elapsed() >= Duration::from_millis(400));
    }
}
