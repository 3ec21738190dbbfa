//! Physical lines → logical messages.
//!
//! Runtimes split long lines: CRI writes `P` pieces ended by an `F` piece, docker
//! json-file splits at 16 KiB and only the last piece ends with `\n`. Pieces of
//! stdout and stderr interleave freely, so each stream of each file has its own
//! pending message; nothing ever joins across files (a rotated file's dangling
//! piece is flushed, flagged, when the file is closed).
//!
//! A message is capped at `max_bytes`: the rest is dropped and the message flagged
//! `cut`. A dangling partial is sent flagged `partial` only when the file has been
//! fully read and no piece arrived for `timeout` — measured from the *last* piece,
//! so a slow writer of a 300 KB line is never cut in the middle.
//!
//! The checkpoint offset of a file never passes the start of a pending message
//! ([`Reassembler::safe_offset`]): after a restart, the message is re-read whole.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::format::{Line, Stream};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// Longer than `max_message_bytes`: the rest was dropped.
    pub cut: bool,
    /// The last piece never came (timeout, rotation, truncation).
    pub partial: bool,
    /// The line could not be parsed; `message` is the raw line.
    pub invalid: bool,
}

impl Flags {
    pub fn any(&self) -> bool {
        self.cut || self.partial || self.invalid
    }
}

/// One logical message, ready to normalize.
#[derive(Debug)]
pub struct Record<'a> {
    /// Byte offset of the message's first line in its file.
    pub offset: u64,
    pub time_text: Cow<'a, str>,
    pub time: DateTime<Utc>,
    pub stream: Option<Stream>,
    pub message: Cow<'a, [u8]>,
    pub flags: Flags,
    /// Why the line is invalid (only with `flags.invalid`).
    pub error: Option<String>,
}

#[derive(Debug)]
struct Pending {
    offset: u64,
    time_text: String,
    time: DateTime<Utc>,
    buf: Vec<u8>,
    cut: bool,
    last_piece: Instant,
}

#[derive(Debug)]
pub struct Reassembler {
    pending: [Option<Pending>; 2],
    max_bytes: usize,
    /// Bytes dropped by the size cap since the last call to [`Self::take_cut_bytes`].
    cut_bytes: u64,
}

impl Reassembler {
    pub fn new(max_bytes: usize) -> Self {
        Reassembler { pending: [None, None], max_bytes, cut_bytes: 0 }
    }

    /// Feeds one parsed line that started at `offset`; returns a finished message, if any.
    pub fn push<'a>(&mut self, line: Line<'a>, offset: u64, now: Instant) -> Option<Record<'a>> {
        let slot = &mut self.pending[line.stream.index()];
        match (slot.as_mut(), line.partial) {
            (None, false) => {
                // The common case: a whole line, borrowed straight from the read buffer.
                let mut message = line.message;
                let mut cut = false;
                if message.len() > self.max_bytes {
                    self.cut_bytes += (message.len() - self.max_bytes) as u64;
                    cut = true;
                    message = match message {
                        Cow::Borrowed(b) => Cow::Borrowed(&b[..self.max_bytes]),
                        Cow::Owned(mut v) => {
                            v.truncate(self.max_bytes);
                            Cow::Owned(v)
                        }
                    };
                }
                Some(Record {
                    offset,
                    time_text: line.time_text,
                    time: line.time,
                    stream: Some(line.stream),
                    message,
                    flags: Flags { cut, ..Flags::default() },
                    error: None,
                })
            }
            (None, true) => {
                let mut p = Pending {
                    offset,
                    time_text: line.time_text.into_owned(),
                    time: line.time,
                    buf: Vec::with_capacity(line.message.len() * 2),
                    cut: false,
                    last_piece: now,
                };
                append(&mut p, &line.message, self.max_bytes, &mut self.cut_bytes);
                *slot = Some(p);
                None
            }
            (Some(p), partial) => {
                append(p, &line.message, self.max_bytes, &mut self.cut_bytes);
                p.last_piece = now;
                if partial {
                    None
                } else {
                    let p = slot.take().expect("pending");
                    Some(finish(p, line.stream, false))
                }
            }
        }
    }

    /// The earliest offset a restart may resume from without losing a piece of
    /// a pending message: `read_to` unless a message is pending.
    pub fn safe_offset(&self, read_to: u64) -> u64 {
        self.pending.iter().flatten().map(|p| p.offset).fold(read_to, u64::min)
    }

    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(Option::is_some)
    }

    /// Pending messages whose last piece is older than `timeout`, flagged `partial`.
    pub fn flush_expired(&mut self, now: Instant, timeout: Duration) -> Vec<Record<'static>> {
        let mut out = Vec::new();
        for (i, slot) in self.pending.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|p| now.duration_since(p.last_piece) >= timeout) {
                out.push(finish(slot.take().expect("pending"), stream_of(i), true));
            }
        }
        out.sort_by_key(|r| r.offset);
        out
    }

    /// Every pending message, flagged `partial` (the file is closing or was truncated).
    pub fn flush_all(&mut self) -> Vec<Record<'static>> {
        let mut out: Vec<_> =
            (0..2).filter_map(|i| self.pending[i].take().map(|p| finish(p, stream_of(i), true))).collect();
        out.sort_by_key(|r| r.offset);
        out
    }

    pub fn take_cut_bytes(&mut self) -> u64 {
        std::mem::take(&mut self.cut_bytes)
    }
}

fn stream_of(i: usize) -> Stream {
    if i == 0 {
        Stream::Stdout
    } else {
        Stream::Stderr
    }
}

fn append(p: &mut Pending, piece: &[u8], max: usize, cut_bytes: &mut u64) {
    let room = max.saturating_sub(p.buf.len());
    if piece.len() > room {
        p.cut = true;
        *cut_bytes += (piece.len() - room) as u64;
    }
    p.buf.extend_from_slice(&piece[..piece.len().min(room)]);
}

fn finish(p: Pending, stream: Stream, partial: bool) -> Record<'static> {
    Record {
        offset: p.offset,
        time_text: Cow::Owned(p.time_text),
        time: p.time,
        stream: Some(stream),
        message: Cow::Owned(p.buf),
        flags: Flags { cut: p.cut, partial, invalid: false },
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::containers::format::parse_cri;

    fn push<'a>(r: &mut Reassembler, line: &'a [u8], offset: u64) -> Option<Record<'a>> {
        r.push(parse_cri(line).unwrap(), offset, Instant::now())
    }

    #[test]
    fn pieces_join_per_stream() {
        let mut r = Reassembler::new(1024);
        assert!(push(&mut r, b"2024-01-01T00:00:00Z stdout P out-1 ", 0).is_none());
        assert!(push(&mut r, b"2024-01-01T00:00:01Z stderr P err-1 ", 40).is_none());
        assert_eq!(r.safe_offset(500), 0);
        let out = push(&mut r, b"2024-01-01T00:00:02Z stdout F out-2", 80).unwrap();
        assert_eq!(&*out.message, b"out-1 out-2");
        assert_eq!(out.offset, 0);
        assert_eq!(out.time_text, "2024-01-01T00:00:00Z");
        assert_eq!(r.safe_offset(500), 40);
        let err = push(&mut r, b"2024-01-01T00:00:03Z stderr F err-2", 120).unwrap();
        assert_eq!(&*err.message, b"err-1 err-2");
        assert_eq!(err.stream, Some(Stream::Stderr));
        assert_eq!(r.safe_offset(500), 500);
    }

    #[test]
    fn cap_cuts_and_flags() {
        let mut r = Reassembler::new(8);
        assert!(push(&mut r, b"2024-01-01T00:00:00Z stdout P 123456", 0).is_none());
        let out = push(&mut r, b"2024-01-01T00:00:00Z stdout F 789abc", 10).unwrap();
        assert_eq!(&*out.message, b"12345678");
        assert!(out.flags.cut);
        assert_eq!(r.take_cut_bytes(), 4);
        let out = push(&mut r, b"2024-01-01T00:00:00Z stdout F 0123456789", 20).unwrap();
        assert_eq!(&*out.message, b"01234567");
        assert!(out.flags.cut);
    }

    #[test]
    fn dangling_partial_flushes_after_timeout_from_last_piece() {
        let mut r = Reassembler::new(1024);
        let t0 = Instant::now();
        r.push(parse_cri(b"2024-01-01T00:00:00Z stdout P a").unwrap(), 0, t0);
        r.push(parse_cri(b"2024-01-01T00:00:00Z stdout P b").unwrap(), 10, t0 + Duration::from_secs(4));
        assert!(r.flush_expired(t0 + Duration::from_secs(6), Duration::from_secs(5)).is_empty());
        let out = r.flush_expired(t0 + Duration::from_secs(9), Duration::from_secs(5));
        assert_eq!(out.len(), 1);
        assert_eq!(&*out[0].message, b"ab");
        assert!(out[0].flags.partial);
        assert!(!r.has_pending());
    }
}
