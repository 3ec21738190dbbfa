//! Logs (tracing) and metrics (Prometheus text format on the admin listener).
//!
//! Metrics are process-global: every module counts through [`metrics()`], and a
//! source that has counters of its own registers them with [`register`].
//! docs/operations.md explains what each one means.

use std::sync::{Mutex, OnceLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::document::SourceKind;
use crate::setting::{key_error, ConfigError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are snake_case in Prometheus
pub enum DocOutcome {
    /// Written (201).
    created,
    /// Already there (409 on create): an earlier attempt delivered it.
    duplicate,
    /// Refused for good and written to the dead-letter index.
    dead_lettered,
    /// Refused, and the dead-letter index refused it too: appended to the file.
    dead_letter_file,
    /// A 429/5xx on this item: it will be sent again.
    retried,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DocLabels {
    /// The source's own label ([`SourceKind::as_str`]): a new source needs no entry here.
    pub source: &'static str,
    pub outcome: DocOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are snake_case in Prometheus
pub enum BulkResult {
    ok,
    transport_error,
    http_error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BulkLabels {
    pub result: BulkResult,
}

/// Why an index refused writes for now (the sink's `policy::Block`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are snake_case in Prometheus
pub enum BlockReason {
    /// `index_closed_exception`.
    index_closed,
    /// `index.blocks.write`.
    write,
    /// `index.blocks.read_only`.
    read_only,
    /// `index.blocks.read_only_allow_delete` (the flood-stage disk watermark).
    read_only_allow_delete,
    /// Any other `cluster_block_exception`.
    cluster_block,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlockLabels {
    pub reason: BlockReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are snake_case in Prometheus
pub enum EventResult {
    /// Spooled and acknowledged with 2xx.
    accepted,
    /// Invalid (missing required field, not an object): reported and dead-lettered.
    rejected,
    /// Refused with 429 by the per-client rate limit.
    rate_limited,
    /// Refused with 429 because the spool was full.
    spool_full,
    /// Refused with 503 because the spool could not write (a full disk, an I/O error).
    spool_error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub result: EventResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are snake_case in Prometheus
pub enum ReloadResult {
    /// The new files were taken: new handshakes use them.
    ok,
    /// The new files were refused (unreadable, not PEM, key not the certificate's,
    /// no CA): the previous configuration stays in use.
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: ReloadResult,
}

/// When a data stream lookup found an earlier copy of a document (see
/// `sink::data_stream`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are snake_case in Prometheus
pub enum CopyFound {
    /// Before the write: the document was not sent again.
    before_write,
    /// After the write, which a rollover sent to a newer backing index: the
    /// copy just written was deleted again.
    after_write,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CopyLabels {
    pub when: CopyFound,
}

pub struct Metrics {
    pub webhook_requests: Family<CodeLabels, Counter>,
    pub webhook_request_seconds: Histogram,
    pub audit_events: Family<EventLabels, Counter>,
    pub spool_bytes: Gauge,
    pub spool_entries: Gauge,
    pub spool_in_flight_entries: Gauge,
    pub spool_in_flight_bytes: Gauge,
    pub spool_entries_quarantined: Counter,
    pub spool_reopens: Counter,
    pub documents: Family<DocLabels, Counter>,
    pub bulk_requests: Family<BulkLabels, Counter>,
    pub bulk_seconds: Histogram,
    pub es_failovers: Counter,
    pub es_concurrency_limit: Gauge,
    pub es_in_flight_requests: Gauge,
    pub index_blocked: Family<BlockLabels, Counter>,
    pub documents_too_large: Counter,
    pub data_stream_lookups: Counter,
    pub data_stream_copies: Family<CopyLabels, Counter>,
    pub tls_handshake_failures: Counter,
    pub tls_reloads: Family<ReloadLabels, Counter>,
}

struct Global {
    metrics: &'static Metrics,
    registry: Mutex<Registry>,
}

static GLOBAL: OnceLock<Global> = OnceLock::new();

fn global() -> &'static Global {
    GLOBAL.get_or_init(|| {
        let metrics: &'static Metrics = Box::leak(Box::new(Metrics {
            webhook_requests: Family::default(),
            webhook_request_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            audit_events: Family::default(),
            spool_bytes: Gauge::default(),
            spool_entries: Gauge::default(),
            spool_in_flight_entries: Gauge::default(),
            spool_in_flight_bytes: Gauge::default(),
            spool_entries_quarantined: Counter::default(),
            spool_reopens: Counter::default(),
            documents: Family::default(),
            bulk_requests: Family::default(),
            bulk_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            es_failovers: Counter::default(),
            es_concurrency_limit: Gauge::default(),
            es_in_flight_requests: Gauge::default(),
            index_blocked: Family::default(),
            documents_too_large: Counter::default(),
            data_stream_lookups: Counter::default(),
            data_stream_copies: Family::default(),
            tls_handshake_failures: Counter::default(),
            tls_reloads: Family::default(),
        }));
        let mut r = Registry::with_prefix("klg");
        r.register("webhook_requests", "Webhook HTTP responses by status code", metrics.webhook_requests.clone());
        r.register(
            "webhook_request_seconds",
            "Time from request start to response, including the spool commit",
            metrics.webhook_request_seconds.clone(),
        );
        r.register("audit_events", "Audit events received, by result", metrics.audit_events.clone());
        r.register("spool_bytes", "Bytes waiting in the spool", metrics.spool_bytes.clone());
        r.register("spool_entries", "Webhook batches waiting in the spool", metrics.spool_entries.clone());
        r.register(
            "spool_in_flight_entries",
            "Spool entries handed to the sink and not yet delivered (at most spool.max_in_flight_entries)",
            metrics.spool_in_flight_entries.clone(),
        );
        r.register(
            "spool_in_flight_bytes",
            "Bytes of documents of those entries, held in memory until delivered (spool.max_in_flight_bytes, or one entry)",
            metrics.spool_in_flight_bytes.clone(),
        );
        r.register(
            "spool_entries_quarantined",
            "Spool entries that did not decode: moved to data_dir/quarantine/ and removed from the spool",
            metrics.spool_entries_quarantined.clone(),
        );
        r.register(
            "spool_reopens",
            "Times the spool database was opened again after an I/O error (a full disk)",
            metrics.spool_reopens.clone(),
        );
        r.register(
            "documents",
            "Documents finished by the Elasticsearch sink, by source and outcome",
            metrics.documents.clone(),
        );
        r.register("bulk_requests", "Bulk requests sent, by result", metrics.bulk_requests.clone());
        r.register("bulk_seconds", "Bulk request round trip time", metrics.bulk_seconds.clone());
        r.register(
            "elasticsearch_failovers",
            "Times the sink moved to the next Elasticsearch URL",
            metrics.es_failovers.clone(),
        );
        r.register(
            "elasticsearch_concurrency_limit",
            "Bulk workers allowed at once: the adaptive controller's current limit, or max_in_flight when fixed",
            metrics.es_concurrency_limit.clone(),
        );
        r.register(
            "elasticsearch_in_flight_requests",
            "Bulk requests sent and not yet answered",
            metrics.es_in_flight_requests.clone(),
        );
        r.register(
            "index_blocked",
            "Document attempts refused because the index is closed or blocked, by reason; they are retried",
            metrics.index_blocked.clone(),
        );
        r.register(
            "documents_too_large",
            "Documents dead-lettered because no bulk request holding them can ever be accepted",
            metrics.documents_too_large.clone(),
        );
        r.register(
            "data_stream_lookups",
            "Documents looked up in a data stream's earlier backing indices before or after a write (resends across a rollover)",
            metrics.data_stream_lookups.clone(),
        );
        r.register(
            "data_stream_copies_found",
            "Documents found already stored in an earlier backing index of their data stream, not written twice, by when",
            metrics.data_stream_copies.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes refused or timed out (no or untrusted client certificate, wrong protocol)",
            metrics.tls_handshake_failures.clone(),
        );
        r.register(
            "tls_reloads",
            "Changed webhook TLS files (certificate, key, client CA) taken (ok) or refused, keeping the previous ones (error)",
            metrics.tls_reloads.clone(),
        );
        Global { metrics, registry: Mutex::new(r) }
    })
}

pub fn metrics() -> &'static Metrics {
    global().metrics
}

/// Lets a module register metrics of its own (under the `klg_` prefix).
pub fn register(f: impl FnOnce(&mut Registry)) {
    f(&mut global().registry.lock().expect("metrics registry poisoned"));
}

/// The Prometheus text exposition of every metric.
pub fn encode() -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &global().registry.lock().expect("metrics registry poisoned"))
        .expect("writing to a String cannot fail");
    out
}

pub fn count_document(source: SourceKind, outcome: DocOutcome) {
    metrics().documents.get_or_create(&DocLabels { source: source.as_str(), outcome }).inc();
}

/// Document outcomes of one bulk response, added to `klg_documents_total` once
/// per (source, outcome) instead of once per document.
#[derive(Default)]
pub struct DocTally(Vec<(SourceKind, DocOutcome, u64)>);

impl DocTally {
    pub fn add(&mut self, source: SourceKind, outcome: DocOutcome) {
        match self.0.iter_mut().find(|(s, o, _)| *s == source && *o == outcome) {
            Some((_, _, n)) => *n += 1,
            None => self.0.push((source, outcome, 1)),
        }
    }

    pub fn record(self) {
        for (source, outcome, n) in self.0 {
            metrics().documents.get_or_create(&DocLabels { source: source.as_str(), outcome }).inc_by(n);
        }
    }
}

/// Sets up `tracing`: `RUST_LOG` wins over `log.level`.
pub fn init_tracing(cfg: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    // Colours only on a terminal: in files and `kubectl logs` they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if cfg.format == "json" { builder.json().try_init() } else { builder.try_init() };
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter, e.g. `info` or `kube_log_gateway=debug`; `RUST_LOG` wins if set.
    #[serde(default = "defaults::log_level")]
    pub level: String,
    /// `text` or `json`.
    #[serde(default = "defaults::log_format")]
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: defaults::log_level(), format: defaults::log_format() }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.format.as_str(), "text" | "json") {
            return Err(key_error("log.format", format!("{:?} is not `text` or `json`", self.format)));
        }
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map_err(|e| key_error("log.level", format!("{:?}: {e}", self.level)))?;
        Ok(())
    }
}

mod defaults {
    pub fn log_level() -> String {
        "info".into()
    }
    pub fn log_format() -> String {
        "text".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_adds_per_source_and_outcome() {
        let labels = DocLabels { source: "containers", outcome: DocOutcome::retried };
        let before = metrics().documents.get_or_create(&labels).get();
        let mut t = DocTally::default();
        t.add(SourceKind::Containers, DocOutcome::retried);
        t.add(SourceKind::Containers, DocOutcome::retried);
        t.add(SourceKind::Journald, DocOutcome::retried);
        t.record();
        assert_eq!(metrics().documents.get_or_create(&labels).get(), before + 2);
    }

    #[test]
    fn counters_show_up_in_the_exposition() {
        count_document(SourceKind::Audit, DocOutcome::duplicate);
        let text = encode();
        assert!(text.contains("klg_documents_total{source=\"audit\",outcome=\"duplicate\"}"), "{text}");
    }
}
