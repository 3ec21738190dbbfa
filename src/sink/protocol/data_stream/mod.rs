//! Data streams, opt-in (`elasticsearch.data_stream.enabled`): each source
//! writes to one data stream, named by its `elasticsearch.indices` entry,
//! whose backing indices roll over by age or size (the lifecycle policy's
//! `rollover_max_age`, `rollover_max_primary_shard_size`).
//!
//! Exactly-once rests on a resend meeting a 409. In a data stream a
//! document's `_id` is unique only inside one backing index, and writes go to
//! the newest one, so a resend after a rollover would be written a second
//! time. A resend happens when an earlier attempt's answer was lost (a
//! timeout, a reset, a kill -9 before the spool or checkpoint recorded it),
//! and such a document is always older than the rollover it crosses: it
//! was first sent after its own event time. So:
//!
//! * **Before the write**, a document whose `@timestamp` is earlier than the
//!   write index's creation plus `resend_check_margin` is looked up (a
//!   real-time `_mget`, no refresh needed) in the backing indices that were the
//!   write index at or after its event time less the margin. Found: it is not
//!   sent again and counts as a duplicate, like a 409. Live traffic is newer
//!   than the last rollover and costs nothing; a backlog older than a rollover
//!   costs one `_mget` per batch. The margin covers clocks that stamp events
//!   ahead of the server's.
//! * **After the write**, an item the server wrote to a backing index other
//!   than the write index the lookup assumed (a rollover in between) is looked
//!   up in the older ones; found there, the copy just written is deleted
//!   again. Only older ones, so that of two copies written at once the oldest
//!   is always kept.
//!
//! What is left is said in the operations guide: a duplicate is still
//! possible when an event's clock runs ahead of the server's by more than the
//! margin, when the server completes an attempt the gateway had given up on
//! (`request_timeout`) after the lookups of its resend, or when the gateway is
//! killed between a write across an unseen rollover and its deletion.

mod streams;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::document::dead_letter::is_dead_letter;
use crate::document::index_pattern::IndexPattern;
use crate::setting::{key_error, ConfigError};

pub use streams::{Assumed, Streams};

/// `elasticsearch.data_stream`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataStreamConfig {
    /// Write each source to the data stream its `elasticsearch.indices` entry names.
    #[serde(default)]
    pub enabled: bool,
    /// How far ahead of the server's clock an event's time may be and its
    /// resend after a rollover still be found.
    #[serde(default = "default_margin", with = "humantime_serde")]
    pub resend_check_margin: Duration,
}

fn default_margin() -> Duration {
    Duration::from_secs(300)
}

impl Default for DataStreamConfig {
    fn default() -> Self {
        DataStreamConfig { enabled: false, resend_check_margin: default_margin() }
    }
}

impl DataStreamConfig {
    /// A data stream is one name: an entry of `elasticsearch.indices` (its key,
    /// its pattern) that changes with the date cannot name one.
    pub fn validate<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a str, &'a IndexPattern)>,
    ) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        for (key, pattern) in entries {
            if pattern.is_dated() {
                return Err(key_error(
                    &format!("elasticsearch.indices.{key}"),
                    format!(
                        "{pattern} changes with the date (%Y/%m/%d), but elasticsearch.data_stream.enabled is on: \
                         name one data stream instead, e.g. logs-kubernetes.{key}-klg (its backing indices \
                         roll over by elasticsearch.lifecycle)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A document's event time (`@timestamp`), in milliseconds since the epoch;
/// `None` when the body has none that reads as RFC 3339, so the lookup takes
/// it as older than anything. A dead letter is stamped when it is made, so
/// one made again for a resend is newer than its first copy: it is `None`
/// too (dead letters are few; looking each up costs little).
pub fn event_millis(body: &[u8]) -> Option<i64> {
    if is_dead_letter(body) {
        return None;
    }
    const KEY: &[u8] = b"\"@timestamp\":\"";
    let start = memchr::memmem::find(body, KEY)? + KEY.len();
    let len = memchr::memchr(b'"', &body[start..])?;
    let text = std::str::from_utf8(&body[start..start + len]).ok()?;
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_is_read_from_the_timestamp_field() {
        let body = br#"{"@timestamp":"2026-12-07T10:00:00.123456789Z","message":"x"}"#;
        assert_eq!(event_millis(body), Some(1_796_637_600_123));
        assert_eq!(event_millis(br#"{"message":"no time"}"#), None);
        assert_eq!(event_millis(br#"{"@timestamp":"yesterday"}"#), None);
        let dead_letter =
            br#"{"@timestamp":"2026-12-07T10:00:00Z","event":{"dataset":"kube_log_gateway.dead_letter"}}"#;
        assert_eq!(event_millis(dead_letter), None, "a dead letter is stamped when made: always looked up");
    }

    #[test]
    fn a_dated_entry_is_refused_with_data_streams_on() {
        let dated = IndexPattern::parse("audit-%Y.%m.%d").unwrap();
        let plain = IndexPattern::parse("logs-kubernetes.audit_logs-default").unwrap();
        let on = DataStreamConfig { enabled: true, ..Default::default() };
        let err = on.validate([("audit", &dated)]).unwrap_err().to_string();
        assert!(err.contains("elasticsearch.indices.audit"), "{err}");
        assert!(err.contains("elasticsearch.data_stream.enabled"), "{err}");
        assert!(DataStreamConfig::default().validate([("audit", &dated)]).is_ok());
        assert!(on.validate([("audit", &plain), ("dead_letter", &plain)]).is_ok());
    }
}
