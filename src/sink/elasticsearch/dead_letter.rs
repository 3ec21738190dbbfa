//! Documents Elasticsearch will never accept as they are (mapping or parsing
//! errors, per-item 4xx other than 409) are not dropped: they are written to the
//! dead-letter index with the original document as a string and the reason. If
//! even that write is refused, they are appended to a file under `data_dir`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use crate::document::{Document, SourceKind};
use crate::index_pattern::IndexPattern;

/// Why a document is dead-lettered.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The item's HTTP status, or `None` when the gateway itself refused it.
    pub status: Option<u16>,
    pub error_type: String,
    pub reason: String,
}

#[derive(Serialize)]
struct DeadLetterBody<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    event: DlEvent<'a>,
    error: DlError<'a>,
    dead_letter: DlInfo<'a>,
}

#[derive(Serialize)]
struct DlEvent<'a> {
    dataset: &'static str,
    kind: &'static str,
    original: &'a str,
    ingested: &'a str,
}

#[derive(Serialize)]
struct DlError<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct DlInfo<'a> {
    source: &'static str,
    index: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
}

pub struct DeadLetters {
    pattern: IndexPattern,
    file_path: PathBuf,
    file: Mutex<Option<File>>,
}

impl DeadLetters {
    pub fn new(pattern: IndexPattern, data_dir: &Path) -> Self {
        DeadLetters { pattern, file_path: data_dir.join("dead-letter.ndjson"), file: Mutex::new(None) }
    }

    pub fn file_path(&self) -> &Path {
        &self.file_path
    }

    /// The dead-letter document for `original`. Its `_id` is the original's, so
    /// a resend after a crash is a 409 in the dead-letter index, not a duplicate.
    pub fn document(&self, original: &Document, rejection: &Rejection) -> Document {
        let original_text = String::from_utf8_lossy(&original.body);
        dead_letter_document(&self.pattern, original.source, &original.index, &original.id, &original_text, rejection)
    }

    /// Last resort: append the dead-letter document and why it was refused to
    /// `data_dir/dead-letter.ndjson`, and fsync before calling it handled.
    pub fn append_to_file(&self, dead_letter: &Document, refusal: &str) -> std::io::Result<()> {
        let mut guard = self.file.lock().expect("dead-letter file lock poisoned");
        if guard.is_none() {
            if let Some(parent) = self.file_path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            *guard = Some(OpenOptions::new().create(true).append(true).open(&self.file_path)?);
        }
        let file = guard.as_mut().expect("opened above");
        let mut line = Vec::with_capacity(dead_letter.body.len() + refusal.len() + 64);
        line.extend_from_slice(b"{\"refused_by_dead_letter_index\":");
        serde_json::to_writer(&mut line, refusal).expect("writing to a Vec cannot fail");
        line.extend_from_slice(b",\"document\":");
        line.extend_from_slice(&dead_letter.body);
        line.extend_from_slice(b"}\n");
        file.write_all(&line)?;
        file.sync_data()
    }
}

/// Builds a dead-letter document; also used by the webhook for items it refuses
/// before they ever reach Elasticsearch.
pub fn dead_letter_document(
    pattern: &IndexPattern,
    source: SourceKind,
    index: &str,
    id: &str,
    original: &str,
    rejection: &Rejection,
) -> Document {
    let now = Utc::now();
    let now_text = now.to_rfc3339_opts(SecondsFormat::Micros, true);
    let body = DeadLetterBody {
        timestamp: &now_text,
        event: DlEvent {
            dataset: "kube_log_gateway.dead_letter",
            kind: "pipeline_error",
            original,
            ingested: &now_text,
        },
        error: DlError { kind: &rejection.error_type, message: &rejection.reason },
        dead_letter: DlInfo { source: source.as_str(), index, id, status: rejection.status },
    };
    Document {
        index: pattern.index_for(now),
        id: id.to_string(),
        body: Bytes::from(serde_json::to_vec(&body).expect("serializing a dead letter cannot fail")),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_original_and_the_reason() {
        let dl = DeadLetters::new(IndexPattern::parse("deadletter-%Y.%m.%d").unwrap(), Path::new("/tmp"));
        let original = Document {
            index: "audit-2026.01.01".into(),
            id: "abc".into(),
            body: Bytes::from_static(br#"{"x":"y"}"#),
            source: SourceKind::Audit,
        };
        let doc = dl.document(
            &original,
            &Rejection { status: Some(400), error_type: "document_parsing_exception".into(), reason: "bad".into() },
        );
        assert!(doc.index.starts_with("deadletter-"));
        assert_eq!(doc.id, "abc");
        let v: serde_json::Value = serde_json::from_slice(&doc.body).unwrap();
        assert_eq!(v["event"]["original"], r#"{"x":"y"}"#);
        assert_eq!(v["error"]["type"], "document_parsing_exception");
        assert_eq!(v["dead_letter"]["index"], "audit-2026.01.01");
        assert_eq!(v["dead_letter"]["status"], 400);
        assert_eq!(v["dead_letter"]["source"], "audit");
    }

    #[test]
    fn file_fallback_appends_lines() {
        let dir = tempfile::tempdir().unwrap();
        let dl = DeadLetters::new(IndexPattern::parse("deadletter").unwrap(), dir.path());
        let doc = Document {
            index: "deadletter".into(),
            id: "1".into(),
            body: Bytes::from_static(b"{}"),
            source: SourceKind::Journald,
        };
        dl.append_to_file(&doc, "refused").unwrap();
        dl.append_to_file(&doc, "again").unwrap();
        let text = std::fs::read_to_string(dl.file_path()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with(r#"{"refused_by_dead_letter_index":"refused","document":{}}"#));
    }
}
