//! A source's saved position — the journald cursor, the container checkpoints
//! — in one small file under `data_dir`, replaced atomically: write a temporary
//! file, fsync it, rename it over the old one, fsync the directory. A crash
//! leaves either the old or the new position, never a torn one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PositionFileError {
    #[error("cannot read {what} file {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cannot write {what} file {path}: {source}")]
    Write { what: &'static str, path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone)]
pub struct PositionFile {
    path: PathBuf,
    /// What the file holds, for error messages: "journal cursor", "checkpoint".
    what: &'static str,
}

impl PositionFile {
    pub fn new(path: PathBuf, what: &'static str) -> PositionFile {
        PositionFile { path, what }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved bytes, `None` if nothing was saved yet.
    pub fn load(&self) -> Result<Option<Vec<u8>>, PositionFileError> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(PositionFileError::Read { what: self.what, path: self.path.clone(), source }),
        }
    }

    /// Replaces the saved bytes atomically and durably.
    pub fn save(&self, bytes: &[u8]) -> Result<(), PositionFileError> {
        let err = |source| PositionFileError::Write { what: self.what, path: self.path.clone(), source };
        let dir = self.path.parent().expect("a position file has a directory");
        fs::create_dir_all(dir).map_err(err)?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = File::create(&tmp).map_err(err)?;
            f.write_all(bytes).map_err(err)?;
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
    fn round_trip_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = PositionFile::new(dir.path().join("sub").join("pos"), "test position");
        assert_eq!(f.load().unwrap(), None);
        f.save(b"one").unwrap();
        f.save(b"two").unwrap();
        assert_eq!(f.load().unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(std::fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocker"), b"").unwrap();
        let f = PositionFile::new(dir.path().join("blocker").join("pos"), "checkpoint");
        let err = f.save(b"x").unwrap_err().to_string();
        assert!(err.starts_with("cannot write checkpoint file") && err.contains("blocker/pos"), "{err}");
    }
}
