//! The audit webhook source: kube-apiserver's webhook backend POSTs
//! `EventList`s here. Events are validated and normalized in the request,
//! committed to the spool, and only then acknowledged.

pub mod event;
pub mod handler;
