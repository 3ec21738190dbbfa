//! The audit webhook source: kube-apiserver's webhook backend POSTs
//! `EventList`s here. Events are validated and normalized in the request,
//! committed to the spool, and only then acknowledged.
//!
//! * [`config`] — `server` and `audit`.
//! * [`tls`], [`auth`] — who may post: client certificates, bearer tokens;
//!   [`tls_reload`] takes a rotated certificate or CA without a restart.
//! * [`body`] — Content-Type, size limits, gzip.
//! * [`event`] — the typed [`event::AuditEvent`]; [`event_list`] — a body
//!   (EventList / Event / array) → events.
//! * [`document`] — one event → one document, in Elastic's
//!   `kubernetes.audit_logs` shape and more (and the audit index mapping);
//!   [`secrets`] redacts Secret values on the way; `document_shape` and
//!   `document_writer` write its JSON.
//! * [`limits`] — the per-client rate limit; [`budget`] — the memory all
//!   requests in flight may hold together.
//! * [`handler`] — the request: all of the above, then the spool, then 200.
//! * [`source`] — the webhook as a source: spool, drain, listener.

pub mod auth;
pub mod body;
pub mod budget;
pub mod config;
pub mod credentials;
pub mod document;
mod document_bodies;
mod document_keys;
mod document_mapping;
mod document_objects;
mod document_shape;
mod document_times;
mod document_writer;
pub mod event;
pub mod event_list;
pub mod handler;
pub mod limits;
pub mod secrets;
pub mod source;
pub mod tls;
pub mod tls_reload;
