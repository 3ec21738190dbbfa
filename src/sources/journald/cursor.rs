//! The saved journal cursor: one small [`PositionFile`] per journal directory
//! under `data_dir`, so every directory keeps its own position; and the
//! journal's own numbering read from a cursor ([`SeqPosition`]), by which the
//! reader tells a skipped entry of another unit from one that was removed.

use std::path::Path;

use crate::ack::{PositionFile, PositionFileError, Positions};

#[derive(Debug, Clone)]
pub struct CursorFile {
    file: PositionFile,
}

impl CursorFile {
    /// The cursor file for `directory`: `data_dir/journald/<directory with / as ->.cursor`,
    /// e.g. `journald/var-log-journal.cursor`.
    pub fn for_directory(data_dir: &Path, directory: &Path) -> CursorFile {
        let name: String = directory
            .to_string_lossy()
            .trim_matches('/')
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c } else { '-' })
            .collect();
        let name = if name.is_empty() { "root".to_string() } else { name };
        CursorFile {
            file: PositionFile::new(data_dir.join("journald").join(format!("{name}.cursor")), "journal cursor"),
        }
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn position_file(&self) -> PositionFile {
        self.file.clone()
    }

    /// The saved cursor, `None` if there is none yet.
    pub fn load(&self) -> Result<Option<String>, PositionFileError> {
        Ok(self.file.load()?.map(|b| String::from_utf8_lossy(&b).trim().to_string()).filter(|s| !s.is_empty()))
    }
}

/// The newest cursor whose batch, and every batch before it, is delivered.
#[derive(Debug, Default)]
pub struct Cursor(pub Option<String>);

impl Positions for Cursor {
    type Update = String;

    fn apply(&mut self, cursor: String) {
        self.0 = Some(cursor);
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = self.0.clone().unwrap_or_default().into_bytes();
        out.push(b'\n');
        out
    }
}

/// Where an entry stands in the journal's own numbering: journald gives every
/// entry the next sequence number of its sequence-number id, which it keeps
/// across file rotations (a new id starts only when no journal file is left to
/// continue from). Within one id, a number missing between two entries that
/// were read is an entry of another unit (skipped by the filter) or one whose
/// file is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqPosition {
    /// `s=`: the sequence-number id, 32 hex digits.
    pub id: String,
    /// `i=`: the sequence number (hexadecimal in the cursor).
    pub num: u64,
}

impl SeqPosition {
    /// Reads `s=` and `i=` from a cursor as libsystemd formats it
    /// (`s=…;i=…;b=…;m=…;t=…;x=…`); `None` if either is missing or malformed.
    pub fn from_cursor(cursor: &str) -> Option<SeqPosition> {
        let (mut id, mut num) = (None, None);
        for part in cursor.split(';') {
            if let Some(v) = part.strip_prefix("s=") {
                id = Some(v);
            } else if let Some(v) = part.strip_prefix("i=") {
                num = u64::from_str_radix(v, 16).ok();
            }
        }
        let id = id.filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_hexdigit()))?;
        Some(SeqPosition { id: id.to_string(), num: num? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_position_from_a_cursor() {
        let c =
            "s=4f0a84d7a39841c49fc1151d7b0d0643;i=1f;b=0123456789abcdef0123456789abcdef;m=3e8;t=643235499a5ae;x=6a0c";
        assert_eq!(
            SeqPosition::from_cursor(c),
            Some(SeqPosition { id: "4f0a84d7a39841c49fc1151d7b0d0643".into(), num: 0x1f })
        );
        assert_eq!(SeqPosition::from_cursor("not a cursor"), None);
        assert_eq!(SeqPosition::from_cursor("s=abc;i=zz"), None);
        assert_eq!(SeqPosition::from_cursor("i=5"), None);
        assert_eq!(SeqPosition::from_cursor("s=x;y;i=5"), None);
    }

    #[test]
    fn round_trip_and_naming() {
        let dir = tempfile::tempdir().unwrap();
        let c = CursorFile::for_directory(dir.path(), Path::new("/var/log/journal"));
        assert!(c.path().ends_with("journald/var-log-journal.cursor"));
        assert_eq!(c.load().unwrap(), None);
        let mut cursor = Cursor::default();
        cursor.apply("s=1;i=2".into());
        c.position_file().save(&cursor.encode()).unwrap();
        cursor.apply("s=1;i=3".into());
        c.position_file().save(&cursor.encode()).unwrap();
        assert_eq!(c.load().unwrap().as_deref(), Some("s=1;i=3"));
    }
}
