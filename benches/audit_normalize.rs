//! CPU cost of the webhook's per-request work without the network or the disk:
//! split an EventList into events, normalize each into a document.
//!
//! cargo bench --bench audit_normalize

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kube_log_gateway::document::index_pattern::IndexPattern;
use kube_log_gateway::sample;
use kube_log_gateway::sources::audit_webhook::document::AuditNormalizer;
use kube_log_gateway::sources::audit_webhook::event::split_items;

fn bench(c: &mut Criterion) {
    let normalizer = AuditNormalizer {
        cluster: "bench".into(),
        host: "gw-0".into(),
        node: "node-1".into(),
        index: IndexPattern::parse("audit-%Y.%m.%d").unwrap(),
        dead_letter: IndexPattern::parse("deadletter-%Y.%m.%d").unwrap(),
        redact_secrets: true,
    };
    let mut group = c.benchmark_group("audit");
    for (name, rr_every) in [("metadata", 0), ("10pct_request_response", 10)] {
        let body = sample::event_list("bench", 400, rr_every, 1024);
        group.throughput(Throughput::Elements(400));
        group.bench_with_input(BenchmarkId::new("split_and_normalize_400", name), &body, |b, body| {
            b.iter(|| {
                let items = split_items(body.as_bytes()).unwrap();
                items.iter().map(|raw| normalizer.normalize(raw).unwrap()).collect::<Vec<_>>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
