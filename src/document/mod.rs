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

/// Which source produced a document: the source's own label (`audit`,
/// `journald`, ...), supplied by the source itself. Carried through delivery so
/// that outcomes, dead letters and metrics (`source="..."`) can say where a
/// document came from without any of them knowing the list of sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKind(&'static str);

#[allow(non_upper_case_globals)] // named like the variants they replaced, so call sites read the same
impl SourceKind {
    pub const Audit: SourceKind = SourceKind("audit");
    pub const Journald: SourceKind = SourceKind("journald");
    pub const Containers: SourceKind = SourceKind("containers");

    /// The sources whose documents can sit in the spool, in the order of the
    /// byte that stands for them there: an entry on disk must still decode
    /// after an upgrade, so a byte's meaning never changes and new ones are
    /// only appended. A source that spools adds its label at the end.
    const SPOOLED: [SourceKind; 3] = [SourceKind::Audit, SourceKind::Journald, SourceKind::Containers];

    /// A source's label: lower-case ASCII letters, digits and `_`, used as a
    /// Prometheus label value and in dead letters.
    pub const fn new(label: &'static str) -> Self {
        SourceKind(label)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// The spool's byte for this source; `u8::MAX` for one that never spools
    /// (it does not decode, see [`SourceKind::from_byte`]).
    pub fn to_byte(self) -> u8 {
        Self::SPOOLED.iter().position(|k| *k == self).map_or(u8::MAX, |i| i as u8)
    }

    pub fn from_byte(b: u8) -> Option<Self> {
        Self::SPOOLED.get(b as usize).copied()
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
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
        for kind in SourceKind::SPOOLED {
            assert_eq!(SourceKind::from_byte(kind.to_byte()), Some(kind));
        }
        assert_eq!(SourceKind::from_byte(9), None);
        assert_eq!(SourceKind::from_byte(SourceKind::new("elsewhere").to_byte()), None);
    }
}
