//! The journald source's own counters (`klg_journald_*`); delivery outcomes
//! are counted by the sink under `klg_documents_total{source="journald"}`.

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;

use crate::telemetry;

pub struct JournaldMetrics {
    pub entries_read: Counter,
    pub cursor_saves: Counter,
    pub cursor_save_errors: Counter,
    pub cursors_lost: Counter,
    pub entries_lost: Counter,
    pub read_errors: Counter,
}

/// Registered with the process-wide registry on first use.
pub fn metrics() -> &'static JournaldMetrics {
    static METRICS: OnceLock<JournaldMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = JournaldMetrics {
            entries_read: Counter::default(),
            cursor_saves: Counter::default(),
            cursor_save_errors: Counter::default(),
            cursors_lost: Counter::default(),
            entries_lost: Counter::default(),
            read_errors: Counter::default(),
        };
        telemetry::register(|r| {
            r.register("journald_entries_read", "Journal entries read and normalized", m.entries_read.clone());
            r.register("journald_cursor_saves", "Cursor files written after delivery", m.cursor_saves.clone());
            r.register("journald_cursor_save_errors", "Cursor files that could not be written", m.cursor_save_errors.clone());
            r.register(
                "journald_cursors_lost",
                "Saved cursors whose entry no longer exists (vacuumed) or that were invalid: reading restarted at the oldest entry",
                m.cursors_lost.clone(),
            );
            r.register(
                "journald_entries_lost",
                "Journal entries (of any unit) removed from the journal before they were read: numbers missing from the journal's sequence between two entries read",
                m.entries_lost.clone(),
            );
            r.register("journald_read_errors", "Errors reading the journal (retried)", m.read_errors.clone());
        });
        m
    })
}
