//! kube-log-gateway: Kubernetes audit events, kubelet journald logs and container
//! logs into Elasticsearch — completely, exactly once.
//!
//! The module layout follows the data (docs/architecture.md):
//!
//! ```text
//! sources/  (audit_webhook, journald, containers: parsing, normalizing, mappings)
//!    │
//!    ▼
//! document/ + ack/   the shared vocabulary: Document, id, JSON writer, time,
//!    │               mappings, dead letters; positions saved behind delivery
//!    ▼
//! spool/             the webhook's durable buffer, drained into the sink
//!    │
//!    ▼
//! sink/              Elasticsearch: batches, bulk, outcomes, retries
//! ```
//!
//! Beside the flow: `serve` (the composition root), `config` (composes the
//! sections each part defines), `server` (HTTP listeners), `setting`,
//! `telemetry`, `shutdown`, `log_throttle`, and the `certs` and `sample`
//! commands.

pub mod ack;
pub mod certs;
pub mod config;
pub mod document;
pub mod log_throttle;
pub mod sample;
pub mod serve;
pub mod server;
pub mod setting;
pub mod shutdown;
pub mod sink;
pub mod sources;
pub mod spool;
pub mod telemetry;
