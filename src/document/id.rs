//! The one way a document `_id` is made: the record's own time, then BLAKE3 over
//! length-prefixed parts. 22 bytes — the time in Unix milliseconds as 6 bytes
//! big-endian, then the hash truncated to 128 bits — base64url: 30 characters, the
//! first 8 the time, the last 22 the hash.
//!
//! The hash is derived from where the record sits in its source (an audit event's
//! identity, a journal entry's cursor identity, a file's identity and offset), and
//! the time is the record's own (the audit event's `stageTimestamp`, the journal
//! entry's realtime, the CRI line's time), so a resend carries the same `_id` and
//! the bulk `create` answers 409 instead of writing it twice. Length prefixes make
//! `("ab","c")` and `("a","bc")` differ.
//!
//! Why the time comes first: every `create` looks its `_id` up in each segment of
//! the index first. Ids that start with the time keep the ids of one stretch of
//! time together in Lucene's terms dictionary, so the lookup of a new id rules most
//! segments out from the terms index alone, instead of reading a block of every
//! segment as uniformly random ids make it do (docs/decisions.md, 11).

use base64::Engine;

/// The largest time the 6-byte prefix holds (year 10889).
const MAX_MILLIS: i64 = (1 << 48) - 1;

/// Builds an id part by part. Cloning a builder after its common parts saves
/// hashing them again: the container source hashes a file's identity once and
/// adds only the offset per line.
#[derive(Clone, Default)]
pub struct IdBuilder {
    hasher: blake3::Hasher,
}

impl IdBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one part, length-prefixed.
    pub fn part(&mut self, part: &[u8]) -> &mut Self {
        self.hasher.update(&(part.len() as u64).to_le_bytes());
        self.hasher.update(part);
        self
    }

    /// The id of a record whose own time is `unix_millis` (clamped to 0 ..= 2⁴⁸−1).
    /// `None` when the record carries no time of its own (a line that cannot be
    /// parsed, an event the webhook refused): the prefix is then all zeros, since a
    /// time the gateway made up would differ on a resend.
    pub fn finish(&self, unix_millis: Option<i64>) -> String {
        let mut raw = [0u8; 22];
        let millis = unix_millis.unwrap_or(0).clamp(0, MAX_MILLIS);
        raw[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        raw[6..].copy_from_slice(&self.hasher.finalize().as_bytes()[..16]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }
}

/// The id of a record at `unix_millis` identified by `parts`.
pub fn document_id(unix_millis: Option<i64>, parts: &[&[u8]]) -> String {
    let mut b = IdBuilder::new();
    for part in parts {
        b.part(part);
    }
    b.finish(unix_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_stable_and_length_prefixed() {
        let a = document_id(Some(1), &[b"ab", b"c"]);
        let b = document_id(Some(1), &[b"a", b"bc"]);
        assert_ne!(a, b);
        assert_eq!(a, document_id(Some(1), &[b"ab", b"c"]));
        assert_eq!(a.len(), 30);
    }

    #[test]
    fn the_time_comes_first_then_the_hash() {
        // 2026-11-09T06:14:42.541Z = 1,794,204,882,541 ms = 0x01_a1_be_f1_d6_6d
        let id = document_id(Some(1_794_204_882_541), &[b"x"]);
        assert_eq!(&id[..8], "AaG-8dZt");
        assert_eq!(&id[8..], &document_id(None, &[b"x"])[8..], "the hash does not depend on the time");
        assert_eq!(&document_id(None, &[b"x"])[..8], "AAAAAAAA");
        assert_eq!(&document_id(Some(-5), &[b"x"])[..8], "AAAAAAAA", "clamped at 1970");
        assert_eq!(&document_id(Some(i64::MAX), &[b"x"])[..8], "________", "clamped at 2⁴⁸−1 ms");
        // Later times share a prefix with earlier ones nearby: the point of the order.
        let next = document_id(Some(1_794_204_882_542), &[b"y"]);
        assert_eq!(&next[..7], &id[..7]);
    }

    #[test]
    fn a_cloned_prefix_gives_the_same_id_as_all_parts_at_once() {
        let mut prefix = IdBuilder::new();
        prefix.part(b"node").part(&7u64.to_le_bytes());
        let mut line = prefix.clone();
        line.part(&42u64.to_le_bytes());
        assert_eq!(line.finish(Some(9)), document_id(Some(9), &[b"node", &7u64.to_le_bytes(), &42u64.to_le_bytes()]));
    }
}
