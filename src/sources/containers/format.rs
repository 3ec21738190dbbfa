//! The two on-disk line formats, detected per file from its first line.
//!
//! * CRI (containerd, CRI-O): `<RFC3339Nano time> <stdout|stderr> <P|F>[:tags] <message>`;
//!   the runtime splits long lines into `P` (partial) pieces ended by an `F`.
//! * docker json-file: `{"log":"…\n","stream":"stdout","time":"…"}`; dockerd splits
//!   lines at 16 KiB, and only the last piece's `log` ends with `\n`.
//!
//! Parsing borrows from the read buffer: a CRI line costs no allocation.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Cri,
    Docker,
}

impl Format {
    /// docker json-file lines are JSON objects; CRI lines start with a time.
    pub fn detect(first_line: &[u8]) -> Format {
        match first_line.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Format::Docker,
            _ => Format::Cri,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
    fn parse(s: &[u8]) -> Option<Stream> {
        match s {
            b"stdout" => Some(Stream::Stdout),
            b"stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// One physical line, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// The line's own time, exactly as written (full precision, original offset).
    pub time_text: Cow<'a, str>,
    pub time: DateTime<Utc>,
    pub stream: Stream,
    /// More pieces of the same message follow (CRI `P`, docker without `\n`).
    pub partial: bool,
    pub message: Cow<'a, [u8]>,
}

/// Why a line could not be parsed. The line is still kept, raw and flagged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not a CRI log line: {0}")]
    Cri(&'static str),
    #[error("not a docker json-file line: {0}")]
    Json(String),
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("stream {0:?} is neither stdout nor stderr")]
    Stream(String),
    #[error("time {0:?} is not an RFC 3339 timestamp")]
    Time(String),
}

pub fn parse(format: Format, line: &[u8]) -> Result<Line<'_>, LineError> {
    match format {
        Format::Cri => parse_cri(line),
        Format::Docker => parse_docker(line),
    }
}

pub fn parse_cri(line: &[u8]) -> Result<Line<'_>, LineError> {
    let sp1 = memchr::memchr(b' ', line).ok_or(LineError::Cri("no space after the time"))?;
    let time_bytes = &line[..sp1];
    let time_text = std::str::from_utf8(time_bytes).map_err(|_| LineError::Cri("the time is not UTF-8"))?;
    let time = parse_time(time_text).ok_or_else(|| LineError::Time(time_text.to_string()))?;
    let rest = &line[sp1 + 1..];
    let sp2 = memchr::memchr(b' ', rest).ok_or(LineError::Cri("no stream"))?;
    let stream = Stream::parse(&rest[..sp2])
        .ok_or_else(|| LineError::Stream(String::from_utf8_lossy(&rest[..sp2]).into_owned()))?;
    let rest = &rest[sp2 + 1..];
    // The tag field ends at a space or at the end of an empty message's line.
    let (tags, message) = match memchr::memchr(b' ', rest) {
        Some(sp3) => (&rest[..sp3], &rest[sp3 + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let partial = match tags.split(|b| *b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err(LineError::Cri("the tag is neither P nor F")),
    };
    Ok(Line { time_text: Cow::Borrowed(time_text), time, stream, partial, message: Cow::Borrowed(message) })
}

#[derive(Deserialize)]
struct DockerLine<'a> {
    #[serde(borrow, default)]
    log: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stream: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
}

pub fn parse_docker(line: &[u8]) -> Result<Line<'_>, LineError> {
    let d: DockerLine<'_> = serde_json::from_slice(line).map_err(|e| LineError::Json(e.to_string()))?;
    let log = d.log.ok_or(LineError::Missing("log"))?;
    let stream_text = d.stream.ok_or(LineError::Missing("stream"))?;
    let stream = Stream::parse(stream_text.as_bytes()).ok_or_else(|| LineError::Stream(stream_text.to_string()))?;
    let time_text = d.time.ok_or(LineError::Missing("time"))?;
    let time = parse_time(&time_text).ok_or_else(|| LineError::Time(time_text.to_string()))?;
    let partial = !log.ends_with('\n');
    let message: Cow<'_, [u8]> = match log {
        Cow::Borrowed(s) => Cow::Borrowed(s.strip_suffix('\n').unwrap_or(s).as_bytes()),
        Cow::Owned(mut s) => {
            if s.ends_with('\n') {
                s.pop();
            }
            Cow::Owned(s.into_bytes())
        }
    };
    Ok(Line { time_text, time, stream, partial, message })
}

/// RFC 3339 with any number of fraction digits: a hand-written fast path for the
/// fixed layout runtimes write, chrono for anything else.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    fast_time(s.as_bytes()).or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc)))
}

fn fast_time(b: &[u8]) -> Option<DateTime<Utc>> {
    fn num(b: &[u8]) -> Option<i64> {
        let mut n = 0i64;
        for &c in b {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + (c - b'0') as i64;
        }
        Some(n)
    }
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b'T' && b[10] != b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (hour, min, sec) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + (b[i] - b'0') as u32;
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let v = num(&[*h1, *h2])? * 3600 + num(&[*m1, *m2])? * 60;
            if *sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day)?;
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset;
    DateTime::from_timestamp(secs, nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date; None if the day is not
/// in the month. Howard Hinnant's `days_from_civil`
/// (<https://howardhinnant.github.io/date_algorithms.html>): chrono's
/// `NaiveDate` round trip cost ≈ 5 % of the tail bench.
fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day > month_days {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_from_civil_matches_chrono() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for year in [0, 1, 1600, 1899, 1900, 1969, 1970, 1999, 2000, 2024, 2025, 2100, 2400, 9999] {
            for month in 1..=12 {
                for day in 1..=31 {
                    let want = chrono::NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32)
                        .map(|d| d.signed_duration_since(epoch).num_days());
                    assert_eq!(days_from_civil(year, month, day), want, "{year}-{month}-{day}");
                }
            }
        }
    }

    #[test]
    fn cri_lines() {
        let l = parse_cri(b"2024-03-01T10:11:12.123456789Z stderr P hello world").unwrap();
        assert_eq!(l.time_text, "2024-03-01T10:11:12.123456789Z");
        assert_eq!(l.time.timestamp_subsec_nanos(), 123_456_789);
        assert_eq!(l.stream, Stream::Stderr);
        assert!(l.partial);
        assert_eq!(&*l.message, b"hello world");
        let l = parse_cri(b"2024-03-01T10:11:12Z stdout F").unwrap();
        assert_eq!(&*l.message, b"");
        assert!(!l.partial);
        let l = parse_cri(b"2024-03-01T10:11:12.5+02:00 stdout F:x  two spaces").unwrap();
        assert_eq!(&*l.message, b" two spaces");
        assert_eq!(l.time.to_rfc3339(), "2024-03-01T08:11:12.500+00:00");
    }

    #[test]
    fn cri_errors() {
        assert!(matches!(parse_cri(b"garbage"), Err(LineError::Cri(_))));
        assert!(matches!(parse_cri(b"2024-03-01T10:11:12Z stdin F x"), Err(LineError::Stream(_))));
        assert!(matches!(parse_cri(b"yesterday stdout F x"), Err(LineError::Time(_))));
        assert!(matches!(parse_cri(b"2024-03-01T10:11:12Z stdout X x"), Err(LineError::Cri(_))));
    }

    #[test]
    fn docker_lines() {
        let l =
            parse_docker(br#"{"log":"a \"quoted\" line\n","stream":"stdout","time":"2024-03-01T10:11:12.000000001Z"}"#)
                .unwrap();
        assert_eq!(&*l.message, br#"a "quoted" line"#);
        assert!(!l.partial);
        let l = parse_docker(br#"{"log":"no newline","stream":"stderr","time":"2024-03-01T10:11:12Z"}"#).unwrap();
        assert!(l.partial);
        assert_eq!(l.stream, Stream::Stderr);
        assert!(matches!(parse_docker(b"{not json"), Err(LineError::Json(_))));
        assert_eq!(
            parse_docker(br#"{"log":"x\n","time":"2024-03-01T10:11:12Z"}"#).unwrap_err(),
            LineError::Missing("stream")
        );
    }

    #[test]
    fn fast_time_agrees_with_chrono() {
        for s in ["2024-02-29T23:59:59.999999999Z", "1999-12-31T23:00:00-05:30", "2026-11-22T03:20:56.1Z"] {
            let chrono = DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
            assert_eq!(fast_time(s.as_bytes()), Some(chrono), "{s}");
        }
        assert_eq!(parse_time("2024-13-01T00:00:00Z"), None);
    }

    #[test]
    fn detection() {
        assert_eq!(Format::detect(b"{\"log\":\"x\"}"), Format::Docker);
        assert_eq!(Format::detect(b"2024-03-01T10:11:12Z stdout F x"), Format::Cri);
    }
}
