//! What a source hears back from the sink about a submission.

/// What became of a submission's documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub created: usize,
    pub duplicates: usize,
    pub dead_lettered: usize,
}

/// The sink stopped (shutdown) before every document was final. Nothing may be
/// acknowledged: the source keeps its data and sends it again next time.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("the Elasticsearch sink stopped before every document was delivered")]
pub struct Cancelled;
