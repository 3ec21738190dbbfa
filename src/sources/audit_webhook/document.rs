//! Audit events → documents (docs/fields.md, "audit").
//!
//! The original event is kept under `kubernetes.audit.*` with its own field
//! names; ECS fields are derived beside it as Elastic's Kubernetes integration
//! derives them (`kubernetes.audit_logs`), so that Elastic Security's rules and
//! Kibana's usual fields (`user.name`, `source.ip`, `event.action`, …) work
//! across sources. The parts of the work live beside this file:
//! `document_times` (timestamps), `document_keys` (field names),
//! `document_objects` (embedded objects), `document_bodies` (the searchable
//! body paths), `document_shape` and `document_writer` (the JSON),
//! `document_mapping` (the index mapping).

use std::borrow::Cow;
use std::net::IpAddr;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::Value;

use super::document_keys::{sanitize_keys, sanitize_unknown, sanitize_user};
use super::document_objects::{flatten_deep_objects, looks_like_secret, move_unfit_bodies, redact_event};
use super::document_shape::{
    AuditDocument, EventFields, GatewayFields, Http, HttpResponse, Ip, Ips, Kubernetes, OrchestratorFields, Original,
    OriginalValues, Related, Resource, UserFields, DATASET,
};
use super::document_times::{in_range_stand_in, stamp, Stamp};
use super::document_writer;
use super::event::{parse_event, AuditEvent};
use super::secrets;
use crate::document::dead_letter::{dead_letter_document, Rejection};
use crate::document::ecs::{DataStream, Named};
use crate::document::id::document_id;
use crate::document::index_pattern::IndexPattern;
use crate::document::time::{rfc3339_micros, DayIndex};
use crate::document::{Document, SourceKind};
use crate::spool::entry::EntryWriter;

pub use super::document_mapping::mapping;

pub struct AuditNormalizer {
    pub cluster: String,
    pub host: String,
    /// `kubernetes.node.name`: the node the gateway runs on.
    pub node: String,
    pub index: IndexPattern,
    pub dead_letter: IndexPattern,
    pub redact_secrets: bool,
    /// `data_stream.namespace` (`audit.data_stream_namespace`).
    pub data_stream_namespace: String,
}

impl AuditNormalizer {
    /// What the documents of one request share, worked out once for all of them.
    pub fn batch(&self) -> Batch {
        Batch { index: DayIndex::new(self.index.clone()) }
    }

    /// One event → one document, or the reason it is not a valid event.
    pub fn normalize(&self, raw: &RawValue) -> Result<Document, String> {
        let event = parse_event(raw)?;
        self.build(event, &mut self.batch(), |index, id, doc| {
            let mut body = Vec::with_capacity(raw.get().len() + 768);
            document_writer::write_document(&mut body, doc);
            Ok(Document { index, id: id.to_string(), body: Bytes::from(body), source: SourceKind::Audit })
        })
    }

    /// The same, written straight into the request's spool entry: no buffer of
    /// its own, no copy into the entry afterwards.
    pub fn normalize_into(&self, raw: &RawValue, batch: &mut Batch, entry: &mut EntryWriter) -> Result<(), String> {
        self.write_event(parse_event(raw)?, batch, entry)
    }

    /// An event already parsed → its document, written into `entry`. On an
    /// error nothing is written.
    pub fn write_event(&self, event: AuditEvent<'_>, batch: &mut Batch, entry: &mut EntryWriter) -> Result<(), String> {
        self.build(event, batch, |index, id, doc| {
            entry.push_with(SourceKind::Audit, &index, id, |out| document_writer::write_document(out, doc));
            Ok(())
        })
    }

    /// Normalizes `event` and hands its index, `_id` and document to `put`,
    /// which writes it where the caller keeps documents.
    fn build<R>(
        &self,
        mut event: AuditEvent<'_>,
        batch: &mut Batch,
        put: impl FnOnce(String, &str, &AuditDocument<'_, '_>) -> Result<R, String>,
    ) -> Result<R, String> {
        let sent_stage = event.stage_timestamp.take().expect("parse_event requires stageTimestamp");
        let stage = stamp("stageTimestamp", &sent_stage)?;
        let received = match &event.request_received_timestamp {
            Some(r) => Some(stamp("requestReceivedTimestamp", r)?),
            None => None,
        };
        // From the strings as sent, before any normalization: a resend maps to
        // the same `_id` whatever this version makes of its times.
        let id = document_id(&[
            self.cluster.as_bytes(),
            event.audit_id.as_bytes(),
            event.stage.as_bytes(),
            sent_stage.as_bytes(),
            event.request_uri.as_deref().unwrap_or("").as_bytes(),
            event.verb.as_deref().unwrap_or("").as_bytes(),
        ]);
        let mut flags = Flags::default();
        let mut original = OriginalValues::default();
        let time = match stage {
            Stamp::AsSent(time) => {
                event.stage_timestamp = Some(sent_stage);
                time
            }
            Stamp::Normalized(time, text) => {
                flags.push("timestamp_normalized");
                original.stage_timestamp = Some(sent_stage);
                event.stage_timestamp = Some(Cow::Owned(text));
                time
            }
            Stamp::OutOfRange => {
                flags.push("timestamp_out_of_range");
                let time = in_range_stand_in(&sent_stage, received.as_ref());
                original.stage_timestamp = Some(sent_stage);
                time
            }
        };
        match received {
            None | Some(Stamp::AsSent(_)) => {}
            Some(Stamp::Normalized(_, text)) => {
                flags.push("request_received_timestamp_normalized");
                original.request_received_timestamp = event.request_received_timestamp.replace(Cow::Owned(text));
            }
            Some(Stamp::OutOfRange) => {
                flags.push("request_received_timestamp_out_of_range");
                original.request_received_timestamp = event.request_received_timestamp.take();
            }
        }
        sanitize_keys(&mut event.annotations);
        sanitize_user(&mut event.user);
        if let Some(imp) = &mut event.impersonated_user {
            sanitize_user(imp);
        }
        sanitize_unknown(&mut event.unknown);
        if let Some(r) = &mut event.object_ref {
            sanitize_unknown(&mut r.unknown);
        }
        if let Some(r) = &mut event.response_status {
            sanitize_unknown(&mut r.unknown);
        }
        if self.redact_secrets && redact_event(&mut event) {
            flags.push("redacted_unparsable_object");
        }
        if flatten_deep_objects(&mut event) {
            flags.push("nested_too_deep");
        }
        for flag in move_unfit_bodies(&mut event, &mut original) {
            flags.push(flag);
        }
        let code = event.response_status.as_ref().and_then(|s| s.code);
        let decision = event.annotations.get("authorization_k8s_io/decision").map(|d| d.as_ref());
        let outcome = match (decision, code) {
            (Some("forbid"), _) => "failure",
            (_, Some(c)) if c < 400 => "success",
            (_, Some(_)) => "failure",
            (_, None) => "unknown",
        };
        let gateway = (!flags.0.is_empty())
            .then(|| GatewayFields { flags: &flags.0, original: (!original.is_empty()).then_some(&original) });
        let timestamp = match &event.stage_timestamp {
            Some(t) => Cow::Borrowed(t.as_ref()),
            // Out of range: when the gateway received it.
            None => Cow::Owned(rfc3339_micros(time)),
        };
        // `source.ip` takes every address, `related.ip` each once.
        let ips: Vec<IpAddr> = event.source_ips.iter().filter_map(|ip| ip.parse().ok()).collect();
        let mut related_ips: Vec<IpAddr> = Vec::with_capacity(ips.len());
        for ip in &ips {
            if !related_ips.contains(ip) {
                related_ips.push(*ip);
            }
        }
        let mut related_users: Vec<&str> = Vec::with_capacity(2);
        let impersonated = event.impersonated_user.as_ref().and_then(|u| u.username.as_deref());
        for name in [event.user.username.as_deref(), impersonated].into_iter().flatten() {
            if !name.is_empty() && !related_users.contains(&name) {
                related_users.push(name);
            }
        }
        let object_ref = event.object_ref.as_ref();
        let resource = object_ref
            .filter(|r| r.resource.is_some() || r.name.is_some())
            .map(|r| Resource { kind: r.resource.as_deref(), name: r.name.as_deref() });
        let doc = AuditDocument {
            timestamp: &timestamp,
            data_stream: DataStream::logs(DATASET, &self.data_stream_namespace),
            event: EventFields { dataset: DATASET, kind: "event", id: &id, action: event.verb.as_deref(), outcome },
            orchestrator: OrchestratorFields {
                kind: "kubernetes",
                cluster: Named { name: &self.cluster },
                namespace: object_ref.and_then(|r| r.namespace.as_deref()),
                resource,
                api_version: object_ref.and_then(|r| r.api_version.as_deref()),
            },
            host: Named { name: &self.host },
            user: (event.user.username.is_some() || event.user.uid.is_some())
                .then_some(UserFields { name: event.user.username.as_deref(), id: event.user.uid.as_deref() }),
            source: (!ips.is_empty()).then_some(Ips { ip: &ips }),
            client: ips.first().map(|&ip| Ip { ip }),
            related: (!related_users.is_empty() || !related_ips.is_empty())
                .then_some(Related { user: &related_users, ip: &related_ips }),
            user_agent: event.user_agent.as_deref().map(|original| Original { original }),
            url: event.request_uri.as_deref().map(|original| Original { original }),
            http: code.map(|status_code| Http { response: HttpResponse { status_code } }),
            kubernetes: Kubernetes { node: Named { name: &self.node }, audit: &event },
            kube_log_gateway: gateway,
        };
        let index = batch.index.index_for(time);
        put(index, &id, &doc)
    }

    /// The body of `raw`'s document from both writers: the hand-written one
    /// (first) and serde's, the oracle it must match byte for byte.
    #[cfg(test)]
    pub(super) fn both_bodies(&self, raw: &RawValue) -> Result<(String, String), String> {
        self.build(parse_event(raw)?, &mut self.batch(), |_, _, doc| {
            let mut serde = Vec::new();
            crate::document::json::write(&mut serde, doc).expect("serializes");
            let mut hand = Vec::new();
            document_writer::write_document(&mut hand, doc);
            Ok((String::from_utf8(hand).expect("UTF-8"), String::from_utf8(serde).expect("UTF-8")))
        })
    }

    /// The dead-letter document for an event the gateway refused. Its Secret
    /// values are redacted too, on a best-effort parse; an item that looks like
    /// a Secret but cannot be parsed is not kept at all, only the reason.
    pub fn rejected(&self, raw: &RawValue, reason: &str) -> Document {
        let mut original = Cow::Borrowed(raw.get());
        if self.redact_secrets && looks_like_secret(raw.get()) {
            original = match serde_json::from_str::<Value>(raw.get()) {
                Ok(mut v) => {
                    secrets::redact(&mut v);
                    Cow::Owned(v.to_string())
                }
                Err(e) => Cow::Owned(format!(
                    "{}: the item looks like a Secret and cannot be parsed to redact it ({e})",
                    secrets::REDACTED
                )),
            };
        }
        let id = document_id(&[self.cluster.as_bytes(), b"rejected", raw.get().as_bytes()]);
        dead_letter_document(
            &self.dead_letter,
            SourceKind::Audit,
            "",
            &id,
            &original,
            &Rejection { status: None, error_type: "invalid_audit_event".into(), reason: reason.into() },
        )
    }
}

/// What the documents of one request share, worked out once per request
/// rather than per document (it was ≈ 2 % of the webhook's instructions):
/// the index name, formatted again only when an event's day changes.
pub struct Batch {
    index: DayIndex,
}

/// `kube_log_gateway.flags`: what the gateway changed or could not keep.
#[derive(Default)]
struct Flags(Vec<&'static str>);

impl Flags {
    fn push(&mut self, flag: &'static str) {
        self.0.push(flag);
    }
}

/// The normalizer the unit tests of this source use: cluster `prod`, host `gw-0`.
#[cfg(test)]
pub(crate) fn test_normalizer() -> AuditNormalizer {
    AuditNormalizer {
        cluster: "prod".into(),
        host: "gw-0".into(),
        node: "node-1".into(),
        index: IndexPattern::parse("audit-%Y.%m.%d").unwrap(),
        dead_letter: IndexPattern::parse("deadletter-%Y.%m.%d").unwrap(),
        redact_secrets: true,
        data_stream_namespace: "default".into(),
    }
}

#[cfg(test)]
#[path = "document_tests.rs"]
mod tests;
