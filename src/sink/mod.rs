//! Where documents go: a server that speaks the Elasticsearch bulk API
//! (Elasticsearch 8 and 9, OpenSearch 2 and 3).
//!
//! The contract is one call: [`Sink::deliver`] takes a batch of documents and
//! resolves, once each is final, with a [`DeliveryReport`] (created, already
//! there, dead-lettered), or with [`Cancelled`] when the gateway stops first.
//! Sources know nothing else of the sink. Inside, three parts, each tested alone
//! against literal server answers:
//!
//! * [`protocol`]: what is the same on every server: the bulk body, the one
//!   failure policy (what each answer means), retry, concurrency, batching,
//!   dead letters.
//! * [`transport`]: the pinned `elasticsearch` client, used only to send a
//!   request and read its answer; failover between URLs, TLS, credentials, gzip.
//! * [`flavour`]: what differs per server: version detection from `GET /`, the
//!   mapping dialect and template settings, lifecycle policies (ILM or ISM),
//!   and which server features a setting needs.
//!
//! [`service`] wires them together behind the [`Sink`] handle; [`config`] is
//! the `elasticsearch` section.

pub mod config;
pub mod flavour;
pub mod protocol;
mod report;
mod service;
pub mod transport;

pub use report::{Cancelled, DeliveryReport};
pub use service::{Sink, StartError};

/// The paths the composition root names the sink's configuration and start-up
/// errors by.
pub mod elasticsearch {
    pub use super::config;
    /// The client's errors ([`ClientError`](super::transport::ClientError)).
    pub mod client {
        pub use crate::sink::transport::ClientError;
    }
}
