//! kube-log-gateway: Kubernetes audit events, kubelet journald logs and container
//! logs into Elasticsearch — completely, exactly once.
//!
//! The module layout follows the data: `sources/` produce records, `normalize/`
//! turns them into [`document::Document`]s, the [`spool`] holds pushed data durably,
//! and `sink/` writes to Elasticsearch and reports per-document outcomes back.

pub mod certs;
pub mod config;
pub mod document;
pub mod drain;
pub mod index_pattern;
pub mod limits;
pub mod log_throttle;
pub mod normalize;
pub mod sample;
pub mod serve;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod sources;
pub mod spool;
pub mod telemetry;
