//! Where data comes from: the audit webhook (push) and journald, container
//! log files and Kubernetes events (pull). Each source is a folder that owns
//! its config section, its parsing, its document shape and that document's
//! index mapping, and implements the one contract in [`source`].
//!
//! * [`source`] — the contract: [`Registration`] and [`Source`].
//! * [`context`] — what a source is started with.
//! * [`section`] — a source's own `sources.<label>` section.
//! * [`pull`] — the one runner of pull sources: reader → channel → delivery
//!   in order → positions saved behind it.

pub mod audit_webhook;
pub mod containers;
pub mod context;
pub mod journald;
pub mod kube_api;
pub mod kube_events;
pub mod pull;
pub mod section;
pub mod source;

pub use context::{NodeIdentity, SourceContext};
pub use source::{MappingInputs, Registration, Running, Section, Source, SourceError};

/// Every source the gateway knows, one line each.
pub static REGISTRY: &[&Registration] = &[
    &audit_webhook::source::REGISTRATION,
    &journald::REGISTRATION,
    &containers::REGISTRATION,
    &kube_events::REGISTRATION,
];

/// The source whose label is `label`.
pub fn registration(label: &str) -> Option<&'static Registration> {
    REGISTRY.iter().copied().find(|r| r.label() == label)
}
