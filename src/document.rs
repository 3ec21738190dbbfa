//! The unit of delivery: one Elasticsearch document with its index and
//! deterministic `_id`.

use bytes::Bytes;

/// Which source produced a document. Carried through delivery so that outcomes,
/// dead letters and metrics can say where a document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Audit,
    Journald,
    Containers,
}

impl SourceKind {
    pub const ALL: [SourceKind; 3] = [SourceKind::Audit, SourceKind::Journald, SourceKind::Containers];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Audit => "audit",
            SourceKind::Journald => "journald",
            SourceKind::Containers => "containers",
        }
    }

    pub fn to_byte(self) -> u8 {
        match self {
            SourceKind::Audit => 0,
            SourceKind::Journald => 1,
            SourceKind::Containers => 2,
        }
    }

    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(SourceKind::Audit),
            1 => Some(SourceKind::Journald),
            2 => Some(SourceKind::Containers),
            _ => None,
        }
    }
}

/// A document ready for the bulk API: `body` is the serialized JSON `_source`.
///
/// The `id` is derived from the document's position in its source (see
/// DESIGN.md), so writing it with the bulk `create` op makes every resend
/// idempotent: a 409 means "already there".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub index: String,
    pub id: String,
    pub body: Bytes,
    pub source: SourceKind,
}

/// A deterministic document id: BLAKE3 over the length-prefixed parts, truncated to
/// 128 bits and base64url-encoded (22 characters). Length prefixes make
/// `("ab","c")` and `("a","bc")` different ids.
pub fn document_id(parts: &[&[u8]]) -> String {
    use base64::Engine;
    // One contiguous buffer, hashed in one call: cheaper than many small updates.
    let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        buf.extend_from_slice(&(part.len() as u64).to_le_bytes());
        buf.extend_from_slice(part);
    }
    let hash = blake3::hash(&buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash.as_bytes()[..16])
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
    fn source_kind_round_trips_through_a_byte() {
        for kind in SourceKind::ALL {
            assert_eq!(SourceKind::from_byte(kind.to_byte()), Some(kind));
        }
        assert_eq!(SourceKind::from_byte(9), None);
    }
}
