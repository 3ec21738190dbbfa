//! Any bytes as the YAML config file: `Config::load_with_env` returns an error or
//! a config, and never panics.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use kube_log_gateway::config::Config;
use libfuzzer_sys::fuzz_target;

/// One file per fuzzing process, rewritten for every input.
fn path() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("klg-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("config.yaml")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = path();
    std::fs::write(path, data).unwrap();
    let _ = Config::load_with_env(path, []);
});
