//! The Elasticsearch sink: batch → rate limit → bulk `create` → per-item outcome →
//! retry or dead-letter → acknowledge. It knows documents, never sources: the
//! index mappings it installs are the ones the sources registered.
//!
//! * [`config`]: the `elasticsearch` section.
//! * [`client`]: one `Transport` per configured URL, failover between them.
//! * [`encoder`]: the NDJSON bulk body, gzip.
//! * [`outcome`]: reads a bulk response item by item.
//! * [`retry`]: which failures are retried, and the backoff schedule.
//! * [`rate_limit`]: the global documents/s limit.
//! * [`dead_letter`]: documents Elasticsearch refuses, kept with their reason.
//! * [`templates`]: index templates installed at start-up.
//! * [`report`]: what a submission's documents became.
//! * [`service`]: the [`Sink`] handle and the batching/bulk workers.

pub mod client;
pub mod config;
pub mod dead_letter;
pub mod encoder;
pub mod outcome;
pub mod rate_limit;
pub mod report;
pub mod retry;
pub mod service;
pub mod templates;

pub use report::{Cancelled, DeliveryReport};
pub use service::Sink;
