//! `parse_klog` on any (lossily decoded) line: never panics, and the file it
//! returns is a substring of the line.
#![no_main]

use kube_log_gateway::sources::journald::klog::parse_klog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    if let Some(k) = parse_klog(&line) {
        assert!(!k.file.is_empty());
        let (start, end) = (line.as_ptr() as usize, line.as_ptr() as usize + line.len());
        let file = k.file.as_ptr() as usize;
        assert!(file >= start && file + k.file.len() <= end, "file {:?} is not borrowed from the line", k.file);
        assert!(line.contains(&format!("{}:{}]", k.file, k.line)) || line.contains(&format!("{}:", k.file)));
        assert!(["info", "warning", "error", "fatal"].contains(&k.level));
    }
});
