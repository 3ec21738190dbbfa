//! A saturated machine for the length of a test: `scripts/pressure.sh` (CPU hogs
//! and an fsync disk writer), in a state directory of its own so that it stops
//! only its own hogs, stopped when the guard is dropped (a failing test too).

use std::process::Command;

pub struct Pressure {
    state: tempfile::TempDir,
}

impl Pressure {
    fn script(state: &std::path::Path, action: &str) -> bool {
        Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pressure.sh"))
            .arg(action)
            .env("PRESSURE_STATE_DIR", state)
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn start() -> Pressure {
        let state = tempfile::tempdir().unwrap();
        assert!(Pressure::script(state.path(), "start"), "scripts/pressure.sh start failed");
        Pressure { state }
    }
}

impl Drop for Pressure {
    fn drop(&mut self) {
        Pressure::script(self.state.path(), "stop");
    }
}
