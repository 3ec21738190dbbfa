//! The saved journal cursor: one small [`PositionFile`] per journal directory
//! under `data_dir`, so every directory keeps its own position.

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

#[cfg(test)]
mod tests {
    use super::*;

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
