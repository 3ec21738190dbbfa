//! The one JSON writer for documents: sonic-rs, for every source.
//!
//! sonic-rs escapes strings with SIMD; serde_json escapes byte by byte, which
//! was the largest single cost of the webhook (docs/decisions.md). Documents are
//! typed structs serialized with [`to_body`]; the container source writes a
//! per-line prefix around a per-file fragment and uses [`write_str`] for the
//! strings in between.

use std::cell::RefCell;

use bytes::Bytes;
use serde::Serialize;

/// A scratch buffer larger than this is not kept for the next document.
const SCRATCH_KEPT_BYTES: usize = 1 << 20;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Serializes a document `_source`.
///
/// Written into a per-thread scratch buffer, then copied out at its exact
/// size: sonic-rs reserves the worst-case escaped length (6× each string)
/// before writing a string, so a body written straight into its own `Vec`
/// kept up to twice the memory it needs while it waits in a batch.
pub fn to_body<T: Serialize + ?Sized>(doc: &T) -> Result<Bytes, sonic_rs::Error> {
    SCRATCH.with_borrow_mut(|out| {
        out.clear();
        let written = write(out, doc).map(|()| Bytes::copy_from_slice(out));
        if out.capacity() > SCRATCH_KEPT_BYTES {
            *out = Vec::new();
        }
        written
    })
}

/// Appends `value` as JSON to `out`.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), sonic_rs::Error> {
    sonic_rs::to_writer(out, value)
}

/// Appends `s` as a JSON string, quotes included.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write(out, s).expect("a string always serializes");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_like_serde_json() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain ascii text that is long enough".into(),
            "quote \" and backslash \\ and tab\t".into(),
            "ünïcödé ✓ 日本語 \u{7f}".into(),
        ];
        cases.extend((0u8..0x20).map(|c| format!("abcdefg{}hijklmnop", c as char)));
        for n in 0..20 {
            cases.push(format!("{}\"{}", "x".repeat(n), "y".repeat(n)));
        }
        for s in cases {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn bodies_are_allocated_at_their_exact_size() {
        let body = to_body(&serde_json::json!({"message": "x".repeat(300)})).unwrap();
        assert_eq!(&body[..], format!("{{\"message\":\"{}\"}}", "x".repeat(300)).as_bytes());
        let vec: Vec<u8> = body.into();
        assert_eq!(vec.capacity(), vec.len());
        let big = to_body(&"y".repeat(2 << 20)).unwrap();
        assert_eq!(big.len(), (2 << 20) + 2);
        SCRATCH.with_borrow(|s| assert!(s.capacity() <= SCRATCH_KEPT_BYTES, "a huge document's buffer is not kept"));
    }

    #[test]
    fn long_strings_round_trip() {
        let s: String = (0..10_000).map(|i| char::from(b' ' + (i % 95) as u8)).collect();
        let mut out = Vec::new();
        write_str(&mut out, &s);
        assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s);
    }
}
