//! The one way a document `_id` is made: BLAKE3 over length-prefixed parts,
//! truncated to 128 bits, base64url (22 characters).
//!
//! The id is derived from where the record sits in its source (an audit event's
//! identity, a journal entry's cursor identity, a file's identity and offset), so a
//! resend carries the same `_id` and the bulk `create` answers 409 instead of
//! writing it twice. Length prefixes make `("ab","c")` and `("a","bc")` differ.

use base64::Engine;

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

    pub fn finish(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.hasher.finalize().as_bytes()[..16])
    }
}

/// The id of a document identified by `parts`.
pub fn document_id(parts: &[&[u8]]) -> String {
    let mut b = IdBuilder::new();
    for part in parts {
        b.part(part);
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_stable_and_length_prefixed() {
        let a = document_id(&[b"ab", b"c"]);
        let b = document_id(&[b"a", b"bc"]);
        assert_ne!(a, b);
        assert_eq!(a, document_id(&[b"ab", b"c"]));
        assert_eq!(a.len(), 22);
    }

    #[test]
    fn a_cloned_prefix_gives_the_same_id_as_all_parts_at_once() {
        let mut prefix = IdBuilder::new();
        prefix.part(b"node").part(&7u64.to_le_bytes());
        let mut line = prefix.clone();
        line.part(&42u64.to_le_bytes());
        assert_eq!(line.finish(), document_id(&[b"node", &7u64.to_le_bytes(), &42u64.to_le_bytes()]));
    }

    /// Ids computed by the code before the parts were hashed in one `update`
    /// (one `Hasher::update` per length and per part). A resend after an
    /// upgrade must carry the same `_id` (409, not a duplicate), so these must
    /// never change, whatever the hashing does inside.
    #[test]
    fn ids_are_pinned_across_versions() {
        let mid: Vec<u8> = (0..200u8).collect();
        let big = vec![0xabu8; 3000];
        let (dev, inode, offset) = (7u64.to_le_bytes(), 42u64.to_le_bytes(), 1234u64.to_le_bytes());
        let cases: [(&[&[u8]], &str); 7] = [
            (&[], "rxNJufX5oaagQE3qNtzJSQ"),
            (&[b""], "ceCpkXNWSTHAuKzFLSaFqA"),
            (
                &[
                    b"fedcba9876543210fedcba9876543210",
                    b"0123456789abcdef0123456789abcdef",
                    b"3e8",
                    b"643235499a5ae",
                    b"dd9e383ca2c1c3fe",
                ],
                "0ZJAMeyzUrekARRZvMgp_g",
            ),
            (&[b"node-1", &dev, &inode, b"fingerprint", &offset], "USvGsy1rXPow-SbSRvcswg"),
            (&[b"prod", b"5b1c0e4e-7c1a-4a8e-9a43-2f0c9d1e6b11", b"ResponseComplete"], "Qd-R03bDTiHlA5oD5235mw"),
            (&[b"x", &mid], "tD8S3t9dkK1x50ufPHwIbg"),
            (&[b"prod", b"rejected", &big], "bhbcLcN4UhpbyUfWS4_VVg"),
        ];
        for (parts, want) in cases {
            assert_eq!(document_id(parts), want, "{} parts", parts.len());
            // The same parts through a cloned prefix, as the container source adds them.
            if let Some((last, prefix)) = parts.split_last() {
                let mut b = IdBuilder::new();
                for p in prefix {
                    b.part(p);
                }
                let mut line = b.clone();
                line.part(last);
                assert_eq!(line.finish(), want);
            }
        }
    }
}
