//! Where data comes from: the audit webhook (push) and, on nodes, journald and
//! container log files (pull). Each source owns its parsing, its document
//! shape and that document's index mapping (`*/document.rs`).

pub mod audit_webhook;
pub mod containers;
pub mod context;
pub mod journald;

pub use context::{NodeIdentity, SourceContext};
