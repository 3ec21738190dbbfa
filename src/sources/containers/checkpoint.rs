//! Where each file was read to, saved only after delivery.
//!
//! An entry is (dev, inode, fingerprint, offset). The offset is the end of the
//! last *fully delivered logical* message: it never passes the start of a message
//! whose pieces are still pending, so a restart re-reads such a message whole.
//! The file is replaced atomically (write a temporary file, fsync, rename, fsync
//! the directory): a crash leaves either the old or the new checkpoint, never a
//! torn one. Because document ids are derived from file positions, resuming from
//! a slightly old checkpoint only makes duplicates that Elasticsearch refuses (409).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::file_id::{FileKey, Fingerprint};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub dev: u64,
    pub ino: u64,
    pub fingerprint: Fingerprint,
    pub offset: u64,
    /// The path that matched (informational, and for finding a file rotated while the gateway was down).
    pub path: PathBuf,
    /// The file the path resolved to.
    pub target: PathBuf,
}

impl Entry {
    pub fn key(&self) -> FileKey {
        FileKey { dev: self.dev, ino: self.ino }
    }
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    files: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("checkpoint file {path} is corrupt: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("cannot write checkpoint file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

pub struct CheckpointStore {
    path: PathBuf,
}

impl CheckpointStore {
    pub fn new(data_dir: &Path) -> CheckpointStore {
        CheckpointStore { path: data_dir.join("containers").join("checkpoints.json") }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved entries, or None if there is no checkpoint file (first run).
    pub fn load(&self) -> Result<Option<BTreeMap<FileKey, Entry>>, CheckpointError> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::Read { path: self.path.clone(), source }),
        };
        let disk: OnDisk = serde_json::from_slice(&text)
            .map_err(|source| CheckpointError::Corrupt { path: self.path.clone(), source })?;
        Ok(Some(disk.files.into_iter().map(|e| (e.key(), e)).collect()))
    }

    pub fn save(&self, entries: &BTreeMap<FileKey, Entry>) -> Result<(), CheckpointError> {
        let err = |source| CheckpointError::Write { path: self.path.clone(), source };
        let dir = self.path.parent().expect("checkpoint path has a directory");
        std::fs::create_dir_all(dir).map_err(err)?;
        let body = serde_json::to_vec_pretty(&OnDisk { version: 1, files: entries.values().cloned().collect() })
            .expect("checkpoints serialize");
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_first_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        assert_eq!(store.load().unwrap(), None);
        let e = Entry {
            dev: 1,
            ino: 2,
            fingerprint: Fingerprint { len: 3, hash: [7; 16] },
            offset: 99,
            path: "/var/log/containers/a.log".into(),
            target: "/var/log/pods/x/a/0.log".into(),
        };
        let map = BTreeMap::from([(e.key(), e.clone())]);
        store.save(&map).unwrap();
        assert_eq!(store.load().unwrap(), Some(map));
        std::fs::write(store.path(), b"{").unwrap();
        assert!(store.load().unwrap_err().to_string().contains("checkpoints.json"));
    }
}
