//! Journal fields (`NAME=value` data, split on NUL) → `RawEntry` → document:
//! never panics, and the body is valid JSON.
//!
//! `__CURSOR=` and `__REALTIME_TIMESTAMP=` chunks fill the two fields libsystemd
//! hands over outside `sd_journal_enumerate_data`.
#![no_main]

use kube_log_gateway::document::index_pattern::IndexPattern;
use kube_log_gateway::sources::journald::document::JournaldNormalizer;
use kube_log_gateway::sources::journald::entry::RawEntry;
use libfuzzer_sys::fuzz_target;

/// The body is one valid JSON value (as `serde_json::from_slice::<IgnoredAny>`, without
/// its 128-level limit: the document wraps the event, so it is a few levels deeper).
fn assert_json(body: &[u8]) {
    use serde::Deserialize;
    let mut de = serde_json::Deserializer::from_slice(body);
    de.disable_recursion_limit();
    if let Err(e) = serde::de::IgnoredAny::deserialize(&mut de).and_then(|_| de.end()) {
        panic!("invalid JSON body ({e}): {}", String::from_utf8_lossy(body));
    }
}

fuzz_target!(|data: &[u8]| {
    let mut entry = RawEntry::default();
    for chunk in data.split(|b| *b == 0) {
        if let Some(cursor) = chunk.strip_prefix(b"__CURSOR=") {
            entry.cursor = String::from_utf8_lossy(cursor).into_owned();
        } else if let Some(usec) = chunk.strip_prefix(b"__REALTIME_TIMESTAMP=") {
            entry.realtime_usec = std::str::from_utf8(usec).ok().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
        } else {
            entry.set_field(chunk);
        }
    }
    let mut n =
        JournaldNormalizer::new("fuzz".into(), "node-0".into(), IndexPattern::parse("journald-%Y.%m.%d").unwrap());
    let doc = n.normalize(&entry);
    assert_json(&doc.body);
    assert!(!doc.id.is_empty());
    assert!(doc.index.starts_with("journald-"));
    entry.clear();
});
