//! The shared vocabulary between the sources and the sink: a [`Document`]
//! (index, deterministic `_id`, serialized `_source`) and how one is made.
//!
//! * [`id`] — the one `_id` function.
//! * [`arena`] — bodies carved from shared chunks (the node sources).
//! * [`json`] — the one JSON writer (sonic-rs).
//! * [`time`] — timestamps and the per-day index name.
//! * [`index_pattern`] — `audit-%Y.%m.%d` → an index name.
//! * [`ecs`] — ECS pieces every document shape shares.
//! * [`mapping`] — the index mappings sources register for the sink to install.
//! * [`dead_letter`] — the document that keeps a refused record and its reason.

pub mod arena;
pub mod dead_letter;
pub mod ecs;
pub mod id;
pub mod index_pattern;
pub mod json;
pub mod mapping;
pub mod time;

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
/// The `id` is derived from the document's position in its source ([`id`]),
/// so writing it with the bulk `create` op makes every resend idempotent: a
/// 409 means "already there".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub index: String,
    pub id: String,
    pub body: Bytes,
    pub source: SourceKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_kind_round_trips_through_a_byte() {
        for kind in SourceKind::ALL {
            assert_eq!(SourceKind::from_byte(kind.to_byte()), Some(kind));
        }
        assert_eq!(SourceKind::from_byte(9), None);
    }
}
