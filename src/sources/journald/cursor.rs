//! The saved journal cursor: one small file per journal directory under
//! `data_dir`, replaced atomically (write a temporary file, fsync it, rename it
//! over the old one, fsync the directory). A crash leaves either the old or
//! the new cursor, never a torn one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("cannot read journal cursor file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write journal cursor file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone)]
pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    /// The cursor file for `directory`: `data_dir/journald/<directory with / as ->.cursor`,
    /// e.g. `journald/var-log-journal.cursor`, so every directory keeps its own position.
    pub fn for_directory(data_dir: &Path, directory: &Path) -> CursorFile {
        let name: String = directory
            .to_string_lossy()
            .trim_matches('/')
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c } else { '-' })
            .collect();
        let name = if name.is_empty() { "root".to_string() } else { name };
        CursorFile { path: data_dir.join("journald").join(format!("{name}.cursor")) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved cursor, `None` if there is none yet.
    pub fn load(&self) -> Result<Option<String>, CursorError> {
        match fs::read_to_string(&self.path) {
            Ok(s) => {
                let s = s.trim();
                Ok((!s.is_empty()).then(|| s.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CursorError::Read { path: self.path.clone(), source }),
        }
    }

    /// Replaces the saved cursor atomically and durably.
    pub fn save(&self, cursor: &str) -> Result<(), CursorError> {
        let err = |source| CursorError::Write { path: self.path.clone(), source };
        let dir = self.path.parent().expect("cursor path has a parent");
        fs::create_dir_all(dir).map_err(err)?;
        let tmp = self.path.with_extension("cursor.tmp");
        {
            let mut f = File::create(&tmp).map_err(err)?;
            f.write_all(cursor.as_bytes()).map_err(err)?;
            f.write_all(b"\n").map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        fs::rename(&tmp, &self.path).map_err(err)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(())
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
        c.save("s=1;i=2").unwrap();
        c.save("s=1;i=3").unwrap();
        assert_eq!(c.load().unwrap().as_deref(), Some("s=1;i=3"));
        assert!(!c.path().with_extension("cursor.tmp").exists());
    }
}
