//! Where documents go. Today there is one sink, Elasticsearch.

pub mod elasticsearch;

pub use elasticsearch::{Cancelled, DeliveryReport, Sink};
