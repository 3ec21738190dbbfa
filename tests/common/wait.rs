//! Waiting on a condition: the one polling loop of the tests. A test never
//! sleeps a fixed time to let something (not) happen; it waits for the
//! condition that shows the work was done.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `f` every `interval` until its value satisfies `done` or `timeout`
/// passes; returns the last value and whether it satisfied `done`.
pub async fn poll<T, F, Fut>(timeout: Duration, interval: Duration, mut f: F, done: impl Fn(&T) -> bool) -> (T, bool)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let start = Instant::now();
    loop {
        let v = f().await;
        if done(&v) {
            return (v, true);
        }
        if start.elapsed() > timeout {
            return (v, false);
        }
        tokio::time::sleep(interval).await;
    }
}

/// Waits until the (synchronous) condition holds; panics after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the async condition holds; panics after `timeout` with `what`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let (_, done) = poll(timeout, Duration::from_millis(100), &mut f, |done| *done).await;
    assert!(done, "timed out after {timeout:?} waiting for {what}");
}
