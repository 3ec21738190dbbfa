//! Corrupt spool entries taken out of the way of the others, their raw bytes
//! kept in `data_dir/quarantine/` for a post-mortem.

use std::path::{Path, PathBuf};

use super::{CorruptEntry, Spool, SpoolError};
use crate::telemetry;

impl Spool {
    /// Takes an undecodable entry out of the way of the others: writes its raw
    /// bytes to `data_dir/quarantine/<id>.bin` (fsynced), removes it from the
    /// spool and counts it in `klg_spool_entries_quarantined_total`. Returns
    /// the file. On error the entry stays in the spool.
    pub fn quarantine(&self, entry: &CorruptEntry) -> Result<PathBuf, SpoolError> {
        let dir = self.inner.data_dir.join("quarantine");
        let file = write_quarantine_file(&dir, entry.id, &entry.raw)
            .map_err(|e| self.storage(format!("cannot quarantine entry {} in {}: {e}", entry.id, dir.display())))?;
        telemetry::metrics().spool_entries_quarantined.inc();
        tracing::error!(
            id = entry.id,
            file = %file.display(),
            bytes = entry.raw.len(),
            "spool entry is corrupt ({}); its bytes are kept in the file and it is removed from the spool, \
             the entries behind it are delivered",
            entry.message
        );
        self.remove(entry.id);
        Ok(file)
    }
}

/// `dir/<id>.bin`, or `dir/<id>-<n>.bin` if a file with other bytes is already
/// there (an id used again after a restart). The same bytes again — the
/// removal of a quarantined entry was lost in a crash — reuse the file.
fn write_quarantine_file(dir: &Path, id: u64, raw: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    for n in 0u32.. {
        let name = if n == 0 { format!("{id}.bin") } else { format!("{id}-{n}.bin") };
        let path = dir.join(name);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(raw)?;
                f.sync_all()?;
                std::fs::File::open(dir)?.sync_all()?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if std::fs::read(&path)? == raw {
                    return Ok(path);
                }
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("u32 suffixes exhausted")
}
