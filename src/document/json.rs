//! The one JSON string escaper for documents, and the functions around it.
//!
//! sonic-rs escapes strings with SIMD; serde_json escapes byte by byte, which
//! was the largest single cost of the webhook (docs/decisions.md, 9). Each
//! source writes its own document layout by hand and sends every string
//! through [`write_str`]: the audit document (`audit_webhook::document_writer`),
//! the journald document and the container document (around a per-file
//! fragment serialized once with [`write`]). Dead letters and the Events
//! documents are typed structs serialized with [`to_body`].

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

/// A JSON object written by hand: `{`, members separated by commas, `}`. The
/// hand-written document writers (journald, audit) give each constant key as a
/// byte literal with its quotes and colon, and whatever constant opening
/// follows it (`b"\"name\":"`, `b"\"severity\":{\"name\":\""`), so nothing
/// constant goes through the escaper per document.
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    #[inline]
    pub fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Starts a member with a constant `key` (the comma first if needed); the
    /// value goes to the returned buffer.
    #[inline]
    pub fn key(&mut self, key: &[u8]) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.extend_from_slice(key);
        self.out
    }

    /// Starts a member whose key comes from the input (annotation keys, unknown
    /// fields): escaped.
    #[inline]
    pub fn str_key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    /// A string member.
    #[inline]
    pub fn str(&mut self, key: &[u8], value: &str) {
        write_str(self.key(key), value);
    }

    /// A string member, left out when there is no value.
    #[inline]
    pub fn opt_str(&mut self, key: &[u8], value: Option<&str>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    #[inline]
    pub fn close(self) {
        self.out.push(b'}');
    }
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
    fn objects_put_commas_between_members_only() {
        let mut out = Vec::new();
        let mut o = Object::open(&mut out);
        o.opt_str(b"\"a\":", None);
        o.str(b"\"b\":", "x");
        o.str_key("c\"d").extend_from_slice(b"1");
        Object::open(o.key(b"\"e\":")).close();
        o.close();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"b":"x","c\"d":1,"e":{}}"#);
    }

    #[test]
    fn long_strings_round_trip() {
        let s: String = (0..10_000).map(|i| char::from(b' ' + (i % 95) as u8)).collect();
        let mut out = Vec::new();
        write_str(&mut out, &s);
        assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s);
    }
}
