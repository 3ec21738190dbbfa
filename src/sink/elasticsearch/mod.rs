//! The Elasticsearch sink: batch → rate limit → bulk `create` → per-item outcome →
//! retry or dead-letter → acknowledge.
//!
//! * [`client`]: one `Transport` per configured URL, failover between them.
//! * [`encoder`]: the NDJSON bulk body, gzip.
//! * [`outcome`]: reads a bulk response item by item.
//! * [`retry`]: which failures are retried, and the backoff schedule.
//! * [`dead_letter`]: documents Elasticsearch refuses, kept with their reason.
//! * [`templates`]: index templates installed at start-up.
//! * [`service`]: the [`Sink`] handle and the batching/bulk workers.

pub mod client;
pub mod dead_letter;
pub mod encoder;
pub mod outcome;
pub mod retry;
pub mod service;
pub mod templates;

pub use service::{Cancelled, DeliveryReport, Sink};
