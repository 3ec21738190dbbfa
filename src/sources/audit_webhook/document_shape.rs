//! The audit document's shape (docs/fields.md, "audit"): the fields and their
//! order, as serde structs. `document_writer` writes the same bytes by hand;
//! the serde serialization of [`AuditDocument`] through
//! `document::json::write` stays as the oracle its tests compare with.
//!
//! The shape is a superset of the documents Elastic's Kubernetes integration
//! makes of audit events (`kubernetes.audit_logs`): the same names, the same
//! values, and what the gateway keeps beside them.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Serialize;

use super::event::{AuditEvent, RawObject};
use crate::document::ecs::{DataStream, Named};

/// `event.dataset` and `data_stream.dataset`: the integration's name.
pub const DATASET: &str = "kubernetes.audit_logs";

/// The document of one event, as references into the event and the
/// normalizer.
#[derive(Serialize)]
pub(super) struct AuditDocument<'e, 'a> {
    #[serde(rename = "@timestamp")]
    pub(super) timestamp: &'e str,
    pub(super) data_stream: DataStream<'e>,
    pub(super) event: EventFields<'e>,
    pub(super) orchestrator: OrchestratorFields<'e>,
    pub(super) host: Named<'e>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user: Option<UserFields<'e>>,
    /// Every address of `sourceIPs` that is one, in the order sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) source: Option<Ips<'e>>,
    /// The first of them: the client as kube-apiserver saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) client: Option<Ip>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) related: Option<Related<'e>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user_agent: Option<Original<'e>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) url: Option<Original<'e>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) http: Option<Http>,
    pub(super) kubernetes: Kubernetes<'e, 'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) kube_log_gateway: Option<GatewayFields<'e, 'a>>,
}

/// `event`. `event.ingested` is not here: the sink stamps it when the
/// document is sent to Elasticsearch.
#[derive(Serialize)]
pub(super) struct EventFields<'e> {
    pub(super) dataset: &'static str,
    pub(super) kind: &'static str,
    pub(super) id: &'e str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) action: Option<&'e str>,
    pub(super) outcome: &'static str,
}

/// `orchestrator`: Kubernetes, this cluster, and what the request acted on.
#[derive(Serialize)]
pub(super) struct OrchestratorFields<'e> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) cluster: Named<'e>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) namespace: Option<&'e str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) resource: Option<Resource<'e>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) api_version: Option<&'e str>,
}

#[derive(Serialize)]
pub(super) struct Resource<'e> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(super) kind: Option<&'e str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<&'e str>,
}

#[derive(Serialize)]
pub(super) struct UserFields<'e> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<&'e str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'e str>,
}

#[derive(Serialize)]
pub(super) struct Ips<'e> {
    pub(super) ip: &'e [IpAddr],
}

#[derive(Serialize)]
pub(super) struct Ip {
    pub(super) ip: IpAddr,
}

/// `related`: every user name and address the event names, once each.
#[derive(Serialize)]
pub(super) struct Related<'e> {
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub(super) user: &'e [&'e str],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub(super) ip: &'e [IpAddr],
}

#[derive(Serialize)]
pub(super) struct Original<'e> {
    pub(super) original: &'e str,
}

#[derive(Serialize)]
pub(super) struct Http {
    pub(super) response: HttpResponse,
}

#[derive(Serialize)]
pub(super) struct HttpResponse {
    pub(super) status_code: i64,
}

#[derive(Serialize)]
pub(super) struct Kubernetes<'e, 'a> {
    pub(super) node: Named<'e>,
    pub(super) audit: &'e AuditEvent<'a>,
}

/// What the gateway had to rewrite or move, as it was sent: timestamps
/// Elasticsearch cannot store, bodies whose shape the body mapping cannot
/// take (kept here unindexed).
#[derive(Default, Serialize)]
pub(super) struct OriginalValues<'a> {
    #[serde(rename = "stageTimestamp", skip_serializing_if = "Option::is_none")]
    pub(super) stage_timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "requestReceivedTimestamp", skip_serializing_if = "Option::is_none")]
    pub(super) request_received_timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "requestObject", skip_serializing_if = "Option::is_none")]
    pub(super) request_object: Option<RawObject<'a>>,
    #[serde(rename = "responseObject", skip_serializing_if = "Option::is_none")]
    pub(super) response_object: Option<RawObject<'a>>,
}

impl OriginalValues<'_> {
    pub(super) fn is_empty(&self) -> bool {
        self.stage_timestamp.is_none()
            && self.request_received_timestamp.is_none()
            && self.request_object.is_none()
            && self.response_object.is_none()
    }
}

#[derive(Serialize)]
pub(super) struct GatewayFields<'e, 'a> {
    pub(super) flags: &'e [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) original: Option<&'e OriginalValues<'a>>,
}
