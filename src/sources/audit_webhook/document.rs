//! Audit events → documents (docs/fields.md, "audit"), and their index mapping.
//!
//! The original event is kept under `kubernetes.audit.*` with its own field
//! names; ECS fields are derived beside it so that Kibana's usual fields
//! (`user.name`, `source.ip`, `event.action`, …) work across sources.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::document_writer::{
    self, AuditDocument, EventFields, GatewayFields, Http, HttpResponse, Kubernetes, Original, OriginalTimes,
    SourceFields, UserFields,
};
use super::event::{parse_event, AuditEvent, RawObject, Unknown, UserInfo};
use super::secrets;
use crate::document::dead_letter::{dead_letter_document, Rejection};
use crate::document::ecs::Named;
use crate::document::id::document_id;
use crate::document::index_pattern::IndexPattern;
use crate::document::mapping::IndexMapping;
use crate::document::time::{ingested_now, rfc3339_micros, DayIndex};
use crate::document::{Document, SourceKind};
use crate::spool::entry::EntryWriter;

pub struct AuditNormalizer {
    pub cluster: String,
    pub host: String,
    /// `kubernetes.node.name`: the node the gateway runs on.
    pub node: String,
    pub index: IndexPattern,
    pub dead_letter: IndexPattern,
    pub redact_secrets: bool,
}

impl AuditNormalizer {
    /// What the documents of one request share, worked out once for all of them.
    pub fn batch(&self) -> Batch {
        Batch { index: DayIndex::new(self.index.clone()), ingested: ingested_now() }
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
        let mut original = OriginalTimes::default();
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
        let ingested = &batch.ingested;
        let code = event.response_status.as_ref().and_then(|s| s.code);
        let decision = event.annotations.get("authorization_k8s_io/decision").map(|d| d.as_ref());
        let outcome = match (decision, code) {
            (Some("forbid"), _) => "failure",
            (_, Some(c)) if c < 400 => "success",
            (_, Some(_)) => "failure",
            (_, None) => "unknown",
        };
        let gateway = (!flags.0.is_empty()).then(|| GatewayFields {
            flags: &flags.0,
            original: (original.stage_timestamp.is_some() || original.request_received_timestamp.is_some())
                .then_some(&original),
        });
        let timestamp = match &event.stage_timestamp {
            Some(t) => Cow::Borrowed(t.as_ref()),
            // Out of range: when the gateway received it.
            None => Cow::Owned(rfc3339_micros(time)),
        };
        let doc = AuditDocument {
            timestamp: &timestamp,
            event: EventFields {
                dataset: "kubernetes.audit",
                kind: "event",
                id: &id,
                ingested,
                action: event.verb.as_deref(),
                outcome,
            },
            cluster: &self.cluster,
            host: Named { name: &self.host },
            user: (event.user.username.is_some() || event.user.uid.is_some())
                .then_some(UserFields { name: event.user.username.as_deref(), id: event.user.uid.as_deref() }),
            source: event.source_ips.first().and_then(|ip| ip.parse().ok()).map(|ip| SourceFields { ip }),
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
/// rather than per document (each was ≈ 2 % of the webhook's instructions):
/// the index name, formatted again only when an event's day changes, and
/// `event.ingested` — one time for the request, as journald and the container
/// source take one per batch.
pub struct Batch {
    index: DayIndex,
    ingested: String,
}

/// `kube_log_gateway.flags`: what the gateway changed or could not keep.
#[derive(Default)]
struct Flags(Vec<&'static str>);

impl Flags {
    fn push(&mut self, flag: &'static str) {
        self.0.push(flag);
    }
}

/// What became of a timestamp on its way to a `date_nanos` field.
/// `@timestamp` for an event whose `stageTimestamp` is outside `date_nanos`. It
/// must depend on the event alone, never on when it arrived: the index is chosen
/// from it, and a resend on another day must land in the same index to be a 409.
/// The event's own `requestReceivedTimestamp` when that one is usable, else the
/// nearest end of the range (1970-01-01 or 2262-04-11).
fn in_range_stand_in(sent: &str, received: Option<&Stamp>) -> DateTime<Utc> {
    match received {
        Some(Stamp::AsSent(t) | Stamp::Normalized(t, _)) => *t,
        _ => {
            let before_1970 = sent.get(..4).and_then(|y| y.parse::<u32>().ok()).is_some_and(|y| y < 1970);
            if before_1970 {
                DateTime::UNIX_EPOCH
            } else {
                DateTime::from_timestamp_nanos(i64::MAX)
            }
        }
    }
}

enum Stamp {
    /// Elasticsearch reads it as sent.
    AsSent(DateTime<Utc>),
    /// Valid RFC 3339 that Elasticsearch would refuse (`t`, `z`, a space for
    /// `T`, a leap second, more than 9 fractional digits): rewritten in UTC.
    Normalized(DateTime<Utc>, String),
    /// Outside what `date_nanos` holds (1970 to 2262-04-11).
    OutOfRange,
}

/// Parses an RFC 3339 time and decides how Elasticsearch can take it; an error
/// names the field when it is not a time at all.
fn stamp(field: &str, sent: &str) -> Result<Stamp, String> {
    let not_a_time = |e: &dyn std::fmt::Display| format!("field `{field}` {sent:?} is not an RFC 3339 time: {e}");
    // RFC 3339 §5.6 allows `t`/`z` and (NOTE) a space for `T`; chrono may not.
    let canonical: Cow<str> = match sent.as_bytes() {
        [.., b'z'] | [_, _, _, _, _, _, _, _, _, _, b't' | b' ', ..] => {
            let mut b = sent.as_bytes().to_vec();
            if b.len() > 10 && matches!(b[10], b't' | b' ') {
                b[10] = b'T';
            }
            if let Some(last @ b'z') = b.last_mut() {
                *last = b'Z';
            }
            Cow::Owned(String::from_utf8(b).map_err(|e| not_a_time(&e))?)
        }
        _ => Cow::Borrowed(sent),
    };
    let mut time = DateTime::parse_from_rfc3339(&canonical).map_err(|e| not_a_time(&e))?.with_timezone(&Utc);
    // chrono keeps a leap second (`:60`) as a nanosecond count past 10⁹;
    // Elasticsearch has no leap seconds. It becomes the last instant of `:59`.
    let leap = time.nanosecond() >= 1_000_000_000;
    if leap {
        time = time.with_nanosecond(999_999_999).expect("999999999 ns is a valid time");
    }
    if time.timestamp_nanos_opt().is_none_or(|n| n < 0) {
        return Ok(Stamp::OutOfRange);
    }
    if !leap && matches!(canonical, Cow::Borrowed(_)) && at_most_nanos(sent) {
        return Ok(Stamp::AsSent(time));
    }
    Ok(Stamp::Normalized(time, time.to_rfc3339_opts(SecondsFormat::AutoSi, true)))
}

/// Whether a parsed RFC 3339 time has at most 9 fractional digits (what
/// `date_nanos` parses).
fn at_most_nanos(s: &str) -> bool {
    match s.as_bytes().get(19) {
        Some(b'.') => s.as_bytes()[20..].iter().take_while(|b| b.is_ascii_digit()).count() <= 9,
        _ => true,
    }
}

/// A key Elasticsearch cannot take as a field name, or would read as a path:
/// empty, only whitespace (as Java sees it), or with dots.
fn needs_new_name(key: &str) -> bool {
    key.is_empty() || key.contains('.') || key.chars().all(java_whitespace)
}

/// `Character.isWhitespace` is what Elasticsearch checks a blank name with; it
/// includes U+001C–U+001F, which `char::is_whitespace` does not. (The union is
/// a little wider than Java's; a key renamed for nothing is harmless.)
fn java_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The name a key gets (docs/fields.md, "Keys"): dots become `_`, an empty key
/// `_empty_`, a key of only whitespace `_blank_`; `taken` says which names are
/// in use, and a clash gets `~2`, `~3`, … so that no value is lost.
fn new_name(key: &str, taken: impl Fn(&str) -> bool) -> String {
    let base = if key.is_empty() {
        "_empty_".to_string()
    } else if key.chars().all(java_whitespace) {
        "_blank_".to_string()
    } else {
        key.replace('.', "_")
    };
    if !taken(&base) {
        return base;
    }
    (2u32..).map(|n| format!("{base}~{n}")).find(|k| !taken(k)).expect("some suffix is free")
}

/// Renames the keys of a map (annotations, `extra`) that Elasticsearch cannot
/// take. Keys that need no change keep their names; the others are renamed in
/// sorted order, so the result is deterministic.
fn sanitize_keys<V>(map: &mut BTreeMap<Cow<'_, str>, V>) {
    if !map.keys().any(|k| needs_new_name(k)) {
        return;
    }
    let mut renamed = Vec::new();
    for (k, v) in std::mem::take(map) {
        if needs_new_name(&k) {
            renamed.push((k, v));
        } else {
            map.insert(k, v);
        }
    }
    for (k, v) in renamed {
        let name = new_name(&k, |n| map.contains_key(n));
        map.insert(Cow::Owned(name), v);
    }
}

fn sanitize_user(user: &mut UserInfo<'_>) {
    sanitize_keys(&mut user.extra);
    sanitize_unknown(&mut user.unknown);
}

/// The same for the names of unknown fields. A renamed one can clash with
/// another unknown field, never with a known one (those have no `_` or `~`).
fn sanitize_unknown(unknown: &mut Unknown<'_>) {
    let fields = &mut unknown.0;
    for i in 0..fields.len() {
        if needs_new_name(&fields[i].0) {
            let name = new_name(&fields[i].0, |n| fields.iter().any(|(k, _)| k == n));
            fields[i].0 = Cow::Owned(name);
        }
    }
}

fn looks_like_secret(text: &str) -> bool {
    text.contains("\"secrets\"") || text.contains("\"Secret\"") || text.contains("\"SecretList\"")
}

/// Redacts Secret values in the embedded objects. An object that has to be
/// redacted but cannot be parsed (serde_json stops at 128 levels) is replaced
/// whole by `"[REDACTED]"`; returns whether that happened.
fn redact_event(event: &mut AuditEvent<'_>) -> bool {
    let is_secret_resource = event
        .object_ref
        .as_ref()
        .is_some_and(|r| r.resource.as_deref() == Some("secrets") && r.api_group.as_deref().unwrap_or("").is_empty());
    let mut unparsable = false;
    for object in [&mut event.request_object, &mut event.response_object].into_iter().flatten() {
        if !is_secret_resource && !looks_like_secret(object.get()) {
            continue;
        }
        match serde_json::from_str::<Value>(object.get()) {
            Ok(mut v) => {
                if secrets::redact(&mut v) {
                    *object = RawObject::owned(v.to_string());
                }
            }
            Err(_) => {
                *object = RawObject::owned(format!("\"{}\"", secrets::REDACTED));
                unparsable = true;
            }
        }
    }
    unparsable
}

/// Elasticsearch refuses a document nested deeper than 1000 levels; the event
/// itself takes up to 4 (`kubernetes.audit.objectRef.<field>`).
pub const MAX_OBJECT_DEPTH: usize = 990;

/// Replaces every raw value (embedded objects, unknown fields) nested deeper
/// than [`MAX_OBJECT_DEPTH`] by its JSON text as a string: stored whole, never
/// parsed by Elasticsearch. Returns whether any was.
fn flatten_deep_objects(event: &mut AuditEvent<'_>) -> bool {
    let mut changed = false;
    let mut fix = |object: &mut RawObject<'_>| {
        if nests_deeper_than(object.get(), MAX_OBJECT_DEPTH) {
            let text = serde_json::to_string(object.get()).expect("a string serializes");
            *object = RawObject::owned(text);
            changed = true;
        }
    };
    for object in [&mut event.request_object, &mut event.response_object].into_iter().flatten() {
        fix(object);
    }
    if let Some(status) = &mut event.response_status {
        for object in [&mut status.metadata, &mut status.details].into_iter().flatten() {
            fix(object);
        }
        status.unknown.0.iter_mut().for_each(|(_, v)| fix(v));
    }
    let users = std::iter::once(&mut event.user).chain(event.impersonated_user.as_mut());
    for unknown in users.map(|u| &mut u.unknown).chain(event.object_ref.as_mut().map(|r| &mut r.unknown)) {
        unknown.0.iter_mut().for_each(|(_, v)| fix(v));
    }
    event.unknown.0.iter_mut().for_each(|(_, v)| fix(v));
    changed
}

/// Whether valid JSON `text` nests arrays/objects more than `limit` deep.
fn nests_deeper_than(text: &str, limit: usize) -> bool {
    // Every level takes an opening and a closing bracket.
    if text.len() < 2 * (limit + 1) {
        return false;
    }
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string: to the next unescaped quote.
                i += 1;
                while let Some(j) = memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                    i += j;
                    if bytes[i] == b'\\' {
                        i += 2;
                    } else {
                        break;
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// The audit index mapping: the audit document's own fields (docs/fields.md)
/// and annotations as keywords.
pub fn mapping(pattern: &IndexPattern) -> IndexMapping {
    IndexMapping::new(pattern.clone(), mapping_properties(), dynamic_templates())
}

fn mapping_properties() -> Value {
    let kw = json!({ "type": "keyword", "ignore_above": 1024 });
    let user_info = json!({ "properties": {
        "username": kw, "uid": kw, "groups": kw,
        "extra": { "type": "object", "dynamic": false }
    }});
    json!({
        "user": { "properties": { "name": kw, "id": kw } },
        "source": { "properties": { "ip": { "type": "ip" } } },
        "user_agent": { "properties": { "original": { "type": "keyword", "ignore_above": 2048,
            "fields": { "text": { "type": "text" } } } } },
        "url": { "properties": { "original": { "type": "keyword", "ignore_above": 8192,
            "fields": { "text": { "type": "text" } } } } },
        "http": { "properties": { "response": { "properties": { "status_code": { "type": "long" } } } } },
        "kubernetes": { "properties": { "audit": { "properties": {
            "level": kw,
            "auditID": kw,
            "stage": kw,
            "requestURI": { "type": "keyword", "ignore_above": 8192 },
            "verb": kw,
            "user": user_info,
            "impersonatedUser": user_info,
            "sourceIPs": kw,
            "userAgent": { "type": "keyword", "ignore_above": 2048 },
            "objectRef": { "properties": {
                "resource": kw, "namespace": kw, "name": kw, "uid": kw, "apiGroup": kw,
                "apiVersion": kw, "resourceVersion": kw, "subresource": kw
            }},
            "responseStatus": { "properties": {
                "code": { "type": "long" },
                "status": kw,
                "reason": kw,
                "message": { "type": "text" },
                "metadata": { "type": "object", "enabled": false },
                "details": { "type": "object", "enabled": false }
            }},
            "requestObject": { "type": "object", "enabled": false },
            "responseObject": { "type": "object", "enabled": false },
            "requestReceivedTimestamp": { "type": "date_nanos" },
            "stageTimestamp": { "type": "date_nanos" },
            "annotations": { "type": "object", "dynamic": true }
        }}}},
        "kube_log_gateway": { "properties": { "original": { "properties": {
            "stageTimestamp": kw, "requestReceivedTimestamp": kw
        }}}}
    })
}

/// Annotation values are strings: index them as keywords, whatever the key.
fn dynamic_templates() -> Value {
    json!([{
        "audit_annotations": {
            "path_match": "kubernetes.audit.annotations.*",
            "match_mapping_type": "*",
            "mapping": { "type": "keyword", "ignore_above": 1024 }
        }
    }])
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalizer() -> AuditNormalizer {
        test_normalizer()
    }

    /// Also checks that the hand-written body is serde's, for every event
    /// these tests make.
    fn normalize(json: &str) -> Result<(Document, Value), String> {
        let raw: &RawValue = serde_json::from_str(json).unwrap();
        let doc = normalizer().normalize(raw)?;
        let (hand, serde) = normalizer().both_bodies(raw).unwrap();
        assert_eq!(hand, serde);
        let v = serde_json::from_slice(&doc.body).unwrap();
        Ok((doc, v))
    }

    const DELETE: &str = r#"{"level":"Metadata","auditID":"7e0cbccf-8d8a-4f5f-9b66-2f3c1c1e6d2a","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/shop/deployments/web","verb":"delete","user":{"username":"alice@example.com","uid":"u-1","groups":["devs","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=ab"]}},"sourceIPs":["192.0.2.10","10.0.0.1"],"userAgent":"kubectl/v1.31.0 (linux/amd64)","objectRef":{"resource":"deployments","namespace":"shop","name":"web","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Success","code":200},"requestReceivedTimestamp":"2026-11-09T06:14:42.535854Z","stageTimestamp":"2026-11-09T06:14:42.541203Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"devs\""}}"#;

    #[test]
    fn ecs_fields_and_original() {
        let (doc, v) = normalize(DELETE).unwrap();
        assert_eq!(doc.index, "audit-2026.11.09");
        assert_eq!(v["@timestamp"], "2026-11-09T06:14:42.541203Z");
        assert_eq!(v["event"]["dataset"], "kubernetes.audit");
        assert_eq!(v["event"]["action"], "delete");
        assert_eq!(v["event"]["outcome"], "success");
        assert_eq!(v["event"]["id"], doc.id.as_str());
        assert_eq!(v["user"]["name"], "alice@example.com");
        assert_eq!(v["user"]["id"], "u-1");
        assert_eq!(v["source"]["ip"], "192.0.2.10");
        assert_eq!(v["user_agent"]["original"], "kubectl/v1.31.0 (linux/amd64)");
        assert_eq!(v["url"]["original"], "/apis/apps/v1/namespaces/shop/deployments/web");
        assert_eq!(v["http"]["response"]["status_code"], 200);
        assert_eq!(v["orchestrator"]["cluster"]["name"], "prod");
        assert_eq!(v["host"]["name"], "gw-0");
        assert_eq!(v["kubernetes"]["node"]["name"], "node-1");
        let audit = &v["kubernetes"]["audit"];
        assert_eq!(audit["objectRef"]["resource"], "deployments");
        assert_eq!(audit["annotations"]["authorization_k8s_io/decision"], "allow");
        assert_eq!(audit["user"]["extra"]["authentication_kubernetes_io/credential-id"][0], "X509SHA256=ab");
        assert_eq!(audit["requestReceivedTimestamp"], "2026-11-09T06:14:42.535854Z");
    }

    #[test]
    fn id_is_deterministic_and_depends_on_stage() {
        let (a, _) = normalize(DELETE).unwrap();
        let (b, _) = normalize(DELETE).unwrap();
        assert_eq!(a.id, b.id);
        let (c, _) = normalize(&DELETE.replace("ResponseComplete", "ResponseStarted")).unwrap();
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn forbidden_and_failed_authentication() {
        let forbid = DELETE.replace("\"allow\"", "\"forbid\"").replace("\"code\":200", "\"code\":403");
        assert_eq!(normalize(&forbid).unwrap().1["event"]["outcome"], "failure");
        let anon = r#"{"level":"Metadata","auditID":"x","stage":"ResponseStarted","requestURI":"/api","verb":"get","user":{},"sourceIPs":["203.0.113.5"],"responseStatus":{"metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401},"requestReceivedTimestamp":"2026-11-09T06:00:00.000000Z","stageTimestamp":"2026-11-09T06:00:00.000100Z"}"#;
        let (_, v) = normalize(anon).unwrap();
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["http"]["response"]["status_code"], 401);
        assert!(v.get("user").is_none());
    }

    #[test]
    fn secrets_are_redacted() {
        let update = r#"{"level":"RequestResponse","auditID":"s1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/secrets/db","verb":"update","user":{"username":"bob"},"objectRef":{"resource":"secrets","namespace":"shop","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"aHVudGVyMg=="}},"responseObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","resourceVersion":"9"},"data":{"password":"aHVudGVyMg=="}},"stageTimestamp":"2026-11-09T06:14:42.541203Z"}"#;
        let (doc, v) = normalize(update).unwrap();
        let text = String::from_utf8(doc.body.to_vec()).unwrap();
        assert!(!text.contains("aHVudGVyMg=="), "{text}");
        assert_eq!(v["kubernetes"]["audit"]["requestObject"]["data"]["password"], "[REDACTED]");
        assert_eq!(v["kubernetes"]["audit"]["responseObject"]["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn bad_times_are_refused_with_the_field_name() {
        let err = normalize(&DELETE.replace("2026-11-09T06:14:42.541203Z", "yesterday")).unwrap_err();
        assert!(err.starts_with("field `stageTimestamp` \"yesterday\" is not an RFC 3339 time"), "{err}");
    }

    fn flags(v: &Value) -> Vec<&str> {
        v["kube_log_gateway"]["flags"].as_array().map_or(vec![], |f| f.iter().map(|f| f.as_str().unwrap()).collect())
    }

    #[test]
    fn unknown_fields_are_kept_raw_beside_the_known_ones() {
        let future = DELETE
            .replace(r#""level":"Metadata","#, r#""level":"Metadata","futureField":{"a":[1,2]},"kind":"Event","#)
            .replace(r#""resource":"deployments","#, r#""resource":"deployments","newRefField":"x","#)
            .replace(r#""uid":"u-1","#, r#""uid":"u-1","fingerprint":{"alg":"sha256"},"#)
            .replace(r#""status":"Success","#, r#""status":"Success","kind":"Status","#);
        let (doc, v) = normalize(&future).unwrap();
        let audit = &v["kubernetes"]["audit"];
        assert_eq!(audit["futureField"], json!({"a": [1, 2]}));
        assert_eq!(audit["objectRef"]["newRefField"], "x");
        assert_eq!(audit["objectRef"]["resource"], "deployments");
        assert_eq!(audit["user"]["fingerprint"]["alg"], "sha256");
        assert_eq!(audit["responseStatus"]["kind"], "Status");
        assert!(audit.get("kind").is_none(), "the event's own kind is not kept");
        assert!(flags(&v).is_empty());
        // The same `_id` as without them: unknown fields are not part of it.
        assert_eq!(doc.id, normalize(DELETE).unwrap().0.id);
        // Two fields of one name would make Elasticsearch refuse the document.
        let twice = DELETE.replace(r#""level":"Metadata","#, r#""x":1,"level":"Metadata","x":2,"#);
        assert_eq!(normalize(&twice).unwrap_err(), "duplicate field `x`");
        let twice = DELETE.replace(r#""level":"Metadata","#, r#""verb":"get","#);
        assert_eq!(normalize(&twice).unwrap_err(), "duplicate field `verb`");
    }

    #[test]
    fn keys_elasticsearch_cannot_take_are_renamed_and_stay_distinct() {
        let odd = DELETE.replace(
            r#""annotations":{"#,
            r#""annotations":{"":"empty"," ":"blank","\u001f":"unit separator",".":"dot","..":"dots","_":"underscore","a.b":"dotted","a_b":"plain","#,
        )
        .replace(r#""extra":{"#, r#""extra":{"":["e"],".":["d"],"#)
        .replace(r#""level":"Metadata","#, r#""level":"Metadata","":1,"new.field":2,"#);
        let (_, v) = normalize(&odd).unwrap();
        let a = &v["kubernetes"]["audit"]["annotations"];
        assert_eq!(a["_empty_"], "empty");
        // Renamed in the order of the original keys: U+001F sorts before " ".
        assert_eq!(a["_blank_"], "unit separator");
        assert_eq!(a["_blank_~2"], "blank");
        assert_eq!(a["_"], "underscore");
        assert_eq!(a["_~2"], "dot");
        assert_eq!(a["__"], "dots");
        assert_eq!(a["a_b"], "plain");
        assert_eq!(a["a_b~2"], "dotted");
        assert_eq!(a["authorization_k8s_io/decision"], "allow");
        assert_eq!(a.as_object().unwrap().len(), 10);
        let extra = &v["kubernetes"]["audit"]["user"]["extra"];
        assert_eq!(extra["_empty_"], json!(["e"]));
        assert_eq!(extra["_"], json!(["d"]));
        assert_eq!(extra["authentication_kubernetes_io/credential-id"], json!(["X509SHA256=ab"]));
        assert_eq!(v["kubernetes"]["audit"]["_empty_"], 1);
        assert_eq!(v["kubernetes"]["audit"]["new_field"], 2);
        assert_eq!(v["event"]["outcome"], "success");
    }

    fn with_stage_time(t: &str) -> String {
        DELETE.replace("2026-11-09T06:14:42.541203Z", t)
    }

    #[test]
    fn timestamps_elasticsearch_would_refuse_are_normalized() {
        for (sent, want) in [
            ("2026-11-09t06:14:42.541203Z", "2026-11-09T06:14:42.541203Z"),
            ("2026-11-09T06:14:42.541203z", "2026-11-09T06:14:42.541203Z"),
            ("2026-11-09 06:14:42.541203Z", "2026-11-09T06:14:42.541203Z"),
            ("2026-11-09T06:14:42.5412031234Z", "2026-11-09T06:14:42.541203123Z"),
            ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999999Z"),
            ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999999999Z"),
        ] {
            let (doc, v) = normalize(&with_stage_time(sent)).unwrap();
            assert_eq!(v["@timestamp"], want, "{sent}");
            assert_eq!(v["kubernetes"]["audit"]["stageTimestamp"], want, "{sent}");
            assert_eq!(v["kube_log_gateway"]["original"]["stageTimestamp"], sent);
            assert_eq!(flags(&v), ["timestamp_normalized"], "{sent}");
            assert_eq!(doc.index, format!("audit-{}", want[..10].replace('-', ".")));
            // The `_id` comes from the string as sent.
            assert_ne!(doc.id, normalize(&with_stage_time(want)).unwrap().0.id);
            assert_eq!(doc.id, normalize(&with_stage_time(sent)).unwrap().0.id);
        }
        // What Elasticsearch reads as is stays as is, offsets included.
        for sent in ["2026-11-09T06:14:42Z", "2026-11-09T08:14:42.123456789+02:00", "1970-01-01T00:00:00Z"] {
            let (_, v) = normalize(&with_stage_time(sent)).unwrap();
            assert_eq!(v["@timestamp"], sent);
            assert!(v.get("kube_log_gateway").is_none(), "{sent}: {v}");
        }
    }

    #[test]
    fn timestamps_outside_date_nanos_fall_back_to_the_events_own_receive_time_or_the_range_end() {
        // requestReceivedTimestamp of DELETE is usable: it stands in, and so decides the index.
        for sent in ["9999-12-31T23:59:59Z", "1969-12-31T23:59:59.999999Z", "2262-04-11T23:47:16.854775808Z"] {
            let (doc, v) = normalize(&with_stage_time(sent)).unwrap();
            assert_eq!(v["@timestamp"], "2026-11-09T06:14:42.535854Z", "{sent}");
            assert_eq!(flags(&v), ["timestamp_out_of_range"]);
            assert_eq!(v["kube_log_gateway"]["original"]["stageTimestamp"], sent);
            assert!(v["kubernetes"]["audit"].get("stageTimestamp").is_none());
            assert_eq!(doc.index, "audit-2026.11.09");
            // A resend, whenever it comes, has the same _id in the same index.
            let again = normalize(&with_stage_time(sent)).unwrap().0;
            assert_eq!((again.index, again.id), (doc.index.clone(), doc.id.clone()));
        }
        // Both out of range: the nearest end of what date_nanos holds.
        for (sent, want, index) in [
            ("9999-12-31T23:59:59Z", "2262-04-11T23:47:16.854775Z", "audit-2262.04.11"),
            ("0001-01-01T00:00:00Z", "1970-01-01T00:00:00.000000Z", "audit-1970.01.01"),
        ] {
            let both = with_stage_time(sent).replace("2026-11-09T06:14:42.535854Z", sent);
            let (doc, v) = normalize(&both).unwrap();
            assert_eq!(v["@timestamp"], want, "{sent}");
            assert_eq!(doc.index, index);
            assert_eq!(flags(&v), ["timestamp_out_of_range", "request_received_timestamp_out_of_range"]);
        }
        let received = DELETE.replace("2026-11-09T06:14:42.535854Z", "0001-01-01T00:00:00Z");
        let (_, v) = normalize(&received).unwrap();
        assert_eq!(v["@timestamp"], "2026-11-09T06:14:42.541203Z");
        assert_eq!(flags(&v), ["request_received_timestamp_out_of_range"]);
        assert!(v["kubernetes"]["audit"].get("requestReceivedTimestamp").is_none());
        assert_eq!(v["kube_log_gateway"]["original"]["requestReceivedTimestamp"], "0001-01-01T00:00:00Z");
        let received = DELETE.replace("2026-11-09T06:14:42.535854Z", "2026-11-09 06:14:42.535854z");
        let (_, v) = normalize(&received).unwrap();
        assert_eq!(flags(&v), ["request_received_timestamp_normalized"]);
        assert_eq!(v["kubernetes"]["audit"]["requestReceivedTimestamp"], "2026-11-09T06:14:42.535854Z");
    }

    #[test]
    fn objects_too_deep_for_elasticsearch_are_kept_as_text() {
        let deep = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        // serde_json::Value cannot hold these (128 levels at most): read the text.
        let body = |json: &str| {
            let raw: &RawValue = serde_json::from_str(json).unwrap();
            let (hand, serde) = normalizer().both_bodies(raw).unwrap();
            assert!(hand == serde, "the hand-written body differs from serde's");
            String::from_utf8(normalizer().normalize(raw).unwrap().body.to_vec()).unwrap()
        };
        let ok = DELETE.replace(r#""level":"Metadata","#, &format!(r#""requestObject":{},"#, deep(MAX_OBJECT_DEPTH)));
        let text = body(&ok);
        assert!(text.contains(&format!(r#""requestObject":{}"#, deep(MAX_OBJECT_DEPTH))));
        assert!(!text.contains("kube_log_gateway"));
        let object = deep(100_000);
        let too_deep = DELETE
            .replace(r#""level":"Metadata","#, &format!(r#""requestObject":{object},"future":[{object}],"#))
            .replace(r#""name":"web","#, &format!(r#""name":"web","later":{object},"#));
        let text = body(&too_deep);
        let quoted = serde_json::to_string(&object).unwrap();
        assert!(text.contains(&format!(r#""requestObject":{quoted}"#)));
        assert!(text.contains(&format!(r#""later":{quoted}"#)));
        assert!(text.contains(&format!(r#""future":{}"#, serde_json::to_string(&format!("[{object}]")).unwrap())));
        assert!(text.contains(r#""flags":["nested_too_deep"]"#));
        assert!(!nests_deeper_than(&text, 20));
        assert!(nests_deeper_than(r#"[[[["]]]]]]]]]]]]]\"]"]]]]"#, 3));
        assert!(!nests_deeper_than(r#"[[["[[[[[[[[[[[\"[[["]]]"#, 3));
    }

    #[test]
    fn a_secret_too_deep_to_redact_is_dropped_whole() {
        let nested = format!("{}\"c2VjcmV0\"{}", r#"{"x":"#.repeat(200), "}".repeat(200));
        let update = format!(
            r#"{{"level":"Request","auditID":"s2","stage":"ResponseComplete","objectRef":{{"resource":"secrets","name":"db"}},"requestObject":{{"kind":"Secret","data":{nested}}},"stageTimestamp":"2026-11-09T06:14:42.541203Z"}}"#
        );
        let (doc, v) = normalize(&update).unwrap();
        assert!(!std::str::from_utf8(&doc.body).unwrap().contains("c2VjcmV0"));
        assert_eq!(v["kubernetes"]["audit"]["requestObject"], "[REDACTED]");
        assert_eq!(flags(&v), ["redacted_unparsable_object"]);
        let raw: &RawValue = serde_json::from_str(&update).unwrap();
        let dead = normalizer().rejected(raw, "test");
        assert!(!std::str::from_utf8(&dead.body).unwrap().contains("c2VjcmV0"));
    }

    #[test]
    fn rejected_items_keep_the_original_without_secret_values() {
        let raw: &RawValue = serde_json::from_str(
            r#"{"stage":"ResponseComplete","objectRef":{"resource":"secrets"},"requestObject":{"data":{"k":"c2VjcmV0"}}}"#,
        )
        .unwrap();
        let doc = normalizer().rejected(raw, "missing field `auditID`");
        let v: Value = serde_json::from_slice(&doc.body).unwrap();
        assert!(doc.index.starts_with("deadletter-"));
        assert_eq!(v["error"]["type"], "invalid_audit_event");
        assert_eq!(v["error"]["message"], "missing field `auditID`");
        assert!(!v["event"]["original"].as_str().unwrap().contains("c2VjcmV0"));
    }
}
