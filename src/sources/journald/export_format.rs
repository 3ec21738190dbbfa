//! Journal Export Format (<https://systemd.io/JOURNAL_EXPORT_FORMATS/>) writer,
//! plus a wrapper around `systemd-journal-remote` that turns it into real
//! journal files. The gateway itself never writes journals: this exists so that
//! the integration tests and the benchmark read genuine sd-journal files made
//! by systemd's own code, not hand-made imitations.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where Debian's `systemd-journal-remote` package installs the binary.
pub const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// One entry: `__REALTIME_TIMESTAMP` (required by journal-remote),
/// `__MONOTONIC_TIMESTAMP` and `_BOOT_ID`, then the fields in order.
#[derive(Debug, Clone, Default)]
pub struct ExportEntry {
    pub realtime_usec: u64,
    pub monotonic_usec: u64,
    pub boot_id: String,
    pub fields: Vec<(String, Vec<u8>)>,
}

impl ExportEntry {
    pub fn new(realtime_usec: u64, monotonic_usec: u64, boot_id: &str) -> Self {
        ExportEntry { realtime_usec, monotonic_usec, boot_id: boot_id.to_string(), fields: Vec::new() }
    }

    pub fn field(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.fields.push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    /// Appends the entry in export format. Values with a newline or a byte
    /// outside printable text use the binary form: name, newline, 64-bit
    /// little-endian length, the raw bytes, newline.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "__REALTIME_TIMESTAMP={}", self.realtime_usec)?;
        writeln!(out, "__MONOTONIC_TIMESTAMP={}", self.monotonic_usec)?;
        writeln!(out, "_BOOT_ID={}", self.boot_id)?;
        for (name, value) in &self.fields {
            let binary = value.iter().any(|&b| b < 0x20 || b == 0x7f) || std::str::from_utf8(value).is_err();
            out.write_all(name.as_bytes())?;
            if binary {
                out.write_all(b"\n")?;
                out.write_all(&(value.len() as u64).to_le_bytes())?;
            } else {
                out.write_all(b"=")?;
            }
            out.write_all(value)?;
            out.write_all(b"\n")?;
        }
        out.write_all(b"\n")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalRemoteError {
    #[error("cannot run {JOURNAL_REMOTE} (install Debian's systemd-journal-remote): {0}")]
    Spawn(io::Error),
    #[error("writing export data to {JOURNAL_REMOTE}: {0}")]
    Write(io::Error),
    #[error("{JOURNAL_REMOTE} --output={output} failed with {status}: {stderr}")]
    Failed { output: PathBuf, status: std::process::ExitStatus, stderr: String },
}

/// Writes `entries` into the journal file `output` (created or appended to;
/// its directory must exist; the name must end in `.journal`).
pub fn journal_remote<I>(output: &Path, entries: I) -> Result<(), JournalRemoteError>
where
    I: IntoIterator<Item = ExportEntry>,
{
    let mut child = Command::new(JOURNAL_REMOTE)
        .arg(format!("--output={}", output.display()))
        .arg("--compress=no")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(JournalRemoteError::Spawn)?;
    let mut stdin = io::BufWriter::with_capacity(1 << 20, child.stdin.take().expect("piped stdin"));
    let mut write_result = Ok(());
    for e in entries {
        if let Err(err) = e.write_to(&mut stdin) {
            write_result = Err(err);
            break;
        }
    }
    let write_result = write_result.and_then(|_| stdin.flush());
    drop(stdin);
    let out = child.wait_with_output().map_err(JournalRemoteError::Spawn)?;
    if !out.status.success() {
        return Err(JournalRemoteError::Failed {
            output: output.to_path_buf(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    write_result.map_err(JournalRemoteError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_binary_fields() {
        let mut out = Vec::new();
        ExportEntry::new(5, 6, "b").field("A", "x").field("M", b"a\nb").write_to(&mut out).unwrap();
        let mut want = b"__REALTIME_TIMESTAMP=5\n__MONOTONIC_TIMESTAMP=6\n_BOOT_ID=b\nA=x\nM\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\n\n");
        assert_eq!(out, want);
    }
}
