//! The Elasticsearch sink: batch → rate limit → bulk `create` → per-item outcome →
//! retry or dead-letter → acknowledge. It knows documents, never sources: the
//! index mappings it installs are the ones the sources registered.
//!
//! * [`config`]: the `elasticsearch` section.
//! * [`client`]: one `Transport` per configured URL, failover between them.
//! * [`encoder`]: the NDJSON bulk body, gzip.
//! * [`bulk_response`]: reads a bulk response item by item.
//! * [`policy`]: the one failure policy: what an answer means, per document and
//!   for the whole request (created, duplicate, retry, fail over, split, dead-letter).
//! * [`retry`]: the backoff schedule between attempts.
//! * [`concurrency`]: how many bulk workers may be busy: fixed, or found by AIMD.
//! * [`rate_limit`]: the global documents/s limit.
//! * [`dead_letter`]: documents Elasticsearch refuses, kept with their reason.
//! * [`templates`]: index templates installed at start-up.
//! * [`report`]: what a submission's documents became.
//! * [`service`]: the [`Sink`] handle and the batching/bulk workers.

pub mod bulk_response;
pub mod client;
pub mod concurrency;
pub mod config;
pub mod dead_letter;
pub mod encoder;
pub mod policy;
pub mod rate_limit;
pub mod report;
pub mod retry;
pub mod service;
pub mod templates;

pub use report::{Cancelled, DeliveryReport};
pub use service::Sink;
