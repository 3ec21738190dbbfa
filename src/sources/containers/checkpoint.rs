//! Where each file was read to, saved only after delivery.
//!
//! An entry is (dev, inode, fingerprint, offset). The offset is the end of the
//! last *fully delivered logical* message: it never passes the start of a message
//! whose pieces are still pending, so a restart re-reads such a message whole.
//! The file is one [`PositionFile`], replaced atomically, written by
//! [`crate::ack::deliver_in_order`] behind delivered batches. Because document
//! ids are derived from file positions, resuming from a slightly old checkpoint
//! only makes duplicates that Elasticsearch refuses (409).
//!
//! A rotated file that was read to its end stays as a `finished` entry for as
//! long as it lies beside its successor (`0.log.<timestamp>`): sibling discovery
//! then knows it is done. It is forgotten once it is gone from disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::file_id::{FileKey, Fingerprint};
use crate::ack::{PositionFile, PositionFileError, Positions};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub dev: u64,
    pub ino: u64,
    pub fingerprint: Fingerprint,
    pub offset: u64,
    /// The path that matched (informational, and for finding a file rotated while the gateway was down).
    pub path: PathBuf,
    /// The file the path resolved to (for a finished file: where it was last seen).
    pub target: PathBuf,
    /// Read to its end (or given up, the loss counted): a rotated file kept here
    /// only while it is still on disk, so that it is never read again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished: bool,
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

/// A change to the checkpoint that becomes true once the batch carrying it is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    Position(Entry),
    /// The file is finished (closed, or gone while the gateway was down): forget it.
    Forget(FileKey),
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Io(#[from] PositionFileError),
    #[error("checkpoint file {path} is corrupt: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
}

pub struct CheckpointStore {
    file: PositionFile,
}

impl CheckpointStore {
    pub fn new(data_dir: &Path) -> CheckpointStore {
        CheckpointStore { file: PositionFile::new(data_dir.join("containers").join("checkpoints.json"), "checkpoint") }
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn position_file(&self) -> PositionFile {
        self.file.clone()
    }

    /// The saved entries, or None if there is no checkpoint file (first run).
    ///
    /// A file that does not parse (empty after a crash of the filesystem,
    /// garbage) must not stop the node from shipping: it is renamed to
    /// `checkpoints.json.corrupt-<unix seconds>` (kept for a post-mortem), an
    /// error is logged, and the result is an empty checkpoint — not a first
    /// run, so `start_at_first_run: end` does not apply and every file is read
    /// again from its start. The `_id` of a line is its file identity and byte
    /// offset, so lines delivered before come back as 409 "already there":
    /// nothing is stored twice. Only if the file cannot be renamed either is it
    /// an error (naming the file).
    pub fn load(&self) -> Result<Option<BTreeMap<FileKey, Entry>>, CheckpointError> {
        let Some(text) = self.file.load()? else { return Ok(None) };
        match serde_json::from_slice::<OnDisk>(&text) {
            Ok(disk) => Ok(Some(disk.files.into_iter().map(|e| (e.key(), e)).collect())),
            Err(source) => {
                let corrupt = CheckpointError::Corrupt { path: self.path().to_path_buf(), source };
                let aside = self.set_aside().map_err(|_| corrupt)?;
                // An empty checkpoint in its place: a restart before the first
                // save is not taken for a first run either.
                self.file.save(&Checkpoints::default().encode())?;
                tracing::error!(
                    path = %self.path().display(),
                    moved_to = %aside.display(),
                    bytes = text.len(),
                    "the container checkpoint file is corrupt: it was moved aside and every container log file is \
                     read again from its start; lines already delivered keep their _id and are not stored twice"
                );
                Ok(Some(BTreeMap::new()))
            }
        }
    }

    /// Renames the checkpoint file to `<name>.corrupt-<unix seconds>` (a free name).
    fn set_aside(&self) -> std::io::Result<PathBuf> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let path = self.path();
        let mut aside = PathBuf::from(format!("{}.corrupt-{now}", path.display()));
        let mut n = 1;
        while aside.exists() {
            aside = PathBuf::from(format!("{}.corrupt-{now}-{n}", path.display()));
            n += 1;
        }
        std::fs::rename(path, &aside)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(aside)
    }
}

/// Every file's delivered position.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checkpoints(pub BTreeMap<FileKey, Entry>);

impl Positions for Checkpoints {
    type Update = Vec<Update>;

    fn apply(&mut self, updates: Vec<Update>) {
        for u in updates {
            match u {
                Update::Position(e) => {
                    self.0.insert(e.key(), e);
                }
                Update::Forget(k) => {
                    self.0.remove(&k);
                }
            }
        }
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&OnDisk { version: 1, files: self.0.values().cloned().collect() })
            .expect("checkpoints serialize")
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
            finished: false,
        };
        let mut checkpoints = Checkpoints::default();
        checkpoints.apply(vec![Update::Position(e.clone())]);
        store.position_file().save(&checkpoints.encode()).unwrap();
        assert_eq!(store.load().unwrap(), Some(BTreeMap::from([(e.key(), e.clone())])));
        assert!(
            !String::from_utf8(checkpoints.encode()).unwrap().contains("finished"),
            "the flag is only written when set"
        );
        let done = Entry { finished: true, ..e.clone() };
        checkpoints.apply(vec![Update::Position(done.clone())]);
        store.position_file().save(&checkpoints.encode()).unwrap();
        assert_eq!(store.load().unwrap(), Some(BTreeMap::from([(e.key(), done)])));
        checkpoints.apply(vec![Update::Forget(e.key())]);
        assert!(checkpoints.0.is_empty());
    }

    #[test]
    fn a_corrupt_or_empty_checkpoint_is_moved_aside_and_reading_starts_over() {
        for bytes in [&b"{"[..], b"", b"\x00\x01garbage"] {
            let dir = tempfile::tempdir().unwrap();
            let store = CheckpointStore::new(dir.path());
            std::fs::create_dir_all(store.path().parent().unwrap()).unwrap();
            std::fs::write(store.path(), bytes).unwrap();
            // Not a first run (None): every file from its start.
            assert_eq!(store.load().unwrap(), Some(BTreeMap::new()));
            let aside: Vec<PathBuf> = std::fs::read_dir(store.path().parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().contains("checkpoints.json.corrupt-"))
                .collect();
            assert_eq!(aside.len(), 1);
            assert_eq!(std::fs::read(&aside[0]).unwrap(), bytes);
            // A restart before the first save starts over too, not as a first run.
            assert_eq!(store.load().unwrap(), Some(BTreeMap::new()));
        }
    }
}
