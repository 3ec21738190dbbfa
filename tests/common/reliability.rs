//! The reliability table: every fault test reports what it sent, what the gateway
//! acknowledged, what Elasticsearch stored, and what was lost or stored twice.
//! With `KLG_RELIABILITY_LOG` set (scripts/test.sh sets it), each report is one
//! JSON line appended to that file; test.sh prints them as the table that
//! docs/benchmarks.md ("Reliability") is copied from. Without it, nothing is written.

use std::io::Write;

/// One fault run's counts. `acknowledged` is what the gateway promised to keep
/// (webhook 200s; for pull sources, what was written to the journal or files).
pub struct Reliability<'a> {
    pub fault: &'a str,
    pub sent: u64,
    pub acknowledged: u64,
    pub stored: u64,
    pub duplicated: u64,
    /// Refused for good and kept elsewhere (the dead-letter index or file, the
    /// quarantine directory), with a counter: not lost, but not in the index.
    pub set_aside: u64,
}

impl Reliability<'_> {
    /// Appends the report to `KLG_RELIABILITY_LOG`, if set.
    pub fn report(&self) {
        let Ok(path) = std::env::var("KLG_RELIABILITY_LOG") else { return };
        let lost = self.acknowledged.saturating_sub(self.stored + self.set_aside);
        let pressure = std::env::var("KLG_PRESSURE").map(|v| v == "1").unwrap_or(false);
        let line = serde_json::json!({
            "fault": self.fault,
            "pressure": pressure,
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "stored": self.stored,
            "set_aside": self.set_aside,
            "lost": lost,
            "duplicated": self.duplicated,
        });
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            let _ = writeln!(f, "{line}");
        }
    }
}
