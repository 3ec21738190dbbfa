//! A spool entry written document by document, in the stored format.
//!
//! The webhook used to serialize each document into its own buffer and then
//! copy every one of them into the entry (`encode_plain`): a third of the
//! gateway's memmove at 200k events/s (docs/decisions.md §12). An
//! [`EntryWriter`] is the entry's plain bytes from the start: a source
//! serializes each document straight into it, and [`EntryWriter::finish`]
//! compresses the whole. The bytes are those [`super::Spool::append`] writes
//! for the same documents, so entries written either way read the same.
//!
//! Plain format: `[format u8][count u32]` then per document
//! `[source u8][index len u16][index][id len u16][id][body len u32][body]`
//! (big-endian lengths).

use bytes::BufMut;

use super::{FORMAT, FORMAT_LZ4};
use crate::document::{Document, SourceKind};

/// Where the document count goes, patched by [`EntryWriter::finish`].
const COUNT_AT: usize = 1;

/// One request's documents, in the spool's plain entry format.
pub struct EntryWriter {
    plain: Vec<u8>,
    count: u32,
}

impl EntryWriter {
    /// An empty entry with room for about `bytes` of documents.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut plain = Vec::with_capacity(5 + bytes);
        plain.put_u8(FORMAT);
        plain.put_u32(0);
        EntryWriter { plain, count: 0 }
    }

    /// How many documents were written.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a document already made.
    pub fn push(&mut self, doc: &Document) {
        self.head(doc.source, &doc.index, &doc.id);
        self.plain.put_u32(doc.body.len() as u32);
        self.plain.put_slice(&doc.body);
        self.count += 1;
    }

    /// Appends a document whose `_source` `write` appends to the buffer it is
    /// given, in place: for a body written by hand rather than through serde
    /// (the audit webhook's, `sources::audit_webhook::document_writer`).
    pub fn push_with(&mut self, source: SourceKind, index: &str, id: &str, write: impl FnOnce(&mut Vec<u8>)) {
        self.head(source, index, id);
        let len_at = self.plain.len();
        self.plain.put_u32(0);
        write(&mut self.plain);
        let len = (self.plain.len() - len_at - 4) as u32;
        self.plain[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        self.count += 1;
    }

    fn head(&mut self, source: SourceKind, index: &str, id: &str) {
        self.plain.put_u8(source.to_byte());
        self.plain.put_u16(index.len() as u16);
        self.plain.put_slice(index.as_bytes());
        self.plain.put_u16(id.len() as u16);
        self.plain.put_slice(id.as_bytes());
    }

    /// The plain entry bytes (format 1).
    pub fn into_plain(mut self) -> Vec<u8> {
        self.plain[COUNT_AT..COUNT_AT + 4].copy_from_slice(&self.count.to_be_bytes());
        self.plain
    }

    /// The entry as stored: the plain bytes LZ4-compressed (format 2).
    pub fn finish(self) -> Vec<u8> {
        let plain = self.into_plain();
        let mut out = Vec::with_capacity(plain.len() / 4);
        out.push(FORMAT_LZ4);
        out.extend_from_slice(&lz4_flex::compress_prepend_size(&plain));
        out
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn doc(i: usize, source: SourceKind) -> Document {
        Document {
            index: format!("audit-2026.01.0{}", i % 3),
            id: format!("id-{i}"),
            body: Bytes::from(format!("{{\"n\":{i},\"s\":\"q\\\"uote\"}}")),
            source,
        }
    }

    #[test]
    fn written_in_place_the_bytes_are_those_of_encode() {
        let docs: Vec<Document> =
            (0..5).map(|i| doc(i, if i == 3 { SourceKind::Journald } else { SourceKind::Audit })).collect();
        let mut w = EntryWriter::with_capacity(0);
        for d in &docs {
            if d.source == SourceKind::Journald {
                w.push(d);
            } else {
                // Written piece by piece, as the audit writer does.
                let n: usize = d.id[3..].parse().unwrap();
                w.push_with(d.source, &d.index, &d.id, |out| {
                    out.extend_from_slice(format!("{{\"n\":{n},\"s\":").as_bytes());
                    crate::document::json::write_str(out, "q\"uote");
                    out.push(b'}');
                });
            }
        }
        assert_eq!(w.len(), 5);
        assert_eq!(w.finish(), super::super::encode(&docs));
        assert_eq!(EntryWriter::with_capacity(10).finish(), super::super::encode(&[]));
    }
}
