//! Files the tests write and read.

use std::io::Write;
use std::path::Path;

/// Appends `text` to `path`, creating it.
pub fn append(path: &Path, text: &[u8]) {
    std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text).unwrap();
}

/// The file's text, or "" if it does not exist (yet).
pub fn read_or_empty(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
