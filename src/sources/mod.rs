//! Where data comes from: the audit webhook (push) and, on nodes, journald and
//! container log files (pull).

pub mod audit_webhook;
pub mod containers;
pub mod journald;
