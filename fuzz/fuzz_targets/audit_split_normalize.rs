//! A webhook body → `split_items` → each item normalized (or dead-lettered):
//! never panics, and every document body is valid JSON.
#![no_main]

use std::sync::OnceLock;

use kube_log_gateway::document::index_pattern::IndexPattern;
use kube_log_gateway::sources::audit_webhook::document::AuditNormalizer;
use kube_log_gateway::sources::audit_webhook::event::split_items;
use libfuzzer_sys::fuzz_target;

fn normalizer() -> &'static AuditNormalizer {
    static N: OnceLock<AuditNormalizer> = OnceLock::new();
    N.get_or_init(|| AuditNormalizer {
        cluster: "fuzz".into(),
        host: "gateway-0".into(),
        node: "node-0".into(),
        index: IndexPattern::parse("audit-%Y.%m.%d").unwrap(),
        dead_letter: IndexPattern::parse("deadletter-%Y.%m.%d").unwrap(),
        redact_secrets: true,
        data_stream_namespace: "kube_log_gateway".into(),
    })
}

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
    let Ok(items) = split_items(data) else { return };
    let n = normalizer();
    for raw in items {
        let doc = match n.normalize(raw) {
            Ok(doc) => doc,
            Err(reason) => n.rejected(raw, &reason),
        };
        assert_json(&doc.body);
    }
});
