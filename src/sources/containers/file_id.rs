//! Which file is which: (device, inode) plus a fingerprint of the file's head.
//!
//! Paths are not identities: rotation renames files and reuses names. (dev, inode)
//! follows a file across renames, but inodes are reused after deletion, so a hash
//! of the first bytes tells a new file on a recycled inode (or a file truncated and
//! rewritten by copytruncate) from the old one.
//!
//! The fingerprint covers the first `fingerprint_bytes` bytes or up to and including
//! the first newline, whichever is shorter. So it is fixed as soon as the first line
//! is complete and does not change while the file grows: document `_id`s, which
//! include it, stay the same on a replay.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

impl FileKey {
    pub fn of(meta: &std::fs::Metadata) -> FileKey {
        FileKey { dev: meta.dev(), ino: meta.ino() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// How many bytes were hashed.
    pub len: u32,
    /// BLAKE3 of those bytes, first 16 bytes.
    #[serde(with = "hex16")]
    pub hash: [u8; 16],
}

impl Fingerprint {
    fn of(bytes: &[u8]) -> Fingerprint {
        let mut hash = [0u8; 16];
        hash.copy_from_slice(&blake3::hash(bytes).as_bytes()[..16]);
        Fingerprint { len: bytes.len() as u32, hash }
    }

    /// The fingerprint of `file`, or None while it is too young to have one
    /// (no complete first line and fewer than `max` bytes).
    pub fn read(file: &File, max: usize) -> std::io::Result<Option<Fingerprint>> {
        let mut buf = vec![0u8; max];
        let n = read_full_at(file, &mut buf, 0)?;
        let head = &buf[..n];
        match memchr::memchr(b'\n', head) {
            Some(nl) => Ok(Some(Fingerprint::of(&head[..=nl]))),
            None if n == max => Ok(Some(Fingerprint::of(head))),
            None => Ok(None),
        }
    }

    /// Does `file` still start with the bytes this fingerprint was taken from?
    pub fn matches(&self, file: &File) -> std::io::Result<bool> {
        let mut buf = vec![0u8; self.len as usize];
        let n = read_full_at(file, &mut buf, 0)?;
        Ok(n == buf.len() && Fingerprint::of(&buf) == *self)
    }

    pub fn to_bytes(self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..4].copy_from_slice(&self.len.to_le_bytes());
        out[4..].copy_from_slice(&self.hash);
        out
    }
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

mod hex16 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        let text: String = v.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 16];
        if text.len() != 32 {
            return Err(serde::de::Error::custom("fingerprint hash must be 32 hex digits"));
        }
        for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(chunk).map_err(serde::de::Error::custom)?;
            out[i] = u8::from_str_radix(pair, 16).map_err(serde::de::Error::custom)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fingerprint_is_fixed_once_the_first_line_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut f = File::create(&path).unwrap();
        let r = File::open(&path).unwrap();
        f.write_all(b"first li").unwrap();
        assert_eq!(Fingerprint::read(&r, 64).unwrap(), None);
        f.write_all(b"ne\nsecond").unwrap();
        let fp = Fingerprint::read(&r, 64).unwrap().unwrap();
        assert_eq!(fp.len, 11);
        f.write_all(b" line\nthird\n").unwrap();
        assert_eq!(Fingerprint::read(&r, 64).unwrap(), Some(fp));
        assert!(fp.matches(&r).unwrap());
        let json = serde_json::to_string(&fp).unwrap();
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), fp);
        f.set_len(0).unwrap();
        assert!(!fp.matches(&r).unwrap());
    }

    #[test]
    fn long_first_line_is_cut_at_max() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, vec![b'x'; 100]).unwrap();
        let fp = Fingerprint::read(&File::open(&path).unwrap(), 64).unwrap().unwrap();
        assert_eq!(fp.len, 64);
    }
}
