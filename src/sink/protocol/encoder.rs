//! Builds bulk request bodies. Documents are already serialized, so encoding is
//! concatenation: an action line, the source, a newline.

use crate::document::time::ingested_now;
use crate::document::Document;

/// The NDJSON body for `POST /_bulk` with one `create` per document, each
/// stamped with `event.ingested` = now: built once per attempt, so a batch
/// resent after an outage carries the time of the attempt Elasticsearch took.
pub fn bulk_body<'a, I>(docs: I) -> Vec<u8>
where
    I: IntoIterator<Item = &'a Document>,
    I::IntoIter: Clone,
{
    let docs = docs.into_iter();
    // Sized up front: grown by doubling, a 5 MiB body was copied about twice over.
    let mut out = Vec::with_capacity(docs.clone().map(encoded_len).sum());
    let ingested = ingested_now();
    for doc in docs {
        write_create(&mut out, doc, &ingested);
    }
    out
}

/// Appends one `create` action and its source. Index names and ids are produced
/// by us (patterns validated, ids base64url), but they are escaped anyway.
pub fn write_create(out: &mut Vec<u8>, doc: &Document, ingested: &str) {
    out.extend_from_slice(b"{\"create\":{\"_index\":");
    serde_json::to_writer(&mut *out, &doc.index).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b",\"_id\":");
    serde_json::to_writer(&mut *out, &doc.id).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b"}}\n");
    let rest = stamp_ingested(out, &doc.body, ingested);
    write_source(out, rest);
    out.push(b'\n');
}

/// `"event.ingested":"<ingested>"` as the first member of a source (an
/// object; anything else is left alone), written to `out`; returns the rest of
/// the source to write after it. The dotted name is Elasticsearch's path
/// `event.ingested`, beside the source's own `event` object: no source writes
/// `event.ingested` itself. `ingested` is RFC 3339 in milliseconds (no escapes).
fn stamp_ingested<'b>(out: &mut Vec<u8>, body: &'b [u8], ingested: &str) -> &'b [u8] {
    let Some(rest) = body.strip_prefix(b"{") else { return body };
    out.extend_from_slice(b"{\"event.ingested\":\"");
    out.extend_from_slice(ingested.as_bytes());
    out.push(b'"');
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    if !empty {
        out.push(b',');
    }
    rest
}

/// Appends a source on one line. NDJSON: a raw line break inside a source
/// would split it. In valid JSON a raw CR/LF can only be insignificant
/// whitespace (inside strings they are escaped), so turning them into spaces
/// changes nothing else. Embedded objects are passed through raw and may come
/// pretty-printed, but almost no source has one: `memchr2` finds the rare line
/// break a vector at a time, where a loop over every byte cost a fifth of the
/// sink path's instructions (docs/decisions.md §15).
fn write_source(out: &mut Vec<u8>, body: &[u8]) {
    let mut rest = body;
    while let Some(at) = memchr::memchr2(b'\n', b'\r', rest) {
        out.extend_from_slice(&rest[..at]);
        out.push(b' ');
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

/// The size a document adds to a bulk body, for batching by bytes: exact for
/// index names and ids that need no escaping (all the gateway makes), and
/// object sources (all the gateway makes).
pub fn encoded_len(doc: &Document) -> usize {
    const ACTION: usize = r#"{"create":{"_index":"","_id":""}}"#.len() + 2; // and two line breaks
    const STAMP: usize = r#""event.ingested":"2026-01-01T00:00:00.000Z","#.len();
    doc.body.len() + doc.index.len() + doc.id.len() + ACTION + STAMP
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::SourceKind;
    use bytes::Bytes;

    #[test]
    fn one_create_line_per_document() {
        let docs = vec![
            Document {
                index: "audit-2026.01.01".into(),
                id: "a".into(),
                body: Bytes::from_static(b"{\"x\":1}"),
                source: SourceKind::Audit,
            },
            Document {
                index: "audit-2026.01.02".into(),
                id: "b\"".into(),
                body: Bytes::from_static(b"{}"),
                source: SourceKind::Audit,
            },
        ];
        let mut body = Vec::new();
        for doc in &docs {
            write_create(&mut body, doc, "2026-12-07T04:52:44.123Z");
        }
        let body = String::from_utf8(body).unwrap();
        // Exact where nothing needs escaping (the first), 1 byte short for the
        // `"` and 1 long for the comma an empty source does not get.
        assert_eq!(body.len(), encoded_len(&docs[0]) + encoded_len(&docs[1]));
        assert_eq!(
            body,
            "{\"create\":{\"_index\":\"audit-2026.01.01\",\"_id\":\"a\"}}\n\
             {\"event.ingested\":\"2026-12-07T04:52:44.123Z\",\"x\":1}\n\
             {\"create\":{\"_index\":\"audit-2026.01.02\",\"_id\":\"b\\\"\"}}\n\
             {\"event.ingested\":\"2026-12-07T04:52:44.123Z\"}\n"
        );
    }

    #[test]
    fn line_breaks_in_a_source_cannot_split_the_ndjson() {
        let doc = Document {
            index: "i".into(),
            id: "1".into(),
            body: Bytes::from_static(b"{\"a\":\n {\"b\": \"x\\ny\"}\r\n}"),
            source: SourceKind::Audit,
        };
        let body = bulk_body([&doc]);
        assert_eq!(body.iter().filter(|b| **b == b'\n').count(), 2);
        let source = body.split(|b| *b == b'\n').nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_slice(source).unwrap();
        assert_eq!(v["a"]["b"], "x\ny");
    }

    #[test]
    fn every_raw_line_break_becomes_one_space_and_nothing_else_changes() {
        for body in [&b""[..], b"{}", b"\n", b"\r\n{\"a\":1}\n\n", b"{\"a\":\r1,\n\"b\":\"\\n\"}\r"] {
            let mut out = Vec::new();
            write_source(&mut out, body);
            let expected: Vec<u8> = body.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }).collect();
            assert_eq!(out, expected, "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn every_source_is_stamped_with_the_time_its_body_was_built() {
        let doc = |body: &'static [u8]| Document {
            index: "i".into(),
            id: "1".into(),
            body: Bytes::from_static(body),
            source: SourceKind::Audit,
        };
        let docs = [doc(b"{\"event\":{\"id\":\"x\"}}"), doc(b"{ }"), doc(b"[1]")];
        let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
        let body = bulk_body(&docs);
        let after = chrono::Utc::now();
        let sources: Vec<&[u8]> = body.split(|b| *b == b'\n').skip(1).step_by(2).collect();
        let first: serde_json::Value = serde_json::from_slice(sources[0]).unwrap();
        let stamp = first["event.ingested"].as_str().unwrap();
        let time = chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
        assert!(before <= time && time <= after, "{stamp}");
        assert_eq!(stamp.len(), "2026-01-01T00:00:00.000Z".len());
        assert_eq!(first["event"]["id"], "x");
        assert_eq!(sources[1], format!("{{\"event.ingested\":\"{stamp}\" }}").as_bytes());
        assert_eq!(sources[2], b"[1]", "not an object: left alone");
        // Each attempt builds its body again: a later one carries a later time.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let again: serde_json::Value =
            serde_json::from_slice(bulk_body(&docs[..1]).split(|b| *b == b'\n').nth(1).unwrap()).unwrap();
        assert!(again["event.ingested"].as_str().unwrap() > stamp);
    }
}
