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
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(items) = split_items(data) else { return };
    let n = normalizer();
    for raw in items {
        let doc = match n.normalize(raw) {
            Ok(doc) => doc,
            Err(reason) => n.rejected(raw, &reason),
        };
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&doc.body) {
            panic!("invalid JSON body ({e}): {}", String::from_utf8_lossy(&doc.body));
        }
    }
});
