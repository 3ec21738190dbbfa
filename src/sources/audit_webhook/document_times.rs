//! Audit timestamps on their way to `date_nanos` fields (docs/fields.md,
//! "Timestamps"): read as sent when Elasticsearch can, rewritten in UTC when
//! it would refuse a valid RFC 3339 time, replaced when out of its range.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};

/// What became of a timestamp on its way to a `date_nanos` field.
/// `@timestamp` for an event whose `stageTimestamp` is outside `date_nanos`. It
/// must depend on the event alone, never on when it arrived: the index is chosen
/// from it, and a resend on another day must land in the same index to be a 409.
/// The event's own `requestReceivedTimestamp` when that one is usable, else the
/// nearest end of the range (1970-01-01 or 2262-04-11).
pub(super) fn in_range_stand_in(sent: &str, received: Option<&Stamp>) -> DateTime<Utc> {
    match received {
        Some(Stamp::AsSent(t) | Stamp::Normalized(t, _)) => *t,
        _ => {
            let before_1970 = sent.get(..4).and_then(|y| y.parse::<u32>().ok()).is_some_and(|y| y < 1970);
            if before_1970 {
                DateTime::UNIX_EPOCH
            } else {
                DateTime::from_timestamp_nanos(i64::MAX)
            }
        }
    }
}

pub(super) enum Stamp {
    /// Elasticsearch reads it as sent.
    AsSent(DateTime<Utc>),
    /// Valid RFC 3339 that Elasticsearch would refuse (`t`, `z`, a space for
    /// `T`, a leap second, more than 9 fractional digits): rewritten in UTC.
    Normalized(DateTime<Utc>, String),
    /// Outside what `date_nanos` holds (1970 to 2262-04-11).
    OutOfRange,
}

/// Parses an RFC 3339 time and decides how Elasticsearch can take it; an error
/// names the field when it is not a time at all.
pub(super) fn stamp(field: &str, sent: &str) -> Result<Stamp, String> {
    let not_a_time = |e: &dyn std::fmt::Display| format!("field `{field}` {sent:?} is not an RFC 3339 time: {e}");
    // RFC 3339 §5.6 allows `t`/`z` and (NOTE) a space for `T`; chrono may not.
    let canonical: Cow<str> = match sent.as_bytes() {
        [.., b'z'] | [_, _, _, _, _, _, _, _, _, _, b't' | b' ', ..] => {
            let mut b = sent.as_bytes().to_vec();
            if b.len() > 10 && matches!(b[10], b't' | b' ') {
                b[10] = b'T';
            }
            if let Some(last @ b'z') = b.last_mut() {
                *last = b'Z';
            }
            Cow::Owned(String::from_utf8(b).map_err(|e| not_a_time(&e))?)
        }
        _ => Cow::Borrowed(sent),
    };
    let mut time = DateTime::parse_from_rfc3339(&canonical).map_err(|e| not_a_time(&e))?.with_timezone(&Utc);
    // chrono keeps a leap second (`:60`) as a nanosecond count past 10⁹;
    // Elasticsearch has no leap seconds. It becomes the last instant of `:59`.
    let leap = time.nanosecond() >= 1_000_000_000;
    if leap {
        time = time.with_nanosecond(999_999_999).expect("999999999 ns is a valid time");
    }
    if time.timestamp_nanos_opt().is_none_or(|n| n < 0) {
        return Ok(Stamp::OutOfRange);
    }
    if !leap && matches!(canonical, Cow::Borrowed(_)) && at_most_nanos(sent) {
        return Ok(Stamp::AsSent(time));
    }
    Ok(Stamp::Normalized(time, time.to_rfc3339_opts(SecondsFormat::AutoSi, true)))
}

/// Whether a parsed RFC 3339 time has at most 9 fractional digits (what
/// `date_nanos` parses).
fn at_most_nanos(s: &str) -> bool {
    match s.as_bytes().get(19) {
        Some(b'.') => s.as_bytes()[20..].iter().take_while(|b| b.is_ascii_digit()).count() <= 9,
        _ => true,
    }
}
