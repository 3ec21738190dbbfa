//! The resume point: the resourceVersion up to which every event is
//! delivered, saved in `data_dir/events/resource-version` only behind
//! delivery. On restart the watch continues from it; when the API server no
//! longer has it (410 Gone) the source lists again, and the deterministic
//! `_id`s make what was already delivered a 409.

use std::path::Path;

use crate::ack::{PositionFile, PositionFileError, Positions};

/// Where the resume point is saved.
pub fn file(data_dir: &Path) -> PositionFile {
    PositionFile::new(data_dir.join("events").join("resource-version"), "Kubernetes events resourceVersion")
}

/// The saved resume point, `None` if there is none yet.
pub fn load(file: &PositionFile) -> Result<Option<String>, PositionFileError> {
    Ok(file.load()?.map(|b| String::from_utf8_lossy(&b).trim().to_string()).filter(|s| !s.is_empty()))
}

/// The resourceVersion of the newest delivered batch.
#[derive(Debug, Default)]
pub struct ResourceVersion(pub Option<String>);

impl Positions for ResourceVersion {
    type Update = String;

    fn apply(&mut self, version: String) {
        self.0 = Some(version);
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
    fn saved_and_loaded_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path());
        assert_eq!(load(&f).unwrap(), None);
        let mut rv = ResourceVersion::default();
        rv.apply("1234".into());
        f.save(&rv.encode()).unwrap();
        assert_eq!(load(&f).unwrap().as_deref(), Some("1234"));
    }
}
