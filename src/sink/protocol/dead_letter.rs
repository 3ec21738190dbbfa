//! Documents Elasticsearch will never accept as they are (mapping or parsing
//! errors, per-item 4xx other than 409) are not dropped: they are written to the
//! dead-letter index ([`crate::document::dead_letter`]) with the original as a
//! string and the reason. If even that write is refused, they are appended to a
//! file under `data_dir`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::document::dead_letter::{dead_letter_document, Rejection};
use crate::document::index_pattern::IndexPattern;
use crate::document::Document;

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

    /// The dead letter of a document refused for its size, which must fit where
    /// the original did not: `event.original` keeps the first `keep` bytes of
    /// the original (cut at a character boundary), and `error.message` says so,
    /// with both sizes. `None` if the original fits as it is.
    pub fn truncated_document(&self, original: &Document, rejection: &Rejection, keep: usize) -> Option<Document> {
        if original.body.len() <= keep {
            return None;
        }
        let text = String::from_utf8_lossy(&original.body);
        let mut cut = keep.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let rejection = Rejection {
            reason: format!(
                "{}; event.original truncated to its first {cut} of {} bytes (elasticsearch.dead_letter_max_original_bytes); \
                 the whole document is in {}",
                rejection.reason,
                original.body.len(),
                self.file_path.display(),
            ),
            ..rejection.clone()
        };
        Some(dead_letter_document(
            &self.pattern,
            original.source,
            &original.index,
            &original.id,
            &text[..cut],
            &rejection,
        ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::SourceKind;
    use bytes::Bytes;

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

    #[test]
    fn a_too_large_original_is_truncated_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let dl = DeadLetters::new(IndexPattern::parse("deadletter").unwrap(), dir.path());
        let rejection = Rejection {
            status: Some(429),
            error_type: "es_rejected_execution_exception".into(),
            reason: "too big".into(),
        };
        // "é" is two bytes: a cut at 5 would split the third one.
        let doc = Document {
            index: "audit".into(),
            id: "1".into(),
            body: Bytes::from("{\"a\":\"éééééé\"}"),
            source: SourceKind::Audit,
        };
        assert!(dl.truncated_document(&doc, &rejection, 1024).is_none(), "it fits as it is");
        let truncated = dl.truncated_document(&doc, &rejection, 11).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&truncated.body).unwrap();
        assert_eq!(v["event"]["original"], "{\"a\":\"éé");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("too big; event.original truncated to its first 10 of 20 bytes"), "{message}");
        assert!(message.ends_with("dead-letter.ndjson"), "{message}");
        assert_eq!(v["dead_letter"]["status"], 429);
        assert_eq!(truncated.id, "1");
    }
}
