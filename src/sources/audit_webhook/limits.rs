//! Per-client rate limit on the webhook (governor), off unless configured.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// Who a request comes from, for per-client limits and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientIdentity {
    /// The verified client certificate's subject CN (or first SAN).
    Certificate(String),
    /// The index of the bearer token in the tokens file (never the token itself).
    Token(usize),
    Address(IpAddr),
}

impl std::fmt::Display for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientIdentity::Certificate(name) => write!(f, "cert:{name}"),
            ClientIdentity::Token(i) => write!(f, "token#{}", i + 1),
            ClientIdentity::Address(ip) => write!(f, "ip:{ip}"),
        }
    }
}

/// Events per second per client, with a burst.
pub struct ClientLimiter {
    limiter: RateLimiter<ClientIdentity, DefaultKeyedStateStore<ClientIdentity>, DefaultClock>,
    burst: NonZeroU32,
}

impl ClientLimiter {
    pub fn new(per_second: NonZeroU32, burst: Option<NonZeroU32>) -> Self {
        let burst = burst.unwrap_or(per_second);
        ClientLimiter { limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)), burst }
    }

    /// `Ok` if `events` may pass now; otherwise how long until they may.
    /// A batch larger than the burst can never pass at once; it is admitted when
    /// the bucket is full, which keeps the long-run rate.
    pub fn check(&self, who: &ClientIdentity, events: u32) -> Result<(), Duration> {
        let n = NonZeroU32::new(events.clamp(1, self.burst.get())).expect("clamped to at least 1");
        match self.limiter.check_key_n(who, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
            Err(_) => unreachable!("n is clamped to the burst"),
        }
    }

    /// Forget clients that have been idle long enough to have a full bucket.
    pub fn prune(&self) {
        self.limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_limit_is_per_client() {
        let l = ClientLimiter::new(NonZeroU32::new(10).unwrap(), Some(NonZeroU32::new(10).unwrap()));
        let a = ClientIdentity::Certificate("a".into());
        let b = ClientIdentity::Certificate("b".into());
        assert!(l.check(&a, 10).is_ok());
        let wait = l.check(&a, 5).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(l.check(&b, 10).is_ok());
    }
}
