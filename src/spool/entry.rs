//! The stored format of a spool entry, in one place: [`encode`] and
//! [`decode`] for a whole entry, and [`EntryWriter`] for an entry written
//! document by document.
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

use bytes::{Buf, BufMut, Bytes};

use crate::document::{Document, SourceKind};

/// Entry formats: 1 = the plain encoding below; 2 = format 1, LZ4-compressed.
/// JSON documents compress about 5×, which cuts the bytes written and fsynced
/// per acknowledged batch — the webhook's main cost — and lets the same
/// `spool.max_bytes` hold about five times as many events.
const FORMAT: u8 = 1;
const FORMAT_LZ4: u8 = 2;

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

/// `[format u8][count u32]` then per document
/// `[source u8][index len u16][index][id len u16][id][body len u32][body]`.
pub fn encode(docs: &[Document]) -> Vec<u8> {
    let plain = encode_plain(docs);
    let mut out = Vec::with_capacity(plain.len() / 4);
    out.push(FORMAT_LZ4);
    out.extend_from_slice(&lz4_flex::compress_prepend_size(&plain));
    out
}

fn encode_plain(docs: &[Document]) -> Vec<u8> {
    let size: usize = docs.iter().map(|d| 9 + d.index.len() + d.id.len() + d.body.len()).sum();
    let mut out = Vec::with_capacity(5 + size);
    out.put_u8(FORMAT);
    out.put_u32(docs.len() as u32);
    for d in docs {
        out.put_u8(d.source.to_byte());
        out.put_u16(d.index.len() as u16);
        out.put_slice(d.index.as_bytes());
        out.put_u16(d.id.len() as u16);
        out.put_slice(d.id.as_bytes());
        out.put_u32(d.body.len() as u32);
        out.put_slice(&d.body);
    }
    out
}

/// An entry's documents from its stored bytes (either format), or why they
/// do not decode. Public for the sink path's bench (benches/sink_path.rs),
/// which reads entries back as the drainer does.
pub fn decode(raw: &[u8]) -> Result<Vec<Document>, String> {
    match raw.first() {
        Some(&FORMAT_LZ4) => {
            // The size prefix of garbage could ask for gigabytes; LZ4 expands
            // at most 255×, so anything beyond that is corruption.
            let compressed = &raw[1..];
            let claimed = compressed.get(..4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            if compressed.len() < 4 || claimed > (compressed.len() - 4).saturating_mul(255) + 16 {
                return Err(format!("LZ4: implausible uncompressed size {claimed} for {} bytes", compressed.len()));
            }
            let plain = lz4_flex::decompress_size_prepended(compressed).map_err(|e| format!("LZ4: {e}"))?;
            decode_plain(Bytes::from(plain))
        }
        _ => decode_plain(Bytes::copy_from_slice(raw)),
    }
}

fn decode_plain(all: Bytes) -> Result<Vec<Document>, String> {
    let mut buf = all.clone();
    let need = |buf: &Bytes, n: usize, what: &str| {
        if buf.remaining() < n {
            Err(format!("truncated at {what}"))
        } else {
            Ok(())
        }
    };
    need(&buf, 5, "header")?;
    let format = buf.get_u8();
    if format != FORMAT {
        return Err(format!("unknown format {format}"));
    }
    let count = buf.get_u32() as usize;
    let mut docs = Vec::with_capacity(count.min(100_000));
    for _ in 0..count {
        need(&buf, 3, "source")?;
        let source = SourceKind::from_byte(buf.get_u8()).ok_or("unknown source")?;
        let n = buf.get_u16() as usize;
        need(&buf, n + 2, "index")?;
        let index = String::from_utf8(buf.split_to(n).to_vec()).map_err(|_| "index is not UTF-8")?;
        let n = buf.get_u16() as usize;
        need(&buf, n + 4, "id")?;
        let id = String::from_utf8(buf.split_to(n).to_vec()).map_err(|_| "id is not UTF-8")?;
        let n = buf.get_u32() as usize;
        need(&buf, n, "body")?;
        let body = buf.split_to(n);
        docs.push(Document { index, id, body, source });
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
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
        assert_eq!(w.finish(), encode(&docs));
        assert_eq!(EntryWriter::with_capacity(10).finish(), encode(&[]));
    }

    #[test]
    fn encoding_round_trips_and_detects_truncation() {
        let docs: Vec<Document> = (0..3).map(|i| doc(i, SourceKind::Audit)).collect();
        let raw = encode(&docs);
        assert_eq!(raw[0], FORMAT_LZ4);
        assert_eq!(decode(&raw).unwrap(), docs);
        assert!(decode(&raw[..raw.len() - 1]).unwrap_err().starts_with("LZ4"));
        let plain = encode_plain(&docs);
        assert_eq!(decode(&plain).unwrap(), docs);
        assert!(decode(&plain[..plain.len() - 1]).unwrap_err().starts_with("truncated"));
    }

    #[test]
    fn garbage_never_decodes_and_never_asks_for_gigabytes() {
        assert!(decode(&[FORMAT_LZ4, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap_err().contains("implausible"));
        assert!(decode(&[FORMAT_LZ4, 1]).is_err());
        assert!(decode(b"garbage").is_err());
        assert!(decode(&[]).is_err());
    }
}
