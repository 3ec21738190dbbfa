//! Time as documents write it, in one place (chrono): RFC 3339 in UTC with a
//! `Z`, and the day-partitioned index of an event's own time.

use chrono::{DateTime, SecondsFormat, Utc};

use super::index_pattern::IndexPattern;

/// `2026-11-09T06:14:42.535854Z`: the precision journald and dead letters carry.
pub fn rfc3339_micros(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `event.ingested` for now, in milliseconds: the sink stamps every document
/// with the time it sends it to Elasticsearch.
pub fn ingested_now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Microseconds since the Unix epoch as a UTC time (the epoch if out of range).
pub fn from_usec(usec: u64) -> DateTime<Utc> {
    i64::try_from(usec).ok().and_then(DateTime::from_timestamp_micros).unwrap_or_default()
}

/// The index for an event time, formatted once per day: every event of one
/// day goes to one index, and a source writes thousands of events a second.
pub struct DayIndex {
    pattern: IndexPattern,
    /// (days since the epoch, index name) of the last event.
    last: Option<(i64, String)>,
}

impl DayIndex {
    pub fn new(pattern: IndexPattern) -> Self {
        DayIndex { pattern, last: None }
    }

    pub fn index_for(&mut self, time: DateTime<Utc>) -> String {
        let day = time.timestamp().div_euclid(86_400);
        match &self.last {
            Some((d, name)) if *d == day => name.clone(),
            _ => {
                let name = self.pattern.index_for(time);
                self.last = Some((day, name.clone()));
                name
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn micros_from_usec() {
        assert_eq!(rfc3339_micros(from_usec(1_762_668_882_535_854)), "2025-11-09T06:14:42.535854Z");
        assert_eq!(rfc3339_micros(from_usec(0)), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn day_index_changes_at_midnight_utc() {
        let mut d = DayIndex::new(IndexPattern::parse("k-%Y.%m.%d").unwrap());
        let t = Utc.with_ymd_and_hms(2026, 1, 9, 23, 59, 59).unwrap();
        assert_eq!(d.index_for(t), "k-2026.01.09");
        assert_eq!(d.index_for(t + chrono::Duration::seconds(1)), "k-2026.01.10");
        assert_eq!(d.index_for(Utc.with_ymd_and_hms(1969, 12, 31, 23, 0, 0).unwrap()), "k-1969.12.31");
    }
}
