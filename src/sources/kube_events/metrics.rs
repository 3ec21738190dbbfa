//! The Events source's own counters (`klg_events_*`); delivery outcomes are
//! counted by the sink under `klg_documents_total{source="events"}`.

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;

use crate::telemetry;

pub struct EventsMetrics {
    /// Event revisions read (listed or watched) and normalized.
    pub revisions_read: Counter,
    /// Full lists: at start without a resume point, and after 410 Gone.
    pub relists: Counter,
    /// Failed lists, watches or client set-ups, each retried after a backoff.
    pub watch_errors: Counter,
    pub resume_saves: Counter,
    pub resume_save_errors: Counter,
}

/// Registered with the process-wide registry on first use.
pub fn metrics() -> &'static EventsMetrics {
    static METRICS: OnceLock<EventsMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = EventsMetrics {
            revisions_read: Counter::default(),
            relists: Counter::default(),
            watch_errors: Counter::default(),
            resume_saves: Counter::default(),
            resume_save_errors: Counter::default(),
        };
        telemetry::register(|r| {
            r.register(
                "events_revisions_read",
                "Kubernetes Event revisions read and normalized",
                m.revisions_read.clone(),
            );
            r.register(
                "events_relists",
                "Full lists of Events: at start without a saved resourceVersion, and after 410 Gone",
                m.relists.clone(),
            );
            r.register(
                "events_watch_errors",
                "Failed lists, watches or API client set-ups of the Events source, each retried after a backoff",
                m.watch_errors.clone(),
            );
            r.register("events_resume_saves", "resourceVersion files written after delivery", m.resume_saves.clone());
            r.register(
                "events_resume_save_errors",
                "resourceVersion files that could not be written",
                m.resume_save_errors.clone(),
            );
        });
        m
    })
}
