//! The gateway's Prometheus metrics: what the tests wait on to know that the
//! gateway has done its work before they assert that something did not happen.

use std::time::Duration;

use super::es::http;
use super::wait::poll;

/// The value of metric `name` in a Prometheus text exposition: the sum over
/// the label sets that have every one of the comma-separated `labels` (e.g.
/// `source="audit",outcome="created"`; "" for all).
pub fn metric_in(text: &str, name: &str, labels: &str) -> f64 {
    let wanted: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter(|l| wanted.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        // An empty float sum is -0.0; a metric not yet written is 0.
        + 0.0
}

/// A metric's value from the gateway's /metrics on `admin` (`host:port`).
pub async fn metric(admin: &str, name: &str, labels: &str) -> f64 {
    let text = http().get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    metric_in(&text, name, labels)
}

/// Polls the metric until `done(value)`; returns the value. Panics after
/// `timeout` with the last value.
pub async fn wait_for_metric(
    admin: &str,
    name: &str,
    labels: &str,
    timeout: Duration,
    done: impl Fn(f64) -> bool,
) -> f64 {
    let (v, ok) = poll(timeout, Duration::from_millis(100), || metric(admin, name, labels), |v| done(*v)).await;
    assert!(ok, "timed out after {timeout:?} waiting on {name}{{{labels}}}: last value {v}");
    v
}

/// Documents the sink has finished (written, found already there or
/// dead-lettered) for `source` ("" for every source): not the retried ones.
pub async fn documents_finished(admin: &str, source: &str) -> f64 {
    let text = http().get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    let source = if source.is_empty() { String::new() } else { format!("source=\"{source}\",") };
    ["created", "duplicate", "dead_lettered", "dead_letter_file"]
        .iter()
        .map(|o| metric_in(&text, "klg_documents_total", &format!("{source}outcome=\"{o}\"")))
        .sum()
}
