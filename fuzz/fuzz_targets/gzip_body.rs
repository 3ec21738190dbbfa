//! `inflate` of an untrusted gzip body: never panics, never returns more than the limit.
#![no_main]

use kube_log_gateway::sources::audit_webhook::body::inflate;
use libfuzzer_sys::fuzz_target;

const LIMIT: u64 = 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    // Also a tiny limit chosen by the input, so that the "just over" edge is reached.
    let small = data.first().map_or(0, |b| *b as u64);
    for limit in [LIMIT, small] {
        if let Ok(out) = inflate(data, limit) {
            assert!(out.len() as u64 <= limit, "{} bytes out, limit {limit}", out.len());
        }
    }
});
