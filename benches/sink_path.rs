//! CPU cost of the sink path per document, without Elasticsearch: what the
//! gateway does between a spool entry and a delivered batch. Five spool
//! entries of 400 audit events each (as the webhook writes them: normalized,
//! LZ4) are decoded, their 2,000 documents become one NDJSON bulk body (the
//! default batch), the body is gzipped at level 1, and a filtered bulk
//! response of 2,000 created items is read back into outcomes.
//!
//! cargo bench --bench sink_path
//!
//! With `SINK_PATH_ITERATIONS=N` it skips criterion and runs N batches of
//! 2,000 documents once each, for an instruction count that does not depend on
//! the machine's load. The setup (normalizing the entries) is counted too, so
//! take the difference to a run with `SINK_PATH_ITERATIONS=0`:
//!
//! ```text
//! cargo bench --bench sink_path --no-run
//! SINK_PATH_ITERATIONS=20 valgrind --tool=callgrind --callgrind-out-file=/tmp/X.out \
//!     target/release/deps/sink_path-<hash>
//! callgrind_annotate /tmp/X.out | head -40
//! ```

use criterion::{criterion_group, Criterion, Throughput};
use kube_log_gateway::document::index_pattern::IndexPattern;
use kube_log_gateway::document::Document;
use kube_log_gateway::sample;
use kube_log_gateway::sink::protocol::encoder;
use kube_log_gateway::sink::protocol::outcome::{parse_bulk_response, Outcome};
use kube_log_gateway::sources::audit_webhook::document::AuditNormalizer;
use kube_log_gateway::sources::audit_webhook::handler::{normalize, Items};
use kube_log_gateway::spool;

/// Events per webhook request (one spool entry) and entries per bulk batch:
/// 2,000 documents, the default `elasticsearch.batch.max_documents`.
const EVENTS_PER_ENTRY: usize = 400;
const ENTRIES: usize = 5;
const DOCS: usize = EVENTS_PER_ENTRY * ENTRIES;

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

/// The stored spool entries (10 % RequestResponse events, as in
/// audit_normalize) and the filtered response Elasticsearch gives for them.
struct Input {
    entries: Vec<Vec<u8>>,
    response: Vec<u8>,
}

fn input() -> Input {
    let normalizer = normalizer();
    let entries: Vec<Vec<u8>> = (0..ENTRIES)
        .map(|e| {
            let body = sample::event_list(&format!("bench{e}"), EVENTS_PER_ENTRY, 10, 1024);
            let items = Items::parse(body.as_bytes()).unwrap();
            let (entry, errors) = normalize(&normalizer, body.as_bytes(), items).unwrap();
            assert!(errors.is_empty());
            entry.finish()
        })
        .collect();
    let docs = spool::decode(&entries[0]).unwrap();
    // As client::BULK_FILTER_PATH has Elasticsearch write it for created items.
    let item = format!(r#"{{"create":{{"_index":"{}","status":201}}}}"#, docs[0].index);
    let response = format!(r#"{{"items":[{}]}}"#, vec![item; DOCS].join(",")).into_bytes();
    Input { entries, response }
}

/// One batch: decode, encode, gzip, read the response. Returns the gzipped
/// size, so that nothing is optimized away.
fn batch(input: &Input) -> usize {
    let docs: Vec<Document> = input.entries.iter().flat_map(|raw| spool::decode(raw).unwrap()).collect();
    assert_eq!(docs.len(), DOCS);
    let body = encoder::bulk_body(&docs);
    let gz = kube_log_gateway::sink::transport::gzip(&body);
    let outcomes = parse_bulk_response(&input.response, docs.len()).unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Created));
    gz.len()
}

fn bench(c: &mut Criterion) {
    let input = input();
    let mut group = c.benchmark_group("sink_path");
    group.throughput(Throughput::Elements(DOCS as u64));
    group.bench_function("audit_2000", |b| b.iter(|| batch(&input)));
    group.finish();
}

fn iterations(n: usize) {
    let input = input();
    let mut bytes = 0;
    for _ in 0..n {
        bytes += batch(&input);
    }
    println!("{n} batches of {DOCS} audit documents, {} documents, {bytes} gzipped bytes", n * DOCS);
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(n) = std::env::var("SINK_PATH_ITERATIONS") {
        iterations(n.parse().expect("SINK_PATH_ITERATIONS is a number"));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
