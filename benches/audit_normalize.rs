//! CPU cost of the webhook's per-request work without the network or the disk:
//! `split_and_normalize_400` is the two-pass path (split an EventList into raw
//! events, normalize each into a `Document`), kept to compare with earlier
//! figures; `handler_400` is what the handler does now (one pass, documents
//! written into the spool entry, LZ4).
//!
//! cargo bench --bench audit_normalize
//!
//! With `AUDIT_NORMALIZE_ITERATIONS=N` it skips criterion and runs N requests
//! of 400 events (10 % RequestResponse) through the handler's path once each,
//! for an instruction count that does not depend on the machine's load:
//!
//! ```text
//! cargo bench --bench audit_normalize --no-run
//! AUDIT_NORMALIZE_ITERATIONS=200 valgrind --tool=callgrind --callgrind-out-file=/tmp/X.out \
//!     target/release/deps/audit_normalize-<hash>
//! callgrind_annotate /tmp/X.out | head -40
//! ```

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use kube_log_gateway::document::index_pattern::IndexPattern;
use kube_log_gateway::sample;
use kube_log_gateway::sources::audit_webhook::document::AuditNormalizer;
use kube_log_gateway::sources::audit_webhook::event::split_items;
use kube_log_gateway::sources::audit_webhook::handler::{normalize, Items};

fn normalizer() -> AuditNormalizer {
    AuditNormalizer {
        cluster: "bench".into(),
        host: "gw-0".into(),
        node: "node-1".into(),
        index: IndexPattern::parse("audit-%Y.%m.%d").unwrap(),
        dead_letter: IndexPattern::parse("deadletter-%Y.%m.%d").unwrap(),
        redact_secrets: true,
        data_stream_namespace: "kube_log_gateway".into(),
    }
}

fn bench(c: &mut Criterion) {
    let normalizer = normalizer();
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
        group.bench_with_input(BenchmarkId::new("handler_400", name), &body, |b, body| {
            b.iter(|| request(&normalizer, body.as_bytes()))
        });
    }
    group.finish();
}

/// One request's CPU work as the handler does it, minus TLS, the body read and
/// the commit: parse, normalize into the spool entry, compress it.
fn request(normalizer: &AuditNormalizer, body: &[u8]) -> usize {
    let items = Items::parse(body).unwrap();
    let (entry, errors) = normalize(normalizer, body, items).unwrap();
    assert!(errors.is_empty());
    entry.finish().len()
}

fn iterations(n: usize) {
    let normalizer = normalizer();
    let body = sample::event_list("bench", 400, 10, 1024);
    let mut bytes = 0;
    for _ in 0..n {
        bytes += request(&normalizer, body.as_bytes());
    }
    println!("{n} requests of 400 events, {} events, {bytes} spool entry bytes", n * 400);
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(n) = std::env::var("AUDIT_NORMALIZE_ITERATIONS") {
        iterations(n.parse().expect("AUDIT_NORMALIZE_ITERATIONS is a number"));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
